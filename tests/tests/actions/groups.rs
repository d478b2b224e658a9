//! `--act-on`: a breach's signal reaching the whole process group of the process over its
//! limit, or every process of the cgroup its rule selects it by, and never a process outside
//! them; the process alone by default.

use std::os::unix::process::CommandExt as _;
use std::os::unix::process::ExitStatusExt as _;

use memory_monitor_tests::cgroup::{Cgroup, spawn_inside, v2_mount};
use memory_monitor_tests::{Monitor, Target, is_alive, run_monitor, unique_name, wait_until};

const USR1: i32 = libc::SIGUSR1;

/// A target leading a process group of its own, with two children (forked: in its group).
fn group_of_three(name: &str) -> (Target, [i32; 2]) {
    let mut leader = Target::spawn_with(name, |command| {
        command.process_group(0);
    });
    let children = [leader.fork(), leader.fork()];
    (leader, children)
}

/// The monitor in `mode` watching `name`, SIGUSR1 once per breach over 32 MiB, then `more`.
fn watch(mode: &str, more: &[&str]) -> Monitor {
    let mut args = vec![
        "--mode", mode, "-i", "100ms", "-v", "-m", "32M", "-s", "USR1", "--repeat", "never",
    ];
    args.extend_from_slice(more);
    let mut monitor = Monitor::start(&args);
    monitor.expect_log(&["watching", &format!("mode={mode}")]);
    monitor.expect_log(&["checked"]);
    monitor
}

