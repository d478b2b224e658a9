//! `--log-format json`: one JSON object per line, each naming its event in a stable `event`
//! field, with the event's facts as fields of their own. Text lines are logfmt that a process
//! name cannot forge fields in. Text under systemd's journal: each line's priority as a `<N>`
//! prefix, no timestamp.

use std::os::unix::fs::MetadataExt as _;
use std::process::{Command, Stdio};

use memory_monitor_tests::{Monitor, Target, bin, unique_name, usr1_over_32m};
use serde_json::Value;

#[test]
fn every_json_line_is_an_object_naming_its_event() {
    let name = unique_name("mml-json");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = Monitor::start(&usr1_over_32m("poll", &["--log-format", "json", &name]));
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    monitor.expect_log(&[r#""event":"breach""#]);
    let log = stopped_log(monitor);
    let events = json_events(&log);
    for event in &events {
        for field in ["timestamp", "level", "message", "event"] {
            assert!(event.get(field).is_some(), "no {field} in {event}");
        }
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        // Said after the start where the host forbids the monitor's OOM score.
        .filter(|kind| *kind != "harden")
        .collect();
    assert_eq!(kinds, ["start", "breach", "stop"], "{log}");
    let breach = events.iter().find(|e| e["event"] == "breach").unwrap();
    assert_eq!(breach["rule"], "command-line");
    assert_eq!(breach["pid"], target.pid());
    assert_eq!(breach["name"], name.as_str());
    assert_eq!(breach["signal"], "SIGUSR1");
    assert_eq!(breach["result"], "sent");
    assert_eq!(breach["limit"], "32.0MiB");
    // The sizes exact, as integers, for programs.
    assert_eq!(breach["limit_bytes"].as_u64(), Some(32 << 20), "{breach}");
    let rss = breach["rss_bytes"].as_u64().expect("rss_bytes, an integer");
    assert!(rss > 32 << 20, "{breach}");
    assert_eq!(breach["level"], "WARN");
    // No kernel report in poll mode, so no report timing.
    assert!(breach.get("queued_us").is_none(), "{breach}");
    assert!(breach.get("reaction_us").is_none(), "{breach}");
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["mode"], "poll");
}

#[test]
#[ignore = "needs root"]
fn in_ebpf_mode_a_breach_says_how_long_its_kernel_report_waited_and_how_long_until_the_signal() {
    let name = unique_name("mml-took");
    let mut target = Target::spawn(&name);
    let mut monitor = Monitor::start(&usr1_over_32m(
        "ebpf",
        &["--log-format", "json", "-v", &name],
    ));
    // Past the first look at /proc, and then stopped while the target crosses its limit: the
    // breach can only be found on the kernel's report, which waits in the ring buffer until
    // the monitor goes on. (Running, the monitor may find a crossing itself, at the end of a
    // held-back report's gap, with no report to time.)
    monitor.expect_log(&["checked"]);
    monitor.freeze();
    target.grow(48);
    // The report was made before the growth ended, and cannot be read before the monitor
    // goes on: it waited at least as long as lies between the two, whatever that is.
    let grown = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let waited = grown.elapsed();
    monitor.thaw();
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    let line = monitor.expect_log(&[r#""event":"breach""#]);
    let breach: Value = serde_json::from_str(&line).unwrap();
    let queued = breach["queued_us"].as_u64().expect("queued_us, an integer");
    let reaction = breach["reaction_us"]
        .as_u64()
        .expect("reaction_us, an integer");
    assert!(
        queued >= waited.as_micros() as u64,
        "waited at least {waited:?}: {breach}"
    );
    // Read before it was acted on: the signal came after the report was read.
    assert!(queued <= reaction, "{breach}");
}

/// The `key=value` pairs of a logfmt line, values unquoted (bare words, like the message's,
/// are no pairs).
pub(crate) fn logfmt(line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        while chars.next_if_eq(&' ').is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != ' ' && *c != '=') {
            key.push(c);
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ' ') {
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
    pairs
}

/// The guide's row of the field table for `event`.
pub(crate) fn guide_row(event: &str) -> String {
    let guide = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/guide.md");
    let text = std::fs::read_to_string(guide).unwrap();
    let head = format!("| `{event}` |");
    text.lines()
        .find(|line| line.starts_with(&head))
        .unwrap_or_else(|| panic!("no {head} row in docs/guide.md"))
        .to_string()
}

/// Everything `monitor` logged, once stopped by SIGTERM (it must exit 0).
fn stopped_log(mut monitor: Monitor) -> String {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGTERM) };
    assert!(monitor.wait().success());
    monitor.log_text()
}

/// The lines of a JSON log, each with its event.
fn json_events(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn start_and_stop_lines_carry_only_documented_fields_and_no_counters_by_default() {
    let name = unique_name("mml-ss");
    let _target = Target::spawn(&name);
    for (mode, verbose) in [("poll", false), ("poll", true), ("auto", false)] {
        let mut args = vec!["--log-format", "json", "--mode", mode, "-m", "1G", &name];
        if verbose {
            args.push("-v");
        }
        let mut monitor = Monitor::start(&args);
        monitor.expect_log(&[r#""event":"start""#]);
        let log = stopped_log(monitor);
        let events = json_events(&log);
        for kind in ["start", "stop"] {
            let line = events
                .iter()
                .find(|e| e["event"] == kind)
                .unwrap_or_else(|| panic!("no {kind}: {log}"));
            let row = guide_row(kind);
            for (field, _) in line.as_object().unwrap() {
                if ["timestamp", "level", "message", "event", "target"].contains(&field.as_str()) {
                    continue;
                }
                assert!(
                    row.contains(&format!("`{field}`")),
                    "{kind}'s {field} is not in {row}"
                );
            }
        }
        let stop = events.iter().find(|e| e["event"] == "stop").unwrap();
        assert_eq!(stop.get("allocations").is_some(), verbose, "{stop}");
        let start = events.iter().find(|e| e["event"] == "start").unwrap();
        assert_eq!(start["matched"], 1, "{start}");
    }
}

#[test]
fn with_several_rules_the_start_line_has_no_empty_limit_or_action() {
    let rules = memory_monitor_tests::RulesFile::new(
        "mml-two",
        "[[rule]]\nname = \"a\"\nprefix = \"mml-a-none\"\nmax-memory = \"1G\"\n\n[[rule]]\nname = \"b\"\nprefix = \"mml-b-none\"\nmax-memory = \"2G\"\n",
    );
    let mut monitor = Monitor::start(&["--mode", "poll", "--config", rules.path()]);
    let start = monitor.expect_log(&[r#"event="start""#]);
    assert!(
        !start.contains("limit=") && !start.contains("action="),
        "{start}"
    );
    let rule = monitor.expect_log(&[r#"event="rule""#, "rule=b "]);
    assert!(
        rule.contains("2.0GiB") && rule.contains("matched=0"),
        "{rule}"
    );
    assert!(monitor.stop().success());
}

#[test]
fn a_name_that_looks_like_fields_stays_one_value_in_text_lines() {
    // A name made to forge fields: a PID of 1, and a field of its own.
    let name = format!("v pid=1 r={}", std::process::id() % 10_000);
    let mut target = Target::spawn(&name);
    target.grow(48);
    let (status, log) = memory_monitor_tests::run_monitor(&[
        "--once", "-m", "32M", "-s", "USR1", "--match", "exact", &name,
    ]);
    assert_eq!(status.code(), Some(1), "--once found it over:\n{log}");
    let breach = log
        .lines()
        .find(|line| line.contains(r#"event="breach""#))
        .unwrap_or_else(|| panic!("no breach:\n{log}"));
    let pairs = logfmt(breach);
    let values = |key: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let pid = target.pid().to_string();
    assert_eq!(values("pid"), [pid.as_str()], "{breach}");
    assert_eq!(values("name"), [name.as_str()], "{breach}");
    assert!(values("r").is_empty(), "{breach}");
    // A check signals nothing.
    assert_eq!(values("result"), ["not sent (dry run)"], "{breach}");
}

/// Runs one `--once` check of `name` with stderr into a file; `journal` says whether
/// `JOURNAL_STREAM` names that file, as systemd names a service's stream, or another one (a
/// program started from a service with its stderr redirected inherits the variable).
fn once_into_file(name: &str, journal: bool) -> String {
    let path = std::env::temp_dir().join(format!("{}.log", unique_name("mml-jf")));
    let file = std::fs::File::create(&path).expect("log file");
    let meta = file.metadata().expect("stat");
    let stream = if journal {
        format!("{}:{}", meta.dev(), meta.ino())
    } else {
        format!("{}:{}", meta.dev(), meta.ino() + 1)
    };
    let status = Command::new(bin("memory-monitor"))
        .args(["--once", "-m", "32M", "-s", "USR1", name])
        .env("JOURNAL_STREAM", stream)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .expect("run memory-monitor");
    assert_eq!(status.code(), Some(1), "--once found it over");
    let log = std::fs::read_to_string(&path).expect("read log");
    std::fs::remove_file(&path).expect("remove log");
    log
}

#[test]
fn text_to_the_journal_carries_each_line_priority_and_no_timestamp() {
    let name = unique_name("mml-jrnl");
    let mut target = Target::spawn(&name);
    target.grow(48);

    let log = once_into_file(&name, true);
    let start = log.lines().find(|l| l.contains(r#"event="start""#));
    let breach = log.lines().find(|l| l.contains(r#"event="breach""#));
    assert!(
        start.is_some_and(|l| l.starts_with("<6>watching ")),
        "info, message first:\n{log}"
    );
    assert!(
        breach.is_some_and(|l| l.starts_with("<4>over the limit")),
        "warning, message first:\n{log}"
    );
    assert!(
        log.lines().all(|l| l.starts_with('<')),
        "every line has its priority:\n{log}"
    );

    // Not the journal's stream: the usual lines, with their timestamps and levels.
    let log = once_into_file(&name, false);
    let breach = log.lines().find(|l| l.contains(r#"event="breach""#));
    assert!(
        breach.is_some_and(|l| !l.starts_with('<') && l.contains(" WARN over the limit")),
        "{log}"
    );
}
