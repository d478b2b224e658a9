//! Hardening once started: only the capabilities still needed remain (in every thread and in
//! the bounding set, so hooks cannot take the others back), memory is locked, the OOM score is
//! set — and the monitor still does everything it does.

use std::os::unix::process::CommandExt as _;

use memory_monitor_tests::{Monitor, Target, root_or_skip, unique_name, wait_until};

/// CAP_DAC_READ_SEARCH (2), CAP_KILL (5), CAP_IPC_LOCK (14), CAP_SYS_PTRACE (19).
const KEPT: u64 = (1 << 2) | (1 << 5) | (1 << 14) | (1 << 19);

/// A field of a `/proc/.../status` text.
fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

fn capabilities(status: &str, set: &str) -> u64 {
    u64::from_str_radix(field(status, set), 16).unwrap()
}

#[test]
fn after_start_up_only_the_needed_capabilities_remain_and_all_still_works() {
    if !root_or_skip("after_start_up_only_the_needed_capabilities_remain") {
        return;
    }
    let profiles = std::env::temp_dir().join(unique_name("mmh-prof"));
    let name = unique_name("mmh-cap");
    // Another user's process: signalling it needs CAP_KILL, profiling it CAP_SYS_PTRACE.
    let mut target = Target::spawn_with(&name, |command| {
        command.uid(65534).gid(65534);
    });
    let mut monitor = Monitor::start(&[
        "--mode",
        "ebpf",
        "-v",
        "-m",
        "32M",
        "-s",
        "USR1",
        "--repeat",
        "never",
        "--oom-score-adj",
        "500",
        "--profile-dir",
        profiles.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
        &name,
    ]);
    monitor.expect_log(&["start-up done"]);
    let pid = monitor.pid();
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|task| task.path())
        .collect();
    // The main thread, the profiler's and the metrics server's at least.
    assert!(tasks.len() >= 3, "{tasks:?}");
    for task in &tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(
                capabilities(&status, set),
                KEPT,
                "{set} of {} is {:#x}",
                task.display(),
                capabilities(&status, set)
            );
        }
        assert_eq!(capabilities(&status, "CapInh"), 0);
        assert_eq!(capabilities(&status, "CapAmb"), 0);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked: u64 = field(&status, "VmLck")
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    assert!(locked > 0, "memory is locked: {status}");
    let oom = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(oom.trim(), "500");

    // With what is left it still signals and profiles another user's process.
    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    monitor.expect_log(&["profile written", &format!("pid={}", target.pid())]);
    assert!(monitor.stop().success());
    let written = std::fs::read_dir(&profiles).unwrap().count();
    assert_eq!(written, 1);
    std::fs::remove_dir_all(&profiles).unwrap();
}

#[test]
fn the_default_oom_score_is_applied_or_its_refusal_said() {
    let name = unique_name("mmh-oom");
    let mut monitor = Monitor::start(&["--mode", "poll", "-v", "-m", "1G", &name]);
    monitor.expect_log(&["checked"]);
    let oom = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", monitor.pid())).unwrap();
    // Lowering a score needs CAP_SYS_RESOURCE, which not every root has (containers).
    let mine = std::fs::read_to_string("/proc/self/status").unwrap();
    let may_lower = capabilities(&mine, "CapEff") & (1 << 24) != 0;
    match may_lower {
        true => assert_eq!(oom.trim(), "-900"),
        false => {
            println!(
                "this process lacks CAP_SYS_RESOURCE: the monitor must say it cannot lower its score"
            );
            let line = monitor.expect_log(&["cannot set the OOM score adjustment to -900"]);
            assert!(line.contains("event=\"harden\""), "{line}");
        }
    }
    assert!(wait_until(|| monitor.count(&["checked"]) > 0));
    assert!(monitor.stop().success());
}
