//! What a guest showed: its console read into a report per kernel, and the table printed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use super::guest::tail;

/// What one guest showed.
pub(super) struct Report {
    pub(super) kernel: &'static str,
    /// The package booted, or why none was.
    pub(super) package: Result<String, String>,
    /// Each planned test's result, in plan order.
    pub(super) results: Vec<(String, Outcome)>,
    /// The BPF programs' verified instruction counts, by attach type and program.
    pub(super) insns: BTreeMap<(String, String), String>,
    /// What the monitor's start lines said: attach type and the figure that decides.
    pub(super) starts: Vec<String>,
    /// `kmem:rss_stat` events per MiB grown.
    pub(super) events_per_mib: Option<String>,
    /// The guest's end: ran through, or why not (a hang, with the console's tail).
    pub(super) ending: Option<String>,
    pub(super) wall: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Passed,
    Failed(String),
    NotRun,
}

impl Report {
    pub(super) fn failed(kernel: &'static str, why: String) -> Report {
        Report {
            kernel,
            package: Err(why),
            results: Vec::new(),
            insns: BTreeMap::new(),
            starts: Vec::new(),
            events_per_mib: None,
            ending: None,
            wall: Duration::ZERO,
        }
    }

    pub(super) fn passed(&self) -> bool {
        self.package.is_ok()
            && self.ending.is_none()
            && !self.results.is_empty()
            && self.results.iter().all(|(_, o)| *o == Outcome::Passed)
    }
}

/// Reads a guest's console: the markers of [`plan`] and the `vmtest:` lines the kernel
/// tests print.
pub(super) fn read_report(
    kernel: &'static str,
    package: &str,
    console: &str,
    tests: &[(&str, &str)],
) -> Report {
    let mut report = Report::failed(kernel, String::new());
    report.package = Ok(package.to_string());
    let mut outputs: BTreeMap<String, (Outcome, Vec<&str>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(test) = line.strip_prefix("@@ begin ") {
            current = Some(test.to_string());
            outputs.insert(test.to_string(), (Outcome::NotRun, Vec::new()));
            continue;
        }
        if let Some(end) = line.strip_prefix("@@ end ")
            && let Some((test, status)) = end.rsplit_once(' ')
            && let Some((outcome, output)) = outputs.get_mut(test)
        {
            *outcome = match status {
                "0" => Outcome::Passed,
                _ => Outcome::Failed(tail(&output.join("\n"), 60)),
            };
            current = None;
            continue;
        }
        if let Some(fatal) = line.strip_prefix("@@ fatal ") {
            report.ending = Some(format!("{fatal}; console:\n{}", tail(console, 40)));
        }
        if let Some(fields) = line.trim_start().strip_prefix("vmtest: ") {
            read_figure(&mut report, fields);
        }
        if let Some(test) = &current
            && let Some((_, output)) = outputs.get_mut(test)
        {
            output.push(line);
        }
    }
    for (binary, test) in tests {
        let name = format!("{binary}::{test}");
        let outcome = match outputs.remove(&name) {
            Some((Outcome::NotRun, output)) => Outcome::Failed(format!(
                "did not finish; its last output:\n{}",
                tail(&output.join("\n"), 40)
            )),
            Some((outcome, _)) => outcome,
            None => Outcome::NotRun,
        };
        report.results.push((name, outcome));
    }
    if report.ending.is_none() && !console.contains("@@ done") {
        report.ending = Some(format!(
            "the guest ended before its plan did; its console's last lines:\n{}",
            tail(console, 40)
        ));
    }
    report
}

/// One `vmtest: key=value …` line a kernel test printed.
fn read_figure(report: &mut Report, fields: &str) {
    let value = |key: &str| {
        fields
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .map(String::from)
    };
    if let (Some(attach), Some(program), Some(insns)) =
        (value("attach"), value("program"), value("verified_insns"))
    {
        report.insns.insert((attach, program), insns);
    } else if let Some(start) = fields.strip_prefix("start ") {
        if !report.starts.iter().any(|s| s == start) {
            report.starts.push(start.to_string());
        }
    } else if let Some(events) = value("events_per_mib") {
        report.events_per_mib = Some(events);
    }
}

pub(super) fn print_reports(reports: &[Report]) {
    let mut text = String::new();
    for report in reports {
        text.push_str(&format!("\n== kernel {}: ", report.kernel));
        match &report.package {
            Err(why) => {
                text.push_str(&format!("FAILED before booting: {why}\n"));
                continue;
            }
            Ok(package) => text.push_str(&format!("{package}, {:.0?}\n", report.wall)),
        }
        for start in &report.starts {
            text.push_str(&format!("   {start}\n"));
        }
        if let Some(events) = &report.events_per_mib {
            text.push_str(&format!(
                "   kmem:rss_stat events per MiB grown: {events}\n"
            ));
        }
        text.push_str("   | test | result |\n   | --- | --- |\n");
        for (test, outcome) in &report.results {
            let shown = match outcome {
                Outcome::Passed => "passed",
                Outcome::Failed(_) => "FAILED",
                Outcome::NotRun => "NOT RUN",
            };
            text.push_str(&format!("   | {test} | {shown} |\n"));
        }
        if !report.insns.is_empty() {
            text.push_str(
                "   | attach | program | verified instructions |\n   | --- | --- | --: |\n",
            );
            for ((attach, program), insns) in &report.insns {
                text.push_str(&format!("   | {attach} | {program} | {insns} |\n"));
            }
        }
        for (test, outcome) in &report.results {
            if let Outcome::Failed(output) = outcome {
                text.push_str(&format!(
                    "\n-- {} {test} failed:\n{output}\n",
                    report.kernel
                ));
            }
        }
        if let Some(ending) = &report.ending {
            text.push_str(&format!("\n-- {}: {ending}\n", report.kernel));
        }
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmtest::run::TESTS;

    #[test]
    fn the_console_is_read_into_a_report() {
        let console = "@@ booted 6.1.0-57-amd64\n@@ begin ebpf::a\nrunning 1 test\n\
                       vmtest: attach=tp-btf program=rss_stat_btf verified_insns=1234\n\
                       @@ end ebpf::a 0\n@@ begin ebpf::b\nthread panicked\n@@ end ebpf::b 101\n\
                       @@ done\n";
        let report = read_report("6.1", "linux-image-6.1.0-57-amd64", console, &TESTS);
        assert_eq!(
            report
                .insns
                .get(&("tp-btf".to_string(), "rss_stat_btf".to_string())),
            Some(&"1234".to_string())
        );
        assert!(report.ending.is_none());
        // Planned tests the console never mentions were not run.
        assert!(
            report
                .results
                .iter()
                .all(|(_, outcome)| *outcome == Outcome::NotRun)
        );
        assert!(!report.passed());
    }
}
