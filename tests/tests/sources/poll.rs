//! Poll mode end to end: the real binary, real processes, real signals.

use memory_monitor_tests::{
    Monitor, Target, assert_killed_after_its_term, run_monitor, unique_name,
};

const USR1: i32 = libc::SIGUSR1;

/// Monitor arguments for poll mode, checking every 100 ms, `-v` so each cycle logs "checked".
fn poll_args<'a>(limit_mib: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--mode", "poll", "-m", limit_mib, "-i", "100ms", "-v"];
    args.extend_from_slice(rest);
    args
}

#[test]
fn an_over_limit_match_gets_exactly_the_configured_signal() {
    let name = unique_name("mmp-ex");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = Monitor::start(&poll_args(
        "32",
        &["-s", "USR1", "--repeat", "never", &name],
    ));
    assert!(
        target.wait_signal(USR1),
        "no SIGUSR1; log:\n{}",
        monitor.log_text()
    );
    monitor.expect_log(&[
        "over the limit",
        &format!("pid={}", target.pid()),
        &format!("name={name}"),
        "limit=32.0MiB",
        "signal=SIGUSR1",
        "result=sent",
    ]);
    monitor.expect_more("checked", 5);
    assert_eq!(target.signals(), [USR1], "one signal, the configured one");
    assert!(monitor.stop().success());
}

#[test]
fn under_limit_and_non_matching_processes_get_nothing() {
    let name = unique_name("mmp-mx");
    let mut over = Target::spawn(&name);
    over.grow(48);
    let mut under = Target::spawn(&format!("{name}u"));
    under.grow(8);
    let mut other = Target::spawn(&unique_name("mmp-ot"));
    other.grow(48);
    let mut monitor = Monitor::start(&poll_args("32", &["-s", "USR1", &name]));
    assert!(over.wait_signal(USR1), "log:\n{}", monitor.log_text());
    monitor.expect_more("checked", 5);
    assert!(under.signals().is_empty(), "under the limit");
    assert!(other.signals().is_empty(), "name does not match");
    assert!(monitor.stop().success());
}

