//! `--log-format json`: one JSON object per line, each naming its event in a stable `event`
//! field, with the event's facts as fields of their own.

use memory_monitor_tests::{Monitor, Target, unique_name, usr1_over_32m};
use serde_json::Value;

#[test]
fn every_json_line_is_an_object_naming_its_event() {
    let name = unique_name("mml-json");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = Monitor::start(&usr1_over_32m("poll", &["--log-format", "json", &name]));
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    monitor.expect_log(&[r#""event":"breach""#]);
    let log = {
        let mut monitor = monitor;
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(monitor.pid(), libc::SIGTERM) };
        assert!(monitor.wait().success());
        monitor.log_text()
    };
    let events: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for event in &events {
        for field in ["timestamp", "level", "message", "event"] {
            assert!(event.get(field).is_some(), "no {field} in {event}");
        }
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        // Said before the start where the host forbids the monitor's OOM score.
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
    assert_eq!(breach["level"], "WARN");
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["mode"], "poll");
}
