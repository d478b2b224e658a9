//! Churn: thousands of short-lived matching processes while real targets grow past their
//! limit. The monitor survives, signals the targets, says nothing about each process that
//! vanished under it, and its memory stays flat. Both modes. (How many processes a second it
//! keeps up with is a figure for the bench.)

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memory_monitor_tests::{Monitor, Target, patience, unique_name, usr1_over_32m, wait_until};

/// How many processes the churn starts (and reaps) in all, however long that takes.
const CHURN: u64 = 6_000;

/// How many of them come before the monitor's size is first taken.
const WARM_UP: u64 = 500;

/// The process's anonymous resident memory, KiB: its heap, stacks and buffers (file-backed
/// pages only grow as code runs for the first time, and are bounded by the binary's size).
fn anonymous_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// Starts and reaps processes named `name` (a link to `true`) until `stop`; counts them.
fn churn(name: String, stop: Arc<AtomicBool>, started: Arc<AtomicU64>) {
    let link = std::env::temp_dir().join(&name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/bin/true", &link).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        for _ in 0..16 {
            match Command::new(&link).stdin(Stdio::null()).spawn() {
                Ok(child) => batch.push(child),
                Err(_) => break,
            }
        }
        started.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for mut child in batch {
            let _ = child.wait();
        }
    }
    let _ = std::fs::remove_file(&link);
}

