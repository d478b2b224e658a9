//! Memory back at once: after SIGKILL the monitor reaps the victim's memory with
//! `process_mrelease` instead of leaving it to the victim's exit.

use memory_monitor_tests::cgroup::{Cgroup, V1Freezer};
use memory_monitor_tests::{Monitor, Target, patience, unique_name};

#[test]
#[ignore = "needs root"]
fn a_killed_process_s_memory_is_freed_before_it_exits() {
    // A process frozen by the cgroup v1 freezer stays, SIGKILL pending, until thawed: only
    // the monitor's reaping can free its memory meanwhile.
    let freezer_v1 = V1Freezer::find_or_mount();
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mma-mr");
        let mut target = Target::spawn(&name);
        target.grow(64);
        let freezer = Cgroup::create(freezer_v1.root(), &name);
        freezer.add(target.pid());
        freeze(&freezer);
        let mut monitor = Monitor::start(&[
            "--mode", mode, "-m", "32", "-s", "KILL", "-i", "100ms", &name,
        ]);
        let pid = format!("pid={}", target.pid());
        monitor.expect_log(&["over the limit", &pid, "signal=SIGKILL", "result=sent"]);
        monitor.expect_log(&[r#"event="released""#, &pid, "memory=released"]);
        // Still there, frozen, yet its memory is gone.
        assert!(std::path::Path::new(&format!("/proc/{}", target.pid())).exists());
        let rss = target.rss();
        assert!(rss < 8 << 20, "{mode}: {rss} bytes still resident");
        drop(freezer);
        assert!(target.wait_exit().is_some(), "{mode}: thawed, it dies");
        assert!(monitor.stop().success());
    }
}

/// Freezes `cgroup`'s processes and waits until the freezer says they are.
fn freeze(cgroup: &Cgroup) {
    cgroup.set("freezer.state", "FROZEN");
    let deadline = std::time::Instant::now() + patience();
    while std::fs::read_to_string(cgroup.dir().join("freezer.state")).unwrap() != "FROZEN\n" {
        assert!(std::time::Instant::now() < deadline, "not frozen");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
