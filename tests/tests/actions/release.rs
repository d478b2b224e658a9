//! Memory back at once: after SIGKILL the monitor reaps the victim's memory with
//! `process_mrelease` instead of leaving it to the victim's exit; on a kernel without it (before
//! 5.15) it says the memory is left to the exit, and it is.

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
        let released = has_process_mrelease();
        let outcome = match released {
            true => "memory=released",
            false => r#"memory="left to the exit (no process_mrelease)""#,
        };
        monitor.expect_log(&[r#"event="released""#, &pid, outcome]);
        // Still there, frozen: its memory is gone only if the monitor reaped it.
        assert!(std::path::Path::new(&format!("/proc/{}", target.pid())).exists());
        let rss = target.rss();
        match released {
            true => assert!(rss < 8 << 20, "{mode}: {rss} bytes still resident"),
            false => assert!(rss > 32 << 20, "{mode}: {rss} bytes, not reaped, yet gone"),
        }
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

/// Whether this kernel has `process_mrelease` (5.15 on), asked with a descriptor that cannot be
/// a pidfd: a kernel that has the call refuses it (`EBADF`), one without does not know the call
/// (`ENOSYS`).
fn has_process_mrelease() -> bool {
    // SAFETY: no pointers; -1 is never an open file descriptor.
    let answer = unsafe { libc::syscall(libc::SYS_process_mrelease, -1, 0 as libc::c_uint) };
    answer == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}