/// Waits until the churn has started `n` processes; panics if it stops making progress.
fn churned(started: &AtomicU64, n: u64) {
    let mut last = (started.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = started.load(Ordering::Relaxed);
        if now >= n {
            return;
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
        assert!(
            last.1.elapsed() < patience(),
            "the churn stalled at {now} processes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A target named `name` grown past the 32 MiB limit, once the monitor has signalled it.
/// In eBPF mode the kernel reports its exec and growth after every exit before them, so
/// once it is signalled those have all been handled.
fn breach(name: &str, monitor: &mut Monitor) -> Target {
    let mut target = Target::spawn(name);
    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    target
}

fn run(mode: &str) {
    let prefix = unique_name("mmz-");
    let mut monitor = Monitor::start(&[
        "--mode", mode, "-i", "100ms", "-m", "32M", "-s", "USR1", "--repeat", "never", &prefix,
    ]);
    monitor.expect_log(&["watching", &format!("mode={mode}")]);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    let churner = {
        let (stop, started, name) = (stop.clone(), started.clone(), format!("{prefix}c"));
        std::thread::spawn(move || churn(name, stop, started))
    };
    // Once the monitor has seen processes come and go (and handled them: a breach after
    // them is signalled), its size; again once it has seen them all.
    churned(&started, WARM_UP);
    let early = breach(&format!("{prefix}e"), &mut monitor);
    let before = anonymous_kib(monitor.pid());
    churned(&started, CHURN / 2);
    let target = breach(&format!("{prefix}t"), &mut monitor);
    churned(&started, CHURN);
    stop.store(true, Ordering::Relaxed);
    churner.join().unwrap();
    let late = breach(&format!("{prefix}l"), &mut monitor);
    let after = anonymous_kib(monitor.pid());
    println!(
        "{mode}: {} processes; monitor's anonymous RSS {before} KiB -> {after} KiB",
        started.load(Ordering::Relaxed)
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGTERM) };
    assert!(monitor.wait().success(), "the monitor survived");
    monitor.expect_log(&[r#"event="stop""#]);
    let log = monitor.log_text();
    // The only warnings are the targets' breaches: nothing per vanished process, no error.
    let complaints: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .filter(|line| !line.contains(r#"event="no_match""#))
        .collect();
    let breached: Vec<String> = [&early, &target, &late]
        .iter()
        .map(|t| format!("pid={}", t.pid()))
        .collect();
    assert!(
        complaints.len() == 3
            && breached
                .iter()
                .all(|pid| complaints.iter().any(|line| line.contains(pid.as_str()))),
        "{log}"
    );
    // Flat: what it holds does not grow with the processes it has seen come and go. (The
    // slack covers preallocated tables whose pages are first touched as PIDs advance.)
    assert!(
        after <= before + 512,
        "anonymous RSS {before} KiB -> {after} KiB"
    );
}

#[test]
fn churn_in_poll_mode() {
    run("poll");
}

#[test]
#[ignore = "needs root"]
fn churn_in_ebpf_mode() {
    run("ebpf");
}

/// The kernel side's counts per slot in its map `name` (`WATCH_SLOTS`: watched processes by
/// tgid; `MM_SLOTS`: their memory maps), read from the map the monitor `pid` holds: (slot,
/// count) for every slot that counts one.
fn counted_slots(pid: i32, name: &str) -> Vec<(u32, u32)> {
    let map = memory_monitor_tests::bpf_map_of(pid, name);
    let slots = aya::maps::Array::<_, u32>::try_from(aya::maps::Map::Array(map)).unwrap();
    slots
        .iter()
        .enumerate()
        .filter_map(|(slot, count)| {
            let count = count.expect("read a slot");
            (count != 0).then_some((slot as u32, count))
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn in_ebpf_mode_watched_processes_that_exit_are_forgotten_on_both_sides() {
    // 100,000 processes named like the rule come and go (each exec'd, admitted when the
    // monitor gets to it, and gone); small tables, so that anything not forgotten overflows.
    const EXITS: u64 = 100_000;
    let prefix = unique_name("mmz-");
    let mut monitor = Monitor::start(&[
        "--mode",
        "ebpf",
        "-m",
        "32M",
        "-s",
        "USR1",
        "--repeat",
        "never",
        "--max-processes",
        "64",
        &prefix,
    ]);
    monitor.expect_log(&["watching", "mode=ebpf"]);
    let before = anonymous_kib(monitor.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    let churners: Vec<_> = (0..2)
        .map(|n| {
            let (stop, started, name) = (stop.clone(), started.clone(), format!("{prefix}{n}"));
            std::thread::spawn(move || churn(name, stop, started))
        })
        .collect();
    churned(&started, EXITS);
    stop.store(true, Ordering::Relaxed);
    for churner in churners {
        churner.join().unwrap();
    }
    // A real breach after them all: its exec is reported after every exit before it, so once
    // it is signalled, they have all been handled.
    let mut target = Target::spawn(&format!("{prefix}t"));
    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    let counted = counted_slots(monitor.pid(), "WATCH_SLOTS");
    let slot_mask = 4095; // 64 processes: the smallest table, 4096 slots
    let total: u32 = counted.iter().map(|(_, count)| count).sum();
    assert!(
        counted == [(target.pid() as u32 & slot_mask, 1)],
        "only the live target is to be counted on the kernel side, not {total} processes in {} slots: {:?}…",
        counted.len(),
        &counted[..counted.len().min(8)]
    );
    // The memory maps the kernel side learned: the target's alone (it grew, so its map is
    // known), wherever it hashes to.
    let maps = counted_slots(monitor.pid(), "MM_SLOTS");
    assert!(
        maps.len() == 1 && maps[0].1 == 1,
        "only the live target's memory map is to be counted, not {} in {} slots: {:?}…",
        maps.iter().map(|(_, count)| count).sum::<u32>(),
        maps.len(),
        &maps[..maps.len().min(8)]
    );
    let after = anonymous_kib(monitor.pid());
    assert!(
        after <= before + 512,
        "anonymous RSS {before} KiB -> {after} KiB"
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGTERM) };
    assert!(monitor.wait().success(), "the monitor survived");
    monitor.expect_log(&[r#"event="stop""#]);
    // (The rule selects nothing at start: its targets come later, which is said.)
    assert_eq!(
        monitor.count(&["WARN"]) - monitor.count(&[r#"event="no_match""#]),
        1,
        "only the breach: nothing skipped or lost; {}",
        monitor.log_text()
    );
}

#[test]
#[ignore = "needs root"]
fn in_ebpf_mode_a_process_userspace_lets_go_leaves_no_map_counted_once_it_exits() {
    // The kernel side learns a watched process's memory map from its own changes. When
    // userspace lets the process go (here: it becomes a user the rule leaves out) and it later
    // exits, its map must not stay counted: the tables would fill up with such maps, one
    // process at a time, as they did under churn.
    let prefix = unique_name("mmz-");
    let mut monitor = Monitor::start(&usr1_over_32m(
        "ebpf",
        &["-v", "--exclude-user", "65534", &prefix],
    ));
    monitor.expect_log(&["start-up done"]);
    for round in 0..3 {
        let mut target = Target::spawn(&format!("{prefix}{round}"));
        let pid = format!("pid={}", target.pid());
        monitor.expect_log(&["watching", &pid]);
        // A change of its own: the kernel side learns its map.
        target.grow(8);
        target.become_user(65534);
        monitor.expect_log(&["no longer watched", &pid]);
        // Killed: it exits unwatched, with no change of its own after.
        drop(target);
        let gone = wait_until(|| !std::path::Path::new(&format!("/proc/{}", &pid[4..])).exists());
        assert!(gone, "round {round}: the target was not reaped");
        let maps = counted_slots(monitor.pid(), "MM_SLOTS");
        assert!(
            maps.is_empty(),
            "round {round}: no process is watched, yet memory maps are counted: {maps:?}; log:\n{}",
            monitor.log_text()
        );
    }
    assert!(monitor.stop().success());
}
