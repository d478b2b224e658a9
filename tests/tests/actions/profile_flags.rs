//! The profile's flags beyond where profiles go: `--profile-budget` (past it, a breach's
//! signal goes before its profile is captured) and `--profile-at` (from which share of the
//! limit eBPF mode samples the code that grows a process).

use memory_monitor_tests::gate::Gate;
use memory_monitor_tests::{Monitor, Target, files_in, pprof_top, unique_name, wait_until};

const USR1: i32 = libc::SIGUSR1;

/// A breach whose capture waits behind a profiler held up by an earlier breach's writer is
/// signalled once the budget is spent, before its capture; its profile follows.
#[test]
fn past_the_budget_the_signal_goes_before_the_profile() {
    let gate = Gate::new("mmb-budget");
    // Each write says whose profile it is writing, then holds the profiler's thread until the
    // test opens the gate.
    let writer = format!(
        "cmd:cat > /dev/null; touch {}/writing.$MM_PID; {}",
        gate.dir().display(),
        gate.wait()
    );
    let name = unique_name("mmb-budget");
    let mut args: Vec<&str> =
        "--mode poll -i 100ms -v -m 32M -s USR1 --repeat never --profile-budget 7ms --profile-to"
            .split(' ')
            .collect();
    args.extend([writer.as_str(), &name]);
    let mut monitor = Monitor::start(&args);
    monitor.expect_log(&["watching"]);
    let mut first = Target::spawn(&format!("{name}a"));
    first.grow(48);
    assert!(first.wait_signal(USR1), "{}", monitor.log_text());
    let writing = gate.dir().join(format!("writing.{}", first.pid()));
    assert!(wait_until(|| writing.exists()), "{}", monitor.log_text());

    // The profiler is busy with the first one's profile for as long as the test says.
    let mut second = Target::spawn(&format!("{name}b"));
    second.grow(48);
    assert!(second.wait_signal(USR1), "{}", monitor.log_text());
    let pid = format!("pid={}", second.pid());
    monitor.expect_log(&["over budget; signalling first", &pid, "budget=7ms"]);
    gate.open();
    // Captured once the profiler is free again: the second one lives on after its SIGUSR1.
    monitor.expect_log(&[r#"event="profile""#, &pid]);
    assert!(monitor.stop().success());
}

/// The total of a profile's `growth` samples, in MiB, as `go tool pprof` reads it.
fn growth_mib(profile: &std::path::Path) -> f64 {
    let top = pprof_top(profile, "growth");
    // "Showing nodes accounting for 47.75MB, 100% of 47.75MB total"
    let total = top
        .split_once("% of ")
        .and_then(|(_, rest)| rest.split_once(" total"))
        .map(|(total, _)| total.trim())
        .unwrap_or_else(|| panic!("no total in:\n{top}"));
    let (number, scale) = match total.strip_suffix("MB") {
        Some(number) => (number, 1.0),
        None => match total.strip_suffix("kB") {
            Some(number) => (number, 1.0 / 1024.0),
            None => (total.trim_end_matches('B'), 1.0 / (1024.0 * 1024.0)),
        },
    };
    number.parse::<f64>().expect("a number") * scale
}

/// `--profile-at 25%` under a 64 MiB limit: the growth is sampled from 16 MiB on, so the
/// profile holds the growth from there to the breach (48 MiB), where the default 80 % (51.2
/// MiB) would hold less than what the process grew past that (at most 24 MiB here).
#[test]
#[ignore = "needs root"]
fn growth_is_sampled_from_the_share_of_the_limit_profile_at_says() {
    let dir = std::env::temp_dir().join(unique_name("mmb-at"));
    let dir_arg = dir.display().to_string();
    let name = unique_name("mmb-at");
    let mut target = Target::spawn(&name);
    let mut args: Vec<&str> =
        "--mode ebpf -m 64M -s USR1 --repeat never -v --profile-at 25% --profile-dir"
            .split(' ')
            .collect();
    args.extend([dir_arg.as_str(), &name]);
    let mut monitor = Monitor::start(&args);
    monitor.expect_log(&["watching", "mode=ebpf"]);
    monitor.expect_log(&["checked"]);
    let rss = target.grow(72);
    assert!(rss < 76 << 20, "rss {rss}");
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    monitor.expect_log(&[r#"event="profile""#, &format!("pid={}", target.pid())]);
    let files = files_in(&dir, ".pb.gz");
    assert_eq!(files.len(), 1, "{files:?}");
    let grown = growth_mib(&files[0]);
    assert!(grown >= 44.0, "{grown} MiB of growth sampled");
    assert!(monitor.stop().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
