//! Command-line flags whose effect, not just their parsing, is checked: `-i` (how often poll
//! mode looks), `-q`/`-qq` (what the log leaves out), and `--count` (swap toward the limit).

use memory_monitor_tests::swap::{SwapFile, limited, swap_of};
use memory_monitor_tests::{Monitor, RulesFile, Target, unique_name, wait_until};

const USR1: i32 = libc::SIGUSR1;

/// The poll cycle's `-v` line.
const CHECKED: [&str; 2] = ["checked", "watched="];

/// Two monitors side by side: the one polling every 100 ms checks again and again while the
/// one polling every hour has not checked a second time (its next look is an hour away).
#[test]
fn poll_mode_looks_as_often_as_the_interval_says() {
    let name = unique_name("mmf-int");
    let _target = Target::spawn(&name);
    let start = |interval: &str| {
        let args = ["--mode", "poll", "-i", interval, "-v", "-m", "1G", &name];
        let mut monitor = Monitor::start(&args);
        monitor.expect_log(&CHECKED);
        monitor
    };
    let mut hourly = start("1h");
    let mut fast = start("100ms");
    fast.expect_more(CHECKED[0], 30);
    assert_eq!(hourly.count(&CHECKED), 1, "{}", hourly.log_text());
    assert!(fast.stop().success());
    assert!(hourly.stop().success());
}

/// The monitor's stderr, kept in a file: the whole of it is there once the monitor exits.
struct LogFile(std::path::PathBuf);

impl LogFile {
    fn new() -> LogFile {
        LogFile(std::env::temp_dir().join(format!("{}.log", unique_name("mmf-log"))))
    }

    /// The monitor with `args`, its stderr into this file.
    fn start(&self, args: &[&str]) -> Monitor {
        let script = format!("exec \"$0\" \"$@\" 2>'{}'", self.0.display());
        Monitor::start_wrapped(&["sh", "-c", &script], args)
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `-q` leaves out the information (the start line, and the stop line a SIGTERM brings, so
/// certain to have been logged, or left out, once the monitor has exited) and keeps the
/// warnings (the breach).
#[test]
fn quiet_keeps_warnings_and_leaves_out_information() {
    let log = LogFile::new();
    let name = unique_name("mmf-q");
    let mut target = Target::spawn(&name);
    let args = memory_monitor_tests::usr1_over_32m("poll", &["-q", &name]);
    let monitor = log.start(&args);
    target.grow(48);
    assert!(target.wait_signal(USR1), "{}", log.text());
    let pid = format!("pid={}", target.pid());
    let breach = [" WARN ", r#"event="breach""#, pid.as_str()];
    assert!(
        wait_until(|| log
            .text()
            .lines()
            .any(|l| breach.iter().all(|p| l.contains(p)))),
        "{}",
        log.text()
    );
    assert!(monitor.stop().success());
    let text = log.text();
    assert!(!text.contains(" INFO "), "{text}");
}

/// `-qq` leaves out the warnings too (a breach is still signalled, not logged) and keeps the
/// errors (a rules file that cannot be read again).
#[test]
fn very_quiet_keeps_only_errors() {
    let log = LogFile::new();
    let name = unique_name("mmf-qq");
    let rule = format!(
        "[[rule]]\nprefix = \"{name}\"\nmax-memory = \"32M\"\nsignal = \"USR1\"\nrepeat = \"never\"\n"
    );
    let rules = RulesFile::new("mmf-qq", &rule);
    let mut target = Target::spawn(&name);
    let monitor = log.start(&[
        "--mode",
        "poll",
        "-i",
        "100ms",
        "-qq",
        "--config",
        rules.path(),
    ]);
    target.grow(48);
    assert!(target.wait_signal(USR1), "{}", log.text());
    rules.rewrite("[[rule]]\nprefix = \"x\"\nmax-memory = \"lots\"\n");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
    let refused = r#"event="reload_failed""#;
    assert!(
        wait_until(|| log.text().contains(refused)),
        "{}",
        log.text()
    );
    assert!(monitor.stop().success());
    let text = log.text();
    for line in text.lines() {
        assert!(line.contains(" ERROR "), "{text}");
    }
}

/// `--count rss+swap` on the command line, as the rules file's `count` key: a process whose
/// RSS is under the limit, held down by its cgroup, is over it with its swap. Both modes.
#[test]
#[ignore = "needs root"]
fn the_count_flag_adds_swap_to_what_counts() {
    let _swap = SwapFile::on(256);
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mmf-cnt");
        let mut monitor = Monitor::start(&[
            "--mode", mode, "-i", "100ms", "-v", "-m", "40M", "-s", "USR1", "--repeat", "never",
            "--count", "rss+swap", &name,
        ]);
        monitor.expect_log(&["watching", &format!("mode={mode}")]);
        monitor.expect_log(&CHECKED);
        let cgroup = limited(24);
        let mut target = Target::spawn(&name);
        cgroup.add(target.pid());
        let rss = target.grow(64);
        assert!(rss < 40 << 20, "{mode}: rss {rss}");
        assert!(swap_of(target.pid()) > 24 << 20, "{mode}");
        assert!(target.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        let pid = format!("pid={}", target.pid());
        let breach = monitor.expect_log(&[r#"event="breach""#, &pid]);
        let counted: u64 = breach
            .split_once(" rss_bytes=")
            .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("rss_bytes in {breach}"));
        assert!(counted > 40 << 20, "{mode}: {breach}");
        assert!(monitor.stop().success());
        drop(target);
        drop(cgroup);
    }
}
