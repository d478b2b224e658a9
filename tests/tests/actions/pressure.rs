//! Memory pressure: a cgroup holding the monitor, the target and a hog runs at its memory
//! limit, so every page anyone touches is won by reclaiming another (the hog's page cache, so
//! that reclaim, not the OOM killer, makes room). The monitor, its memory locked, still signals
//! the target when it goes over its own limit, and the cgroup's own count shows it was at its
//! limit meanwhile. Both modes.

use memory_monitor_tests::cgroup::{Cgroup, memory_hierarchy};
use memory_monitor_tests::{Monitor, Target, unique_name, usr1_over_32m};

/// The cgroup's limit.
const LIMIT_MIB: u64 = 256;
/// The hog's anonymous memory (not reclaimable without swap); its page cache fills the rest.
const HOG_ANON_MIB: u64 = 128;

fn run(mode: &str) {
    let (root, limit_file) = memory_hierarchy().expect("a memory controller");
    let cgroup = Cgroup::create(&root, &unique_name("mmq-cg"));
    cgroup.set(limit_file, &(LIMIT_MIB << 20).to_string());
    let name = unique_name("mmq-t");
    let mut monitor = Monitor::start(&usr1_over_32m(mode, &["-v", &name]));
    cgroup.add(monitor.pid());
    monitor.expect_log(&["start-up done"]);
    let mut hog = Target::spawn(&unique_name("mmq-hog"));
    cgroup.add(hog.pid());
    let mut target = Target::spawn(&name);
    cgroup.add(target.pid());
    // The hog fills the cgroup past its limit with page cache; the target then grows past its
    // own limit, each page of it won by reclaiming the hog's.
    hog.grow(HOG_ANON_MIB as usize);
    hog.cache(LIMIT_MIB as usize);
    let at_limit_before = times_at_limit(&cgroup);
    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    let at_limit = times_at_limit(&cgroup) - at_limit_before;
    let usage = std::fs::read_to_string(cgroup_usage(&cgroup)).unwrap_or_default();
    println!(
        "{mode}: signalled with the cgroup at {} MiB of {LIMIT_MIB} MiB, at its limit {at_limit} times while the target grew",
        usage.trim().parse::<u64>().unwrap_or(0) >> 20
    );
    assert!(
        at_limit > 0,
        "the cgroup was under pressure while the target grew"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", monitor.pid())).unwrap();
    assert!(
        !status.contains("VmLck:\t       0 kB"),
        "the monitor's memory is locked: {status}"
    );
    assert!(monitor.stop().success(), "the monitor came through");
    drop(hog);
    drop(target);
}

/// How many times the cgroup's usage has hit its limit (v2 `memory.events` `max`, v1
/// `memory.failcnt`).
fn times_at_limit(cgroup: &Cgroup) -> u64 {
    let v2 = std::fs::read_to_string(cgroup.dir().join("memory.events")).ok();
    let count = match v2 {
        Some(events) => events
            .lines()
            .find_map(|line| line.strip_prefix("max ").map(str::to_string)),
        None => std::fs::read_to_string(cgroup.dir().join("memory.failcnt")).ok(),
    };
    count.and_then(|c| c.trim().parse().ok()).unwrap_or(0)
}

/// The file with the cgroup's current usage.
fn cgroup_usage(cgroup: &Cgroup) -> std::path::PathBuf {
    let v2 = cgroup.dir().join("memory.current");
    match v2.exists() {
        true => v2,
        false => cgroup.dir().join("memory.usage_in_bytes"),
    }
}

#[test]
#[ignore = "needs root"]
fn under_memory_pressure_in_poll_mode_the_target_is_signalled() {
    run("poll");
}

#[test]
#[ignore = "needs root"]
fn under_memory_pressure_in_ebpf_mode_the_target_is_signalled() {
    run("ebpf");
}
