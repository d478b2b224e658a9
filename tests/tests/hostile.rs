//! Hostile process names: spaces, parentheses, a newline and a byte that is not UTF-8, in the
//! 15 bytes the kernel keeps. Such a process is matched and signalled like any other, in both
//! modes, and its name cannot break or forge a log line.

use memory_monitor_tests::{Monitor, Target, root_or_skip, unique_name, usr1_over_32m};
use serde_json::Value;

#[test]
fn a_hostile_name_is_matched_signalled_and_logged_on_one_line() {
    let mut modes = vec!["poll"];
    if root_or_skip("hostile names in eBPF mode") {
        modes.push("ebpf");
    }
    for (index, mode) in modes.into_iter().enumerate() {
        let tag = format!("{}{index}", std::process::id() % 10_000);
        // `)` and spaces confuse naive /proc/PID/stat parsers; the newline would split a log
        // line; 0xff is not UTF-8.
        let mut name = b"q) (\n\xff".to_vec();
        name.extend_from_slice(tag.as_bytes());
        assert!(name.len() <= 15);
        let mut target = Target::spawn(&unique_name("mmx-h"));
        let pattern = format!(r"(?-u)^q\) \(\n\xff{tag}$");
        let mut monitor = Monitor::start(&usr1_over_32m(
            mode,
            &["-v", "--match", "regex", "--log-format", "json", &pattern],
        ));
        monitor.expect_log(&["start-up done"]);
        // Renamed while watched for: discovered by the rename (eBPF) or the next scan (poll).
        target.rename_bytes(&name);
        target.grow(48);
        assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
        monitor.expect_log(&[r#""event":"breach""#]);
        let log = monitor.log_text();
        let mut breaches = 0;
        for line in log.lines() {
            let event: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            if event["event"] == "breach" {
                breaches += 1;
                assert_eq!(event["pid"], target.pid());
                // Escaped as text: a backslash-n, not a newline; the bad byte as \xff.
                assert_eq!(event["name"], format!("q) (\\n\\xff{tag}"), "{line}");
            }
        }
        assert_eq!(breaches, 1, "{log}");
        assert!(monitor.stop().success());
    }
}
