//! `--list`: every process each rule selects now, looked at once, with its RSS, its limit, the
//! share of the limit it uses and its user; for checking a rule before anything is signalled.
//! A table for people, or one JSON object per line for programs (`--log-format json`).

use std::io::{self, Write};

use crate::host::logging::LogFormat;
use crate::rules::{RuleSet, read_uid};
use crate::system::procfs::{self, Comm, ProcRoot};
use crate::system::users::UserName;
use crate::units::Bytes;
use crate::watch::process::read_identity;
use crate::watch::scan::{CMDLINE_MAX, Exclusions};

/// One process a rule selects, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    /// The rule's name.
    pub(crate) rule: String,
    /// The process.
    pub(crate) pid: i32,
    /// Its name.
    pub(crate) name: Comm,
    /// The user it runs as (effective uid).
    pub(crate) uid: u32,
    /// Its exact RSS, bytes.
    pub(crate) rss: u64,
    /// Its limit under the rule, bytes.
    pub(crate) limit: u64,
    /// The container runtime's ID of its container, if it is in one (from its cgroup path).
    pub(crate) container_id: Option<String>,
    /// Its pod's UID, if it is in a pod.
    pub(crate) pod_uid: Option<String>,
}

impl Selected {
    /// Its RSS as a percentage of its limit.
    pub(crate) fn used_percent(&self) -> f64 {
        self.rss as f64 * 100.0 / self.limit.max(1) as f64
    }
}

/// The processes `rules` select now, by PID, each under the first rule that selects it (as
/// the monitor would watch them). Processes that end while being read are left out.
pub(crate) fn selected(rules: &RuleSet) -> io::Result<Vec<Selected>> {
    let proc = ProcRoot::open()?;
    let mut dir_buf = ProcRoot::dir_buffer();
    let mut cmdline = vec![0u8; CMDLINE_MAX];
    let exclusions = Exclusions::now();
    let page_size = procfs::page_size();
    let mut found = Vec::new();
    proc.for_each_pid(&mut dir_buf, |pid| {
        if exclusions.excludes(pid) {
            return;
        }
        let mut stat_buf = [0u8; 1024];
        let Some(stat) = proc
            .read_file(pid, "stat", &mut stat_buf)
            .ok()
            .and_then(|stat| procfs::parse_stat(stat).ok())
        else {
            return;
        };
        if stat.is_kernel_thread() {
            return;
        }
        let Some((index, _)) = rules.select(&proc, pid, stat.comm, &mut cmdline) else {
            return;
        };
        let mut statm_buf = [0u8; 128];
        let rss = proc
            .read_file(pid, "statm", &mut statm_buf)
            .ok()
            .and_then(|statm| procfs::parse_statm(statm).ok());
        let (Some(rss), Some(uid)) = (rss, read_uid(&proc, pid)) else {
            return;
        };
        let identity = read_identity(&proc, pid);
        found.push(Selected {
            rule: rules.get(index).name.clone(),
            pid,
            name: Comm::new(stat.comm),
            uid,
            rss: rss.resident_pages * page_size,
            limit: rules.limit_of(index, &proc, pid),
            container_id: identity.container().map(str::to_string),
            pod_uid: identity.pod().map(str::to_string),
        });
    })?;
    Ok(found)
}

/// One process as a JSON object, its fields named as in the monitor's log events.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    rule: &'a str,
    pid: i32,
    name: String,
    uid: u32,
    user: String,
    rss_bytes: u64,
    limit_bytes: u64,
    used_percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_uid: Option<&'a str>,
}

/// `--list`: writes every process `rules` select now to `out`, as `format` says: a table
/// (text), or one JSON object per line.
pub(crate) fn list(rules: &RuleSet, format: LogFormat, out: &mut impl Write) -> io::Result<()> {
    write(&selected(rules)?, format, out)
}

