//! The stable `event` names of log lines that a program reading the log relies on, each
//! brought about for real and matched by its `event=` field (the message text may change):
//! `exec_skipped`, `notify_failed`, `fatal`, `reload_failed` (SIGHUP without a rules file) and
//! `count_swap_needs_restart`. (`recovered`, `profile_failed` and `reload_failed` for a bad
//! rules file are matched where their behaviour is tested: poll.rs, ebpf.rs, profile.rs,
//! files.rs.)

use std::process::{Command, Stdio};

use memory_monitor_tests::gate::Gate;
use memory_monitor_tests::{
    Monitor, RulesFile, Target, bin, the_one_error, unique_name, wait_until,
};

const USR1: i32 = libc::SIGUSR1;

/// Hooks beyond those running (4) and those waiting for a runner (64) are skipped, one
/// `exec_skipped` line each; every other hook runs once the running ones end.
#[test]
fn hooks_beyond_the_queue_are_skipped_each_with_its_event() {
    const RUNNING: usize = 4;
    const WAITING: usize = 64;
    let gate = Gate::new("mme-skip");
    // Each hook says it ran (its PID), then holds its runner until the test opens the gate.
    let hook = format!(
        "touch {}/ran.$MM_PID; {}",
        gate.dir().display(),
        gate.wait()
    );
    let name = unique_name("mme-skip");
    let targets: Vec<Target> = (0..RUNNING + WAITING + 2)
        .map(|_| Target::spawn(&name))
        .collect();
    // Every target is over 1 MiB from the start: all breach on the monitor's first look.
    let mut args: Vec<&str> = "--mode poll -i 100ms -m 1M -s USR1 --repeat never --exec"
        .split(' ')
        .collect();
    args.extend([hook.as_str(), &name]);
    let mut monitor = Monitor::start(&args);
    monitor.expect_count(&[r#"event="breach""#], targets.len());
    gate.open();
    // Each breach's hook either runs or is skipped (more may be skipped than the 2 beyond
    // the queue's room, if the runners were slow to take the first ones).
    let skipped = r#"event="exec_skipped""#;
    let has_run = |target: &Target| gate.dir().join(format!("ran.{}", target.pid())).exists();
    let settled = |monitor: &mut Monitor| {
        let ran = targets.iter().filter(|t| has_run(t)).count();
        ran + monitor.count(&[skipped]) == targets.len()
    };
    assert!(
        wait_until(|| settled(&mut monitor)),
        "{}",
        monitor.log_text()
    );
    for target in &targets {
        let pid = format!("pid={} ", target.pid());
        let was_skipped = monitor.count(&[skipped, &pid]) == 1;
        assert_ne!(
            was_skipped,
            has_run(target),
            "{pid}: {}",
            monitor.log_text()
        );
    }
    let count = monitor.count(&[skipped]);
    assert!(count >= 2, "{count} skipped: {}", monitor.log_text());
    assert!(monitor.stop().success());
}

/// A `NOTIFY_SOCKET` where nothing listens: said once, and the monitor runs on.
#[test]
fn an_unreachable_notify_socket_is_a_notify_failed_event() {
    let path = std::env::temp_dir().join(unique_name("mme-notify"));
    let name = unique_name("mme-notify");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = Monitor::start_with(
        &memory_monitor_tests::usr1_over_32m("poll", &[&name]),
        |command| {
            command.env("NOTIFY_SOCKET", &path);
        },
    );
    let line = monitor.expect_log(&[r#"event="notify_failed""#]);
    assert!(line.contains(path.to_str().unwrap()), "{line}");
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    assert_eq!(monitor.count(&[r#"event="notify_failed""#]), 1);
    assert!(monitor.stop().success());
}

/// A failure that ends the monitor (the metrics port is taken) is its one `fatal` line.
#[test]
fn a_failure_that_ends_the_monitor_is_a_fatal_event() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = Command::new(bin("memory-monitor"))
        .args(["--mode", "poll", "-m", "1G", "--metrics-addr", &address])
        .arg(unique_name("mme-fatal"))
        .stdin(Stdio::null())
        .output()
        .expect("run memory-monitor");
    the_one_error(&output, &[r#"event="fatal""#, &address]);
}

/// SIGHUP asks for the rules file again; without one, that is a `reload_failed` warning, and
/// the rules in force stay.
#[test]
fn sighup_without_a_rules_file_is_a_reload_failed_event() {
    let name = unique_name("mme-hup");
    let mut monitor = Monitor::start(&memory_monitor_tests::usr1_over_32m("poll", &[&name]));
    monitor.expect_log(&[r#"event="start""#]);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
    monitor.expect_log(&[r#"event="reload_failed""#, "WARN"]);
    let mut target = Target::spawn(&name);
    target.grow(48);
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    assert!(monitor.stop().success());
}

/// A reload that starts counting swap in eBPF mode, whose kernel side follows swap entries
/// only when a rule counted them at start-up, says a restart is needed.
#[test]
#[ignore = "needs root"]
fn counting_swap_from_a_reload_in_ebpf_mode_is_a_count_swap_needs_restart_event() {
    let name = unique_name("mme-swap");
    let rule = |count: &str| {
        format!("[[rule]]\nprefix = \"{name}\"\nmax-memory = \"64M\"\ncount = \"{count}\"\n")
    };
    let rules = RulesFile::new("mme-swap", &rule("rss"));
    let mut monitor = Monitor::start_rules("ebpf", rules.path(), &[]);
    rules.rewrite(&rule("rss+swap"));
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
    monitor.expect_log(&[r#"event="reload""#]);
    let needs = r#"event="count_swap_needs_restart""#;
    assert_eq!(monitor.count(&[needs]), 1, "{}", monitor.log_text());
    // A monitor started with it counts swap from the start: nothing to say.
    drop(monitor);
    let mut monitor = Monitor::start_rules("ebpf", rules.path(), &[]);
    // SAFETY: as above.
    unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
    monitor.expect_log(&[r#"event="reload""#]);
    assert_eq!(monitor.count(&[needs]), 0, "{}", monitor.log_text());
    assert!(monitor.stop().success());
}