#[test]
fn repeats_every_interval_while_over_like_the_seed_and_stops_when_back_under() {
    // A real-time signal: each one sent is one received, however late the target takes them
    // (pending SIGUSR1s would merge into one).
    let signal = libc::SIGRTMIN() + 1;
    let name = unique_name("mmp-rp");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = Monitor::start(&poll_args("32", &["-s", "RTMIN+1", &name]));
    monitor.expect_more("still over the limit, signalled again", 3);
    target.shrink(40);
    let pid = format!("pid={}", target.pid());
    monitor.expect_log(&[r#"event="recovered""#, &pid]);
    // Every signal the monitor sent was logged before it saw the process back under.
    let sent = monitor.count(&[&pid, "result=sent"]);
    assert!(sent >= 4, "first signal and three repeats, got {sent}");
    assert!(
        target.wait_signals(signal, sent),
        "{sent} signals sent; log:\n{}",
        monitor.log_text()
    );
    monitor.expect_more("checked", 5);
    assert_eq!(
        target.signals().len(),
        sent,
        "no signal once under the limit"
    );
    // A new crossing is a new breach: a second breach line, and one more signal.
    let breaches = [r#"event="breach""#, pid.as_str(), "result=sent"];
    assert_eq!(monitor.count(&breaches), 1, "{}", monitor.log_text());
    target.grow(40);
    monitor.expect_count(&breaches, 2);
    assert!(
        target.wait_signals(signal, sent + 1),
        "log:\n{}",
        monitor.log_text()
    );
    assert!(monitor.stop().success());
}

#[test]
fn targets_exiting_at_any_moment_do_not_disturb_the_monitor() {
    let name = unique_name("mmp-ch");
    let mut monitor = Monitor::start(&[
        "--mode", "poll", "-m", "32", "-i", "10ms", "-s", "USR1", &name,
    ]);
    monitor.expect_log(&["watching"]);
    for round in 0..40 {
        let mut short_lived = Target::spawn(&name);
        if round % 2 == 0 {
            short_lived.grow(48);
        }
        short_lived.exit();
    }
    let mut target = Target::spawn(&name);
    target.grow(48);
    assert!(target.wait_signal(USR1), "log:\n{}", monitor.log_text());
    let log = monitor.log_text();
    assert!(
        !log.contains("ERROR"),
        "no error for vanished processes:\n{log}"
    );
    // (Polling every 10ms is cautioned about, on purpose here; the targets come after the
    // start, which says the rule selects nothing yet.)
    assert!(
        !log.lines().any(|l| l.contains("WARN")
            && !l.contains("over the limit")
            && !l.contains(r#"event="caution""#)
            && !l.contains(r#"event="no_match""#)),
        "no warning but breaches:\n{log}"
    );
    assert!(monitor.stop().success(), "still running and stops cleanly");
}

#[test]
fn once_exits_1_when_something_is_over_and_0_when_not_and_never_signals() {
    let name = unique_name("mmp-on");
    let mut target = Target::spawn(&name);
    target.grow(8);
    let (status, log) = run_monitor(&["-m", "32", "--once", "-s", "USR1", &name]);
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(target.signals().is_empty());
    target.grow(40);
    let (status, log) = run_monitor(&["-m", "32", "--once", "-s", "USR1", &name]);
    assert_eq!(status.code(), Some(1), "{log}");
    let pid = format!("pid={}", target.pid());
    assert!(
        log.lines()
            .any(|l| l.contains(&pid) && l.contains("would signal (dry run)")),
        "{log}"
    );
    // Even the default SIGTERM: a check kills nothing.
    let (status, log) = run_monitor(&["-m", "32", "--once", &name]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(r#"action="none: --once only checks""#),
        "{log}"
    );
    assert!(target.signals().is_empty(), "--once signalled:\n{log}");
    let (status, log) = run_monitor(&["-m", "32", "--once", &unique_name("mmp-none")]);
    assert_eq!(status.code(), Some(0), "nothing matching: {log}");
}

#[test]
fn dry_run_sends_nothing() {
    let name = unique_name("mmp-dr");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = Monitor::start(&poll_args("32", &["--dry-run", "-s", "USR1", &name]));
    monitor.expect_log(&["over the limit", r#"result="not sent (dry run)""#]);
    monitor.expect_more("checked", 5);
    assert!(target.signals().is_empty());
    assert!(monitor.stop().success());
}

#[test]
fn a_rule_that_selects_nothing_is_said_at_start_and_once_more_later() {
    // A name mistyped: the start line counts no process, and a warning says so.
    let typo = unique_name("mmp-nm");
    let mut monitor = Monitor::start(&poll_args("100", &[&typo]));
    let start = monitor.expect_log(&[r#"event="start""#]);
    assert!(start.contains("matched=0"), "{start}");
    monitor.expect_log(&[r#"event="no_match""#, "selects no process now", &typo]);
    // 30 intervals (3 s at 100ms) later, once more; then never again, whatever the cycles.
    monitor.expect_log(&[r#"event="no_match""#, "3s after start"]);
    monitor.expect_more("checked", 40);
    assert_eq!(
        monitor.count(&[r#"event="no_match""#]),
        2,
        "{}",
        monitor.log_text()
    );
    assert!(monitor.stop().success());

    // A rule that selects a process counts it, and says nothing more.
    let name = unique_name("mmp-m1");
    let _target = Target::spawn(&name);
    let mut monitor = Monitor::start(&poll_args("100", &[&name]));
    let start = monitor.expect_log(&[r#"event="start""#]);
    assert!(
        start.contains("matched=1") && start.contains("(1 process now)"),
        "{start}"
    );
    monitor.expect_more("checked", 5);
    assert_eq!(monitor.count(&["no_match"]), 0, "{}", monitor.log_text());
    assert!(monitor.stop().success());
}

#[test]
fn kill_after_escalates_to_sigkill() {
    let name = unique_name("mmp-ka");
    let mut target = Target::spawn(&name);
    target.ignore_term();
    target.grow(48);
    let mut monitor = Monitor::start(&poll_args("32", &["--kill-after", "300ms", &name]));
    assert_killed_after_its_term(&mut target, &mut monitor);
    assert!(monitor.stop().success());
}

#[test]
fn pid_watches_a_process_whatever_its_name_and_stops_when_it_exits() {
    let mut target = Target::spawn(&unique_name("mmp-pd"));
    target.grow(48);
    let pid = target.pid().to_string();
    let mut monitor = Monitor::start(&poll_args(
        "32",
        &["--pid", &pid, "-s", "USR1", "--repeat", "never"],
    ));
    assert!(target.wait_signal(USR1), "log:\n{}", monitor.log_text());
    target.exit();
    assert!(monitor.wait().success(), "nothing left to watch: exit 0");
    monitor.expect_log(&["every watched process has exited"]);
}

#[test]
fn names_longer_than_comm_match_on_the_command_line() {
    let long = format!("{}-long-name", unique_name("mmp-ln"));
    let mut target = Target::spawn(&long);
    target.grow(48);
    let (status, log) = run_monitor(&["-m", "32", "--once", "-s", "USR1", &long]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("pid={}", target.pid())), "{log}");
    let (status, log) = run_monitor(&["-m", "32", "--once", &format!("{long}-other")]);
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn hostile_names_are_logged_on_one_line() {
    let name = unique_name("mmp-hn");
    let mut target = Target::spawn(&name);
    target.rename(&format!("{name}\u{1b}"));
    target.grow(48);
    let (status, log) = run_monitor(&[
        "-m",
        "32",
        "--once",
        "--dry-run",
        "--match",
        "regex",
        &format!("^{name}"),
    ]);
    assert_eq!(status.code(), Some(1), "{log}");
    let breach = log
        .lines()
        .find(|l| l.contains("over the limit"))
        .expect("breach line");
    assert!(
        breach.contains(&format!("name={name}\\u{{1b}}")),
        "escaped: {breach}"
    );
}

#[test]
fn a_full_watch_list_warns_once_and_counts_what_it_skips() {
    let name = unique_name("mmp-mx");
    let targets: Vec<Target> = (0..3).map(|_| Target::spawn(&name)).collect();
    let mut monitor = Monitor::start(&poll_args("32", &["--max-processes", "1", &name]));
    monitor.expect_log(&["checked", "watched=1", "skipped=2"]);
    monitor.expect_more("checked", 3);
    assert_eq!(
        monitor.count(&["WARN", "maximum of 1 processes", "skipped=2"]),
        1,
        "warned once"
    );
    assert!(monitor.stop().success());
    drop(targets);
}