/// Writes `selected` to `out` as `format` says: a table (text), or JSON lines.
pub(crate) fn write(
    selected: &[Selected],
    format: LogFormat,
    out: &mut impl Write,
) -> io::Result<()> {
    match format {
        LogFormat::Json => {
            for process in selected {
                let line = JsonLine {
                    rule: &process.rule,
                    pid: process.pid,
                    name: process.name.to_string(),
                    uid: process.uid,
                    user: UserName(process.uid).to_string(),
                    rss_bytes: process.rss,
                    limit_bytes: process.limit,
                    used_percent: (process.used_percent() * 10.0).round() / 10.0,
                    container_id: process.container_id.as_deref(),
                    pod_uid: process.pod_uid.as_deref(),
                };
                serde_json::to_writer(&mut *out, &line)?;
                writeln!(out)?;
            }
            Ok(())
        }
        LogFormat::Text => write_table(selected, out),
    }
}

/// The table: a header, then a row per process, each column as wide as its widest cell.
fn write_table(selected: &[Selected], out: &mut impl Write) -> io::Result<()> {
    const HEADER: [&str; 8] = [
        "RULE",
        "PID",
        "USER",
        "CONTAINER",
        "NAME",
        "RSS",
        "LIMIT",
        "USED",
    ];
    let rows: Vec<[String; 8]> = selected
        .iter()
        .map(|p| {
            [
                p.rule.clone(),
                p.pid.to_string(),
                UserName(p.uid).to_string(),
                // The first 12 digits, as `docker ps` and `crictl ps` show it.
                p.container_id
                    .as_deref()
                    .map_or("-".to_string(), |id| id.chars().take(12).collect()),
                p.name.to_string(),
                Bytes(p.rss).to_string(),
                Bytes(p.limit).to_string(),
                format!("{:.1}%", p.used_percent()),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = HEADER.map(str::to_string);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            // Numbers to the right, words to the left.
            match column {
                1 | 5..=7 => line += &format!("{cell:>width$}  "),
                _ => line += &format!("{cell:<width$}  "),
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Selected {
        Selected {
            rule: "web".to_string(),
            pid: 42,
            name: Comm::new(b"my app"),
            uid: 0,
            rss: 25 << 20,
            limit: 100 << 20,
            container_id: None,
            pod_uid: None,
        }
    }

    #[test]
    fn a_process_in_a_container_shows_its_container_and_pod() {
        let id = "0123456789abcdef".repeat(4);
        let in_pod = Selected {
            container_id: Some(id.clone()),
            pod_uid: Some("11111111-2222-4333-8444-555555555555".to_string()),
            ..one()
        };
        let mut out = Vec::new();
        write(&[in_pod.clone(), one()], LogFormat::Text, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0][3], "CONTAINER", "{text}");
        assert_eq!(rows[1][3], "0123456789ab", "{text}");
        assert_eq!(rows[2][3], "-", "{text}");
        let mut out = Vec::new();
        write(&[in_pod], LogFormat::Json, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!(r#""container_id":"{id}""#)),
            "{text}"
        );
        assert!(
            text.contains(r#""pod_uid":"11111111-2222-4333-8444-555555555555""#),
            "{text}"
        );
    }

    #[test]
    fn a_table_with_a_header_and_aligned_columns() {
        let mut out = Vec::new();
        write(&[one()], LogFormat::Text, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("RULE  PID  USER  CONTAINER  NAME"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("web    42  root  -          my app"),
            "{text}"
        );
        assert!(lines[1].ends_with("25.0MiB  100.0MiB  25.0%"), "{text}");
    }

    #[test]
    fn json_lines_with_exact_figures() {
        let mut out = Vec::new();
        write(&[one(), one()], LogFormat::Json, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"{"rule":"web","pid":42,"name":"my app","uid":0,"user":"root","rss_bytes":26214400,"limit_bytes":104857600,"used_percent":25.0}"#
        );
    }
}
