//! Hostile process names: spaces, parentheses, a newline and a byte that is not UTF-8, in the
//! 15 bytes the kernel keeps. Such a process is matched and signalled like any other, in both
//! modes, and its name cannot break or forge a log line.

use memory_monitor_tests::{Monitor, Target, unique_name, usr1_over_32m};
use serde_json::Value;

#[test]
fn a_hostile_name_is_matched_signalled_and_logged_on_one_line_in_poll_mode() {
    a_hostile_name_is_matched_signalled_and_logged_on_one_line("poll", 0);
}

#[test]
#[ignore = "needs root"]
fn a_hostile_name_is_matched_signalled_and_logged_on_one_line_in_ebpf_mode() {
    a_hostile_name_is_matched_signalled_and_logged_on_one_line("ebpf", 1);
}

fn a_hostile_name_is_matched_signalled_and_logged_on_one_line(mode: &str, index: usize) {
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
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
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

#[test]
fn a_command_line_with_hostile_arguments_is_matched_and_a_long_name_by_all_its_bytes_in_poll_mode()
{
    a_command_line_with_hostile_arguments_is_matched_and_a_long_name_by_all_its_bytes("poll", 0);
}

#[test]
#[ignore = "needs root"]
fn a_command_line_with_hostile_arguments_is_matched_and_a_long_name_by_all_its_bytes_in_ebpf_mode()
{
    a_command_line_with_hostile_arguments_is_matched_and_a_long_name_by_all_its_bytes("ebpf", 1);
}

fn a_command_line_with_hostile_arguments_is_matched_and_a_long_name_by_all_its_bytes(
    mode: &str,
    index: usize,
) {
    use std::os::unix::ffi::OsStrExt as _;
    let tag = format!("{}{index}", std::process::id() % 10_000);
    // Arguments with a newline, a byte that is not UTF-8, quotes and `=`: `--match
    // cmdline` sees them joined by spaces, as `ps` shows them.
    let marker = format!("--port {tag}");
    let mut hostile = Target::spawn_with(&unique_name("mmx-c"), |command| {
        command
            .arg("line\nbreak")
            .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"))
            .args(["--port", &tag])
            .arg("name=\"quoted\"");
    });
    // A name longer than the 15 bytes the kernel keeps: matched by all of it (from the
    // command line); one that shares its first 15 bytes is not.
    let long = format!("mmx-l{tag}-abcdefghij");
    let mut long_target = Target::spawn(&long);
    let mut twin = Target::spawn(&format!("{}-other", &long[..15]));
    let mut monitor = Monitor::start(&usr1_over_32m(
        mode,
        &["-v", "--match", "cmdline", "--", &marker],
    ));
    let mut by_name = Monitor::start(&usr1_over_32m(mode, &["-v", "--match", "exact", &long]));
    monitor.expect_log(&["start-up done"]);
    by_name.expect_log(&["start-up done"]);
    hostile.grow(48);
    twin.grow(48);
    long_target.grow(48);
    assert!(hostile.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    assert!(
        long_target.wait_signal(libc::SIGUSR1),
        "{}",
        by_name.log_text()
    );
    by_name.expect_log(&["over the limit", &format!("pid={}", long_target.pid())]);
    // Every line the hostile arguments could have reached is a whole line of its own.
    for line in monitor.log_text().lines() {
        assert!(
            line.starts_with("20"),
            "a line starts with its time: {line:?}"
        );
    }
    assert!(twin.signals().is_empty(), "{}", by_name.log_text());
    assert_eq!(
        by_name.count(&["over the limit"]),
        1,
        "{}",
        by_name.log_text()
    );
    assert!(monitor.stop().success());
    assert!(by_name.stop().success());
}