#[test]
#[ignore = "needs root"]
fn a_process_group_is_signalled_whole_when_asked_and_only_the_process_by_default() {
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mmg-pg");
        let (mut leader, children) = group_of_three(&name);
        // Another group, its name not watched: never signalled.
        let (mut other, other_children) = group_of_three(&unique_name("mmg-ot"));
        let mut monitor = watch(mode, &["--act-on", "process-group", &name]);
        leader.grow(48);
        let breach = monitor.expect_log(&[r#"event="breach""#, &format!("pid={}", leader.pid())]);
        let pgid = format!("pgid={}", leader.pid());
        for field in [r#"acted_on="process-group""#, &pgid, "members=3"] {
            assert!(breach.contains(field), "{mode}: {field}: {breach}");
        }
        // The line comes after every member's signal was sent.
        assert_eq!(leader.signals(), [USR1], "{mode}");
        for child in children {
            assert_eq!(leader.signals_of(child), [USR1], "{mode}: child {child}");
        }
        assert!(other.signals().is_empty(), "{}", monitor.log_text());
        for child in other_children {
            assert!(other.signals_of(child).is_empty(), "{}", monitor.log_text());
        }
        assert!(monitor.stop().success());

        // The default: the process alone.
        let name = unique_name("mmg-df");
        let (mut leader, children) = group_of_three(&name);
        let mut monitor = watch(mode, &[&name]);
        leader.grow(48);
        let breach = monitor.expect_log(&[r#"event="breach""#, &format!("pid={}", leader.pid())]);
        assert!(breach.contains(r#"acted_on="process""#), "{breach}");
        assert!(!breach.contains("members="), "{breach}");
        assert_eq!(leader.signals(), [USR1], "{mode}");
        for child in children {
            assert!(
                leader.signals_of(child).is_empty(),
                "{}",
                monitor.log_text()
            );
        }
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn kill_after_kills_the_whole_process_group() {
    let name = unique_name("mmg-ka");
    let mut leader = Target::spawn_with(&name, |command| {
        command.process_group(0);
    });
    // The children inherit it: SIGTERM ends none of the three.
    leader.ignore_term();
    let children = [leader.fork(), leader.fork()];
    let mut monitor = Monitor::start(&[
        "--mode",
        "poll",
        "-i",
        "100ms",
        "-m",
        "32M",
        "--repeat",
        "never",
        "--kill-after",
        "300ms",
        "--act-on",
        "process-group",
        &name,
    ]);
    leader.start_growing(48);
    let status = leader.wait_exit().expect("the leader is killed");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{}",
        monitor.log_text()
    );
    let kill = monitor.expect_log(&[r#"event="kill""#, r#"acted_on="process-group""#]);
    assert!(kill.contains("members=3"), "{kill}");
    for child in children {
        assert!(
            wait_until(|| !is_alive(child)),
            "child {child} lives on: {}",
            monitor.log_text()
        );
    }
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn the_monitor_s_own_process_group_is_never_signalled() {
    // Started without a group of its own, the target is in the test's, and so the monitor's.
    let name = unique_name("mmg-own");
    let mut target = Target::spawn(&name);
    let child = target.fork();
    let mut monitor = watch("poll", &["--act-on", "process-group", &name]);
    target.grow(48);
    let breach = monitor.expect_log(&[r#"event="breach""#, &format!("pid={}", target.pid())]);
    assert!(breach.contains(r#"acted_on="process""#), "{breach}");
    assert!(
        breach.contains(r#"group_refused="it is in the monitor's own process group""#),
        "{breach}"
    );
    // Had the group been signalled, the child would have had SIGUSR1 too (the monitor and
    // its parent, this test, are never signalled whatever their group).
    assert_eq!(target.signals(), [USR1]);
    assert!(
        target.signals_of(child).is_empty(),
        "{}",
        monitor.log_text()
    );
    assert!(monitor.stop().success());
}

#[test]
fn the_hook_is_told_what_was_acted_on() {
    let runs = std::env::temp_dir().join(unique_name("mmg-hk"));
    // One short line a run, appended in one write: runs at once do not interleave.
    let command = format!(
        "echo \"$MM_EVENT $MM_PID [$MM_ACTED_ON]\" >> {}",
        runs.display()
    );
    for (act_on, acted_on) in [
        (&["--act-on", "process-group"][..], "process-group"),
        (&[], "process"),
    ] {
        let name = unique_name("mmg-hk");
        let mut leader = Target::spawn_with(&name, |command| {
            command.process_group(0);
        });
        let mut more = vec!["--warn-at", "16M", "--exec", &command];
        more.extend_from_slice(act_on);
        more.push(&name);
        let mut monitor = watch("poll", &more);
        let pid = leader.pid();
        leader.grow(24);
        monitor.expect_log(&[r#"event="warn""#, &format!("pid={pid}")]);
        leader.grow(24);
        monitor.expect_log(&[r#"event="breach""#, &format!("pid={pid}")]);
        // A warning signals nothing: it is told so.
        let wanted = [
            format!("warn {pid} []"),
            format!("breach {pid} [{acted_on}]"),
        ];
        let ran = || std::fs::read_to_string(&runs).unwrap_or_default();
        assert!(
            wait_until(|| wanted.iter().all(|line| ran().lines().any(|l| l == line))),
            "{wanted:?} in {:?}: {}",
            ran(),
            monitor.log_text()
        );
        assert!(monitor.stop().success());
    }
    std::fs::remove_file(&runs).unwrap();
}

/// A cgroup of three processes (one in a cgroup below it), and a process outside it. Dropped
/// in this order: the processes, then the cgroups, innermost first.
pub(super) struct Cgroups {
    pub(super) members: [Target; 3],
    pub(super) outside: Target,
    _below: Cgroup,
    pub(super) top: Cgroup,
}

pub(super) fn cgroup_of_three(label: &str) -> Cgroups {
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    let top = Cgroup::create(root, &unique_name(label));
    let below = Cgroup::create(top.dir(), "below");
    let name = unique_name(label);
    let members = [
        spawn_inside(&name, &top),
        spawn_inside(&unique_name(label), &top),
        spawn_inside(&unique_name(label), &below),
    ];
    let outside = Target::spawn(&name);
    Cgroups {
        members,
        outside,
        _below: below,
        top,
    }
}

#[test]
#[ignore = "needs root"]
fn a_cgroup_rule_signals_every_process_of_its_cgroup_and_none_outside() {
    for mode in ["poll", "ebpf"] {
        let mut cgroups = cgroup_of_three("mmg-cg");
        let top = cgroups.top.path();
        let mut monitor = watch(mode, &["--cgroup", &top, "--act-on", "cgroup"]);
        cgroups.members[0].grow(48);
        let pid = format!("pid={}", cgroups.members[0].pid());
        let breach = monitor.expect_log(&[r#"event="breach""#, &pid]);
        let cgroup = format!(r#"cgroup="{top}""#);
        // SIGUSR1 is not SIGKILL: one by one, whatever the kernel.
        for field in [r#"acted_on="cgroup""#, &cgroup, "members=3"] {
            assert!(breach.contains(field), "{mode}: {field}: {breach}");
        }
        for member in &mut cgroups.members {
            assert_eq!(member.signals(), [USR1], "{}", monitor.log_text());
        }
        assert!(
            cgroups.outside.signals().is_empty(),
            "{}",
            monitor.log_text()
        );
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn sigkill_to_a_cgroup_goes_through_cgroup_kill_where_the_kernel_has_it() {
    let mut cgroups = cgroup_of_three("mmg-ck");
    // Decided as the monitor decides it: by the file, not by the kernel's version.
    let has_kill = cgroups.top.dir().join("cgroup.kill").exists();
    let top = cgroups.top.path();
    let mut monitor = Monitor::start(&[
        "--mode", "poll", "-i", "100ms", "-m", "32M", "-s", "KILL", "--cgroup", &top, "--act-on",
        "cgroup",
    ]);
    cgroups.members[0].start_growing(48);
    let breach = monitor.expect_log(&[r#"event="breach""#, r#"acted_on="cgroup""#]);
    match has_kill {
        true => assert!(breach.contains(r#"via="cgroup.kill""#), "{breach}"),
        false => assert!(breach.contains("members=3"), "{breach}"),
    }
    for member in &mut cgroups.members {
        let status = member.wait_exit().expect("killed");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{}",
            monitor.log_text()
        );
    }
    // Its SIGKILL, had it one, was sent before the breach's line: it could not answer now.
    cgroups.outside.grow(1);
    assert!(monitor.stop().success());
}

#[test]
fn act_on_cgroup_needs_a_rule_that_selects_by_cgroup() {
    // --check-config: exit 0 at once were the rule taken.
    let (status, stderr) = run_monitor(&[
        "--check-config",
        "-m",
        "1G",
        "--act-on",
        "cgroup",
        "some-name",
    ]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--act-on cgroup acts on the cgroup the rule selects by")
            && stderr.contains("add --cgroup PATH"),
        "{stderr}"
    );
    let (status, stderr) = run_monitor(&["--check-config", "-m", "1G", "--act-on", "group", "x"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("'group'") && stderr.contains("process-group"),
        "{stderr}"
    );
}
