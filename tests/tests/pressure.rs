//! Memory pressure: a cgroup holding the monitor, the target and a hog runs close to its memory
//! limit, so every page anyone touches is won by reclaiming another. The monitor, its memory
//! locked, still signals the target when it goes over its own limit. Both modes.

use memory_monitor_tests::cgroup::{Cgroup, memory_hierarchy};
use memory_monitor_tests::{Monitor, Target, root_or_skip, unique_name, usr1_over_32m};

/// The cgroup's limit; the hog takes all but `HEADROOM` of it.
const LIMIT_MIB: u64 = 256;
const HEADROOM_MIB: u64 = 72;

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
    // The hog fills the cgroup up to its headroom; the target then grows past its own limit
    // into what is left, each page of it reclaimed from someone.
    hog.grow((LIMIT_MIB - HEADROOM_MIB) as usize);
    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    let usage = std::fs::read_to_string(cgroup_usage(&cgroup)).unwrap_or_default();
    println!(
        "{mode}: signalled with the cgroup at {} MiB of {LIMIT_MIB} MiB",
        usage.trim().parse::<u64>().unwrap_or(0) >> 20
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

/// The file with the cgroup's current usage.
fn cgroup_usage(cgroup: &Cgroup) -> std::path::PathBuf {
    let v2 = cgroup.dir().join("memory.current");
    match v2.exists() {
        true => v2,
        false => cgroup.dir().join("memory.usage_in_bytes"),
    }
}

#[test]
fn under_memory_pressure_in_poll_mode_the_target_is_signalled() {
    if root_or_skip("under_memory_pressure_in_poll_mode (cgroups need root)") {
        run("poll");
    }
}

#[test]
fn under_memory_pressure_in_ebpf_mode_the_target_is_signalled() {
    if root_or_skip("under_memory_pressure_in_ebpf_mode") {
        run("ebpf");
    }
}
