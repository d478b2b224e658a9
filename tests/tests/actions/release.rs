//! Memory back at once: after SIGKILL the monitor reaps the victim's memory with
//! `process_mrelease` instead of leaving it to the victim's exit, and with `--act-on` every
//! member of the group it killed; on a kernel without it (before 5.15) it says the memory is
//! left to the exit, and it is.

use std::os::unix::process::CommandExt as _;

use memory_monitor_tests::cgroup::{Cgroup, V1Freezer};
use memory_monitor_tests::{Monitor, Target, is_alive, patience, resident_bytes, unique_name};

use crate::groups::cgroup_of_three;

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
        let freezer = frozen(&freezer_v1, &name, &[target.pid()]);
        let mut monitor = kill_over_32m(mode, &[&name]);
        let pid = format!("pid={}", target.pid());
        monitor.expect_log(&["over the limit", &pid, "signal=SIGKILL", "result=sent"]);
        expect_reaped(&mut monitor, mode, &[target.pid()]);
        thaw(freezer, &mut target, monitor, mode);
    }
}

#[test]
#[ignore = "needs root"]
fn every_member_of_a_killed_process_group_is_reaped() {
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mma-mg");
        let mut leader = Target::spawn_with(&name, |command| {
            command.process_group(0);
        });
        // The children share 20 MiB with the leader, under the limit: they are watched (their
        // name is the leader's) and never over it, so only the group's SIGKILL reaches them.
        leader.grow(20);
        let children = [leader.fork(), leader.fork()];
        leader.grow(44);
        let pids = [leader.pid(), children[0], children[1]];
        let freezer_v1 = V1Freezer::find_or_mount();
        let freezer = frozen(&freezer_v1, &name, &pids);
        let mut monitor = kill_over_32m(mode, &["--act-on", "process-group", &name]);
        let breach = monitor.expect_log(&[r#"event="breach""#, &format!("pid={}", pids[0])]);
        assert!(breach.contains("members=3"), "{mode}: {breach}");
        expect_reaped(&mut monitor, mode, &pids);
        thaw(freezer, &mut leader, monitor, mode);
    }
}

#[test]
#[ignore = "needs root"]
fn every_member_of_a_killed_cgroup_is_reaped() {
    let freezer_v1 = V1Freezer::find_or_mount();
    let mut cgroups = cgroup_of_three("mma-mc");
    // One over the limit, two under it: only the cgroup's SIGKILL reaches those.
    cgroups.members[0].grow(48);
    cgroups.members[1].grow(20);
    cgroups.members[2].grow(20);
    let pids = cgroups.members.each_ref().map(Target::pid);
    let freezer = frozen(&freezer_v1, &unique_name("mma-mc"), &pids);
    // Decided as the monitor decides it: by the file, not by the kernel's version.
    let via = match cgroups.top.dir().join("cgroup.kill").exists() {
        true => r#"via="cgroup.kill""#,
        false => "members=3",
    };
    let top = cgroups.top.path();
    let mut monitor = kill_over_32m("poll", &["--cgroup", &top, "--act-on", "cgroup"]);
    let breach = monitor.expect_log(&[r#"event="breach""#, &format!("pid={}", pids[0])]);
    assert!(breach.contains(via), "{breach}");
    expect_reaped(&mut monitor, "poll", &pids);
    assert!(is_alive(cgroups.outside.pid()), "{}", monitor.log_text());
    drop(freezer);
    for member in &mut cgroups.members {
        assert!(member.wait_exit().is_some(), "thawed, it dies");
    }
    assert!(monitor.stop().success());
}

/// Waits for the `released` line of each of `pids`, killed and frozen, and checks that their
/// memory is gone if this kernel reaps it, and there still if not.
fn expect_reaped(monitor: &mut Monitor, mode: &str, pids: &[i32]) {
    let released = has_process_mrelease();
    let outcome = match released {
        true => "memory=released",
        false => r#"memory="left to the exit (no process_mrelease)""#,
    };
    for pid in pids {
        monitor.expect_log(&[r#"event="released""#, &format!("pid={pid} "), outcome]);
        // Still there, frozen: its memory is gone only if the monitor reaped it.
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        let rss = resident_bytes(&pid.to_string());
        match released {
            true => assert!(rss < 8 << 20, "{mode}: {pid}: {rss} bytes still resident"),
            false => assert!(
                rss > 16 << 20,
                "{mode}: {pid}: {rss} bytes, not reaped, yet gone"
            ),
        }
    }
}

/// The monitor in `mode`, killing what goes over 32 MiB, then `more`.
fn kill_over_32m(mode: &str, more: &[&str]) -> Monitor {
    let mut args = vec!["--mode", mode, "-m", "32", "-s", "KILL", "-i", "100ms"];
    args.extend_from_slice(more);
    Monitor::start(&args)
}

/// A new cgroup `name` of the v1 freezer holding `pids`, frozen: a process frozen stays,
/// SIGKILL pending, until thawed (the cgroup dropped), and only the monitor's reaping can
/// free its memory meanwhile.
fn frozen(freezer_v1: &V1Freezer, name: &str, pids: &[i32]) -> Cgroup {
    let freezer = Cgroup::create(freezer_v1.root(), name);
    for &pid in pids {
        freezer.add(pid);
    }
    freeze(&freezer);
    freezer
}

/// Thaws `freezer`, which holds `target`, killed: it dies; then stops `monitor`.
fn thaw(freezer: Cgroup, target: &mut Target, monitor: Monitor, mode: &str) {
    drop(freezer);
    assert!(target.wait_exit().is_some(), "{mode}: thawed, it dies");
    assert!(monitor.stop().success());
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
