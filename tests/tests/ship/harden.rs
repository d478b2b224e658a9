//! Hardening once started: only the capabilities still needed remain (in every thread and in
//! the bounding set where it may), no exec can gain privileges (`no_new_privs`), so hooks
//! cannot take the others back, memory is locked, the OOM score is set — and the monitor still
//! does everything it does. What cannot be done is said once.

use std::os::unix::process::CommandExt as _;

use memory_monitor_tests::{
    Monitor, Target, capability_set as capabilities, status_field as field, unique_name, wait_until,
};

/// CAP_DAC_READ_SEARCH (2), CAP_KILL (5), CAP_IPC_LOCK (14), CAP_SYS_PTRACE (19).
const KEPT: u64 = (1 << 2) | (1 << 5) | (1 << 14) | (1 << 19);

/// CAP_SETPCAP (8): kept permitted, never effective, for the commands the monitor runs to
/// empty their bounding sets with.
const SETPCAP: u64 = 1 << 8;

#[test]
#[ignore = "needs root"]
fn after_start_up_only_the_needed_capabilities_remain_and_all_still_works() {
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
        for (set, kept) in [
            ("CapEff", KEPT),
            ("CapPrm", KEPT | SETPCAP),
            ("CapBnd", KEPT),
        ] {
            assert_eq!(
                capabilities(&status, set),
                kept,
                "{set} of {} is {:#x}",
                task.display(),
                capabilities(&status, set)
            );
        }
        assert_eq!(capabilities(&status, "CapInh"), 0);
        assert_eq!(capabilities(&status, "CapAmb"), 0);
        assert_eq!(field(&status, "NoNewPrivs"), "1", "{}", task.display());
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
    // The profile and its flame graph.
    assert_eq!(written, 2);
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
            // What is missing, and what it costs.
            let line = monitor.expect_log(&["OOM score adjustment left at", "not -900"]);
            assert!(line.contains("event=\"harden\""), "{line}");
            assert!(line.contains("needs CAP_SYS_RESOURCE"), "{line}");
            assert!(
                line.contains("the OOM killer may take the monitor"),
                "{line}"
            );
        }
    }
    assert!(wait_until(|| monitor.count(&["checked"]) > 0));
    assert!(monitor.stop().success());
}

/// CAP_SYS_ADMIN (21), CAP_PERFMON (38), CAP_BPF (39): what the monitor needs only to start.
const START_UP_ONLY: u64 = (1 << 21) | (1 << 38) | (1 << 39);

/// The systemd unit's `CapabilityBoundingSet`, as `setpriv --bounding-set` takes it, leaving
/// out `without`.
fn unit_bounding_set(without: &str) -> String {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/memory-monitor.service"),
    )
    .unwrap();
    let set = unit
        .lines()
        .find_map(|line| line.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds its capabilities");
    let mut arg = "--bounding-set=-all".to_string();
    for cap in set.split_whitespace().filter(|cap| *cap != without) {
        arg.push_str(",+");
        arg.push_str(&cap.trim_start_matches("CAP_").to_lowercase());
    }
    arg
}

#[test]
#[ignore = "needs root"]
fn under_the_service_capabilities_no_hook_regains_a_dropped_one() {
    // The unit's bounding set as shipped, and without CAP_SETPCAP (a container given only the
    // rest): then the monitor cannot reduce its bounding set, and a root process's exec would
    // be given all of it, BPF and PERFMON included, but for no_new_privs.
    for without in ["", "CAP_SETPCAP"] {
        let name = unique_name("mmh-nnp");
        let out = std::env::temp_dir().join(format!("{name}.status"));
        let _ = std::fs::remove_file(&out);
        // Written aside and renamed: the file is complete once it exists.
        let hook = format!(
            "cat /proc/self/status > {0}.tmp && mv {0}.tmp {0}",
            out.display()
        );
        let mut target = Target::spawn(&name);
        target.grow(48);
        let bounding = unit_bounding_set(without);
        let mut monitor = Monitor::start_wrapped(
            &["setpriv", &bounding, "--inh-caps=-all", "--"],
            &[
                "--mode", "ebpf", "-m", "32M", "-s", "USR1", "--repeat", "never", "-v", "--exec",
                &hook, &name,
            ],
        );
        monitor.expect_log(&["start-up done"]);
        let unreduced = monitor.count(&["capability bounding set not reduced"]);
        assert_eq!(
            unreduced,
            usize::from(!without.is_empty()),
            "{}",
            monitor.log_text()
        );
        assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
        assert!(wait_until(|| out.exists()), "{}", monitor.log_text());

        let status = std::fs::read_to_string(format!("/proc/{}/status", monitor.pid())).unwrap();
        let hook = std::fs::read_to_string(&out).unwrap();
        for set in ["CapEff", "CapPrm"] {
            assert_eq!(
                capabilities(&status, set) & START_UP_ONLY,
                0,
                "the monitor's {set}: {status}"
            );
            assert_eq!(
                capabilities(&hook, set) & START_UP_ONLY,
                0,
                "the hook's {set}: {hook}"
            );
        }
        // With CAP_SETPCAP the bounding set holds only what is kept; without, BPF, PERFMON and
        // SYS_ADMIN stay in it, which is why no_new_privs matters.
        let bounding = capabilities(&hook, "CapBnd");
        match without {
            "" => assert_eq!(bounding & !KEPT, 0, "{hook}"),
            _ => assert_eq!(bounding & START_UP_ONLY, START_UP_ONLY, "{hook}"),
        }
        assert_eq!(field(&status, "NoNewPrivs"), "1", "the monitor: {status}");
        assert_eq!(field(&hook, "NoNewPrivs"), "1", "the hook: {hook}");
        assert!(monitor.stop().success());
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn memory_that_cannot_be_locked_is_said_once() {
    let name = unique_name("mmh-lck");
    // A locked-memory limit the monitor cannot lift and, as root, neither CAP_SYS_RESOURCE to
    // lift it nor CAP_IPC_LOCK to lock past it.
    let mut wrapper = vec!["prlimit", "--memlock=65536:65536", "--"];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        wrapper.extend(["setpriv", "--bounding-set=-sys_resource,-ipc_lock", "--"]);
    }
    let mut monitor = Monitor::start_wrapped(&wrapper, &["--mode", "poll", "-m", "1G", &name]);
    let line = monitor.expect_log(&["memory not locked"]);
    assert!(line.contains("event=\"harden\""), "{line}");
    assert!(line.contains("RLIMIT_MEMLOCK"), "{line}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", monitor.pid())).unwrap();
    assert_eq!(field(&status, "VmLck"), "0 kB", "{status}");
    assert_eq!(monitor.count(&["memory not locked"]), 1);
    assert!(monitor.stop().success());
}
