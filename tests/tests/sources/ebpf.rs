//! eBPF mode end to end: the real binary with its BPF programs on the real kernel, real
//! processes, real signals. These need root; CI runs as root, so there they always run.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use memory_monitor_tests::{
    Monitor, Target, assert_killed_after_its_term, bpf_objects_of, patience, unique_name,
    wait_until,
};

const USR1: i32 = libc::SIGUSR1;

/// A way the kernel side can judge a crossing here; behaviour must not depend on it.
#[derive(Debug, Clone, Copy)]
struct Way {
    /// How the RSS program attaches.
    attach: &'static str,
    /// With `statm` taken for inexact (fault injection), as on kernels before 6.16: the kernel
    /// side's own exact reading decides, where this kernel can run it.
    statm_inexact: bool,
}

/// Each attach type, with `statm` as this kernel keeps it, and again taken for inexact.
const WAYS: [Way; 4] = [
    Way {
        attach: "tracepoint",
        statm_inexact: false,
    },
    Way {
        attach: "tp-btf",
        statm_inexact: false,
    },
    Way {
        attach: "tracepoint",
        statm_inexact: true,
    },
    Way {
        attach: "tp-btf",
        statm_inexact: true,
    },
];

/// Arguments for eBPF mode (failing rather than falling back), `-vv` so kernel events and
/// their kinds are logged.
fn ebpf_args<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--mode", "ebpf", "-m", "32", "-s", "USR1", "--repeat", "never", "-vv",
    ];
    args.extend_from_slice(rest);
    args
}

/// Starts the monitor and waits until it watches in eBPF mode (the programs are attached) and
/// its first look at `/proc` has told the kernel side which processes to follow (`checked`,
/// logged with `-v`): a change made before then is not the kernel side's to see.
fn start(args: &[&str]) -> Monitor {
    let mut monitor = Monitor::start(args);
    monitor.expect_log(&["watching", "mode=ebpf"]);
    monitor.expect_log(&["checked"]);
    monitor
}

/// Starts the monitor as [`start`] does, judging crossings `way`, with `rest` of the arguments
/// after [`ebpf_args`].
fn start_way(way: Way, rest: &[&str]) -> Monitor {
    let mut args = ebpf_args(&["--attach", way.attach]);
    args.extend_from_slice(rest);
    let mut monitor = Monitor::start_with(&args, |command| {
        if way.statm_inexact {
            command.env("MEMORY_MONITOR_INJECT_FAULT", "statm-inexact");
        }
    });
    monitor.expect_log(&["watching", "mode=ebpf"]);
    monitor.expect_log(&["checked"]);
    monitor
}

/// The monitor looked at `/proc` once, to seed the kernel side, and never polled after.
fn assert_never_polled(monitor: &mut Monitor) {
    let scans = monitor.count(&["checked"]);
    assert_eq!(
        scans,
        1,
        "one scan at start-up only; log:\n{}",
        monitor.log_text()
    );
}

#[test]
#[ignore = "needs root"]
fn a_crossing_is_signalled_and_nothing_else_is() {
    for way in WAYS {
        let name = unique_name("mme-cr");
        let mut target = Target::spawn(&name);
        let mut under = Target::spawn(&format!("{name}u"));
        let mut other = Target::spawn(&unique_name("mme-ot"));
        let mut monitor = start_way(way, &[&name]);
        under.grow(8);
        other.grow(48);
        target.grow(48);
        assert!(target.wait_signal(USR1), "log:\n{}", monitor.log_text());
        monitor.expect_log(&[
            "over the limit",
            &format!("pid={}", target.pid()),
            "result=sent",
        ]);
        under.grow(8);
        other.grow(8);
        target.grow(8);
        // Every process has changed since the breach; had anything been due, it would be logged
        // before this exit is.
        target.exit();
        monitor.expect_log(&["exited"]);
        assert!(under.signals().is_empty(), "under the limit");
        assert!(other.signals().is_empty(), "name does not match");
        assert_never_polled(&mut monitor);
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn processes_are_discovered_at_exec_fork_and_rename_without_polling() {
    for way in WAYS {
        let name = unique_name("mme-dc");
        let mut monitor = start_way(way, &[&name]);

        // exec: started after the monitor, under a matching name.
        let mut execed = Target::spawn(&name);
        execed.grow(48);
        assert!(
            execed.wait_signal(USR1),
            "exec; log:\n{}",
            monitor.log_text()
        );

        // fork: a watched process's child is a process of its own, over the limit from birth.
        let child = execed.fork();
        assert!(
            execed.wait_signal_of(child, USR1),
            "fork; log:\n{}",
            monitor.log_text()
        );

        // rename: a process takes a matching name (prctl PR_SET_NAME on its leader).
        let mut renamed = Target::spawn(&unique_name("mme-rn"));
        renamed.grow(48);
        renamed.rename(&format!("{name}r"));
        assert!(
            renamed.wait_signal(USR1),
            "rename; log:\n{}",
            monitor.log_text()
        );

        assert_eq!(execed.signals(), [USR1], "the parent was signalled once");
        assert_never_polled(&mut monitor);
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn an_exec_while_over_the_limit_is_one_breach() {
    // A real-time signal: two sent are two received (a second SIGUSR1 sent while the first is
    // pending would merge into it and hide a double signal).
    let signal = libc::SIGRTMIN() + 1;
    let name = unique_name("mme-ex");
    let mut target = Target::spawn(&unique_name("mme-pre"));
    // 256 KiB: the new program is over its limit from its first pages (a static build, as in
    // the arm64 guests, starts at about 640 KiB; a dynamic one at more).
    let mut monitor = start(&[
        "--mode", "ebpf", "-m", "256K", "-s", "RTMIN+1", "--repeat", "never", "-vv", &name,
    ]);
    // The kernel reports this exec twice: the new name as a rename, then the exec.
    target.exec(&name);
    assert!(target.wait_signal(signal), "{}", monitor.log_text());
    let pid = format!("pid={}", target.pid());
    // The exec's own reports precede the breach's line: once it is in, they are counted.
    monitor.expect_log(&["over the limit", &pid]);
    // A rename away from the name: the kernel reports it after the exec, so once its report
    // has come in, everything the exec caused has been handled.
    let renames = ["kernel event", pid.as_str(), "kind=rename"];
    let before = monitor.count(&renames);
    target.rename(&unique_name("mme-aw"));
    monitor.expect_count(&renames, before + 1);
    let log = monitor.log_text();
    assert_eq!(monitor.count(&["over the limit", &pid]), 1, "{log}");
    assert_eq!(target.signals(), [signal], "{log}");
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn a_thread_taking_a_matching_name_is_not_a_process_to_watch() {
    let name = unique_name("mme-th");
    let mut target = Target::spawn(&unique_name("mme-tp"));
    target.grow(48);
    let mut monitor = start(&ebpf_args(&[&name]));
    target.named_thread(&format!("{name}t"));
    // The monitor has seen the rename (the kernel side cannot tell a thread from a process
    // there and asks userspace, which finds a thread and lets it go).
    monitor.expect_log(&["kernel event", "kind=rename"]);
    let probe = Target::spawn(&name);
    monitor.expect_log(&["watching", &format!("pid={}", probe.pid())]);
    assert!(
        target.signals().is_empty(),
        "the process's own name does not match"
    );
    // (But that the rule selected nothing at start: its process came later.)
    assert_eq!(
        monitor.count(&["WARN"]) - monitor.count(&[r#"event="no_match""#]),
        0,
        "nothing to warn about; log:\n{}",
        monitor.log_text()
    );
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn a_process_stopping_just_past_its_limit_is_caught() {
    // The kernel's counters can be a few hundred KiB off the exact figure; a process that
    // stops 64 KiB over its limit is still over it, and must be signalled.
    const LIMIT: u64 = 32 << 20;
    for way in WAYS {
        for _ in 0..2 {
            let name = unique_name("mme-jp");
            let mut target = Target::spawn(&name);
            let mut monitor = start_way(way, &[&name]);
            monitor.expect_log(&["checked", "watched=1"]);
            grow_to(&mut target, LIMIT + (64 << 10));
            assert!(
                exact_rss(&target) > LIMIT,
                "the target did stop past the limit"
            );
            assert!(
                target.wait_signal(USR1),
                "{way:?}: log:\n{}",
                monitor.log_text()
            );
            assert!(monitor.stop().success());
        }
    }
}

#[test]
#[ignore = "needs root"]
fn a_process_stopping_just_under_its_limit_is_not_signalled() {
    // Within the kernel counters' error of the limit an exact figure, 64 KiB under the limit,
    // decides: no signal.
    const LIMIT: u64 = 32 << 20;
    for way in WAYS {
        let name = unique_name("mme-ju");
        let mut target = Target::spawn(&name);
        let mut monitor = start_way(way, &[&name]);
        monitor.expect_log(&["checked", "watched=1"]);
        grow_to(&mut target, LIMIT - (64 << 10));
        assert!(
            exact_rss(&target) <= LIMIT,
            "the target did stop under the limit"
        );
        let pid = format!("pid={}", target.pid());
        // It is within the kernel side's margin, so an exact figure decided: userspace's, on
        // the kernel side's report; or the kernel side's own sum, which reports nothing under
        // the limit.
        if !monitor.log_text().contains("sums_in_kernel=true") {
            monitor.expect_log(&["kernel event", &pid, "kind=near"]);
        }
        kill_and_assert_never_over(target, monitor, way);
    }
}

#[test]
#[ignore = "needs root"]
fn a_process_churning_just_under_its_limit_is_never_signalled() {
    // Where threads cache their RSS changes (up to 6.1), every 65th fault folds the cache
    // into the counters, and the fold fires the tracepoint between adding the cache and
    // zeroing it: a reading then would count up to 260 KiB twice. A process that maps,
    // touches and unmaps 16 pages at a time, 128 KiB under its limit, folds thousands of
    // times there; it is never over. (The ways that decide on the kernel side's sum.) On one
    // CPU under full preemption (where the kernel can switch to it at run time, as 6.1's
    // can and 5.10's cannot), the report a fold causes switches to the monitor inside the
    // fold, so a reading there is the rule, not a rare chance.
    const LIMIT: u64 = 32 << 20;
    let _one_cpu = memory_monitor_tests::sched::OneCpuPreempted::start();
    for way in &WAYS[2..] {
        let name = unique_name("mme-fo");
        let mut target = Target::spawn(&name);
        // Its code for all of this is in before it is measured.
        target.churn(64, 1);
        target.grow_kib(4);
        let mut monitor = start_way(*way, &[&name]);
        monitor.expect_log(&["checked", "watched=1"]);
        grow_to(&mut target, LIMIT - (192 << 10));
        target.churn(64, 2_000);
        assert!(
            exact_rss(&target) + (64 << 10) <= LIMIT,
            "the target churned under the limit"
        );
        kill_and_assert_never_over(target, monitor, *way);
    }
}

/// Kills `target` and, once `monitor` (watching it the `way` way) has seen it exit, asserts it
/// never found it over its limit. Killed, not told to exit: an exit runs code the target never
/// ran before, whose pages fault in (with their neighbours) and can take it past its limit for
/// real, as seen on 5.10, where the counters are folded in at exit and so report it then.
fn kill_and_assert_never_over(target: Target, mut monitor: Monitor, way: Way) {
    let pid = format!("pid={}", target.pid());
    drop(target);
    monitor.expect_log(&["exited", &pid]);
    assert_eq!(
        monitor.count(&["over the limit"]),
        0,
        "{way:?}: log:\n{}",
        monitor.log_text()
    );
    assert!(monitor.stop().success());
}

/// The target's exact resident memory (`smaps_rollup`): `statm` lags or approximates on many
/// kernels.
fn exact_rss(target: &Target) -> u64 {
    memory_monitor_tests::exact::resident_bytes(&target.pid().to_string())
}

/// Grows `target` to `bytes` of exact resident memory: most of the way in MiB steps, the rest
/// in one.
fn grow_to(target: &mut Target, bytes: u64) {
    let start = exact_rss(target);
    assert!(
        start + (1 << 20) < bytes,
        "the target starts at {start} bytes already"
    );
    let short = bytes - start;
    target.grow((short >> 20).saturating_sub(8) as usize);
    let short = bytes - exact_rss(target);
    target.grow_kib((short >> 10) as usize);
}

#[test]
#[ignore = "needs root"]
fn one_event_per_crossing_and_freeing_memory_rearms() {
    for way in WAYS {
        let name = unique_name("mme-oc");
        let mut target = Target::spawn(&name);
        let mut monitor = start_way(way, &[&name]);
        let pid = format!("pid={}", target.pid());

        target.grow(48);
        assert!(target.wait_signal(USR1));
        // The report came before the breach's line: once that line is in, so is the report.
        monitor.expect_log(&["over the limit", &pid]);
        let near_before = monitor.count(&["kernel event", &pid, "kind=near"]);
        assert!(
            near_before >= 1,
            "the crossing was reported; log:\n{}",
            monitor.log_text()
        );
        // Far over the limit the kernel side stays quiet: thousands of counter changes, no event.
        target.grow(64);
        target.madvise(104); // back to ~8 MiB, freed with madvise: the watch re-arms
        monitor.expect_count(&[r#"event="recovered""#, &pid], 1);
        assert_eq!(
            monitor.count(&["kernel event", &pid, "kind=near"]),
            near_before,
            "no report while over the limit; log:\n{}",
            monitor.log_text()
        );
        assert_eq!(monitor.count(&["kernel event", &pid, "kind=under"]), 1);

        target.grow(48);
        assert!(
            target.wait_signals(USR1, 2),
            "the next crossing is caught again"
        );
        target.shrink(200); // back under, this time with munmap
        monitor.expect_count(&[r#"event="recovered""#, &pid], 2);
        target.grow(48);
        assert!(
            target.wait_signals(USR1, 3),
            "and again; log:\n{}",
            monitor.log_text()
        );
        assert_eq!(
            target.signals(),
            [USR1; 3],
            "exactly one signal per crossing; log:\n{}",
            monitor.log_text()
        );
        // The third breach's line is logged after its signal is sent: wait for it.
        monitor.expect_count(&["over the limit", &pid], 3);
        assert_eq!(monitor.count(&["over the limit", &pid]), 3);
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn growth_caused_from_another_process_is_seen() {
    for way in WAYS {
        let name = unique_name("mme-vm");
        let mut target = Target::spawn(&name);
        let mut monitor = start_way(way, &[&name]);
        // The target's own change teaches the kernel side which memory map is the target's.
        target.grow(8);
        let addr = target.reserve(40);
        // This process fills the target's memory: the kernel counts the pages to the target's map
        // from this process's context (rss_stat `curr == 0`), naming the map but not the process.
        target.write_into(addr, 40 << 20);
        assert!(target.wait_signal(USR1), "log:\n{}", monitor.log_text());
        monitor.expect_log(&["over the limit", &format!("pid={}", target.pid())]);
        assert_never_polled(&mut monitor);
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn repeats_and_kill_after_run_on_timers() {
    // Repeats: a real-time signal, so that each one sent is one received, however late the
    // target takes them.
    let name = unique_name("mme-tm");
    let mut target = Target::spawn(&name);
    let signal = libc::SIGRTMIN() + 1;
    let repeats = [
        "--mode", "ebpf", "-m", "32", "-s", "RTMIN+1", "--repeat", "100ms", "-v", &name,
    ];
    let mut monitor = start(&repeats);
    target.grow(48);
    assert!(
        target.wait_signals(signal, 3),
        "repeated; log:\n{}",
        monitor.log_text()
    );
    assert_never_polled(&mut monitor);
    assert!(monitor.stop().success());

    // Kill after: the SIGTERMs are ignored, then SIGKILL, which may come before the target
    // has said it grew or reported a SIGTERM: what is awaited is its death by SIGKILL.
    let name = unique_name("mme-tk");
    let mut target = Target::spawn(&name);
    target.ignore_term();
    let kill = [
        "--mode",
        "ebpf",
        "-m",
        "32",
        "--repeat",
        "100ms",
        "--kill-after",
        "600ms",
        "-v",
        &name,
    ];
    let mut monitor = start(&kill);
    target.start_growing(48);
    assert_killed_after_its_term(&mut target, &mut monitor);
    assert_never_polled(&mut monitor);
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn kernel_signal_is_sent_from_the_kernel_once_per_crossing() {
    for way in WAYS {
        let name = unique_name("mme-ks");
        let mut target = Target::spawn(&name);
        let mut monitor = start_way(way, &["--kernel-signal", &name]);
        monitor.expect_log(&["checked", "watched=1"]);
        // With the monitor's userspace frozen, only the kernel side can signal.
        monitor.freeze();
        target.grow(48);
        let signalled = target.wait_signal(USR1);
        monitor.thaw();
        assert!(signalled, "{way:?}: log:\n{}", monitor.log_text());
        monitor.expect_log(&["over the limit", r#"result="sent by the kernel""#]);
        monitor.expect_log(&["kernel event", "kind=kernel-signal"]);
        target.grow(16);
        assert_eq!(target.signals(), [USR1], "{way:?}: exactly once");
        target.exit();
        monitor.expect_log(&["exited"]);
        assert_eq!(monitor.count(&["over the limit"]), 1);
        assert!(monitor.stop().success());
    }
}

/// The attack on `--kernel-signal` and exec: a watched process, under a rule only userspace
/// can decide (it leaves a user out), execs a program (a setuid one could be anyone's) and
/// grows over its limit before the monitor has decided about it (its userspace frozen). The
/// kernel does not signal it on the old program's decision: the signal comes from userspace,
/// once it has decided.
#[test]
#[ignore = "needs root"]
fn after_an_exec_the_kernel_signals_nothing_until_userspace_decides() {
    let name = unique_name("mme-kx");
    let mut target = Target::spawn(&name);
    let mut monitor = start(&ebpf_args(&[
        "--kernel-signal",
        "--exclude-user",
        "65534",
        &name,
    ]));
    monitor.expect_log(&["checked", "watched=1"]);
    monitor.freeze();
    target.exec(&name);
    target.grow(48);
    monitor.thaw();
    assert!(target.wait_signal(USR1), "log:\n{}", monitor.log_text());
    let line = monitor.expect_log(&["over the limit", &format!("pid={}", target.pid())]);
    assert!(
        line.contains("result=sent") && !line.contains("by the kernel"),
        "{line}"
    );
    assert_eq!(
        monitor.count(&["kind=kernel-signal"]),
        0,
        "{}",
        monitor.log_text()
    );
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn with_kernel_signal_a_breach_is_still_signalled_exactly_once() {
    // Kernel and userspace race to the first signal; whoever wins, it is sent once.
    let name = unique_name("mme-k1");
    let mut target = Target::spawn(&name);
    let mut monitor = start(&ebpf_args(&["--kernel-signal", &name]));
    for crossing in 1..=5 {
        target.grow(48);
        assert!(
            target.wait_signals(USR1, crossing),
            "log:\n{}",
            monitor.log_text()
        );
        target.madvise(48);
        monitor.expect_count(&[r#"event="recovered""#], crossing);
    }
    assert_eq!(target.signals(), [USR1; 5]);
    assert_eq!(monitor.count(&["over the limit"]), 5);
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn nothing_is_left_in_the_kernel_after_exit_or_kill() {
    // bpffs mounted, so a pin would be possible and seen (a host may pin things of its own).
    let pinned_before = pinned();
    for how in [libc::SIGTERM, libc::SIGINT, libc::SIGKILL] {
        let monitor = start(&ebpf_args(&[&unique_name("mme-lb")]));
        let held = bpf_objects_of(monitor.pid());
        let kinds = |kind: &str| held.iter().filter(|(k, _)| k == kind).count();
        // Links only where the kernel makes tracepoint attachments links (5.15 on; before,
        // they are perf events, which go with the process's descriptors all the same).
        assert!(
            kinds("prog_id") >= 5 && kinds("link_id") >= 1 && kinds("map_id") >= 5,
            "{held:?}"
        );
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(monitor.pid(), how) };
        let mut monitor = monitor;
        let status = monitor.wait();
        if how != libc::SIGKILL {
            assert!(status.success(), "clean exit on signal {how}");
        }
        let deadline = std::time::Instant::now() + patience();
        let remaining = loop {
            let remaining = still_loaded(&held);
            if remaining.is_empty() || std::time::Instant::now() > deadline {
                break remaining;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(
            remaining.is_empty(),
            "left behind after signal {how}: {remaining:?}"
        );
    }
    assert_eq!(pinned(), pinned_before, "nothing pinned under /sys/fs/bpf");
}

/// What is pinned in bpffs at /sys/fs/bpf (mounted there first if it is not).
fn pinned() -> Vec<std::ffi::OsString> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounted = mountinfo
        .lines()
        .any(|line| line.contains(" /sys/fs/bpf ") && line.contains(" - bpf "));
    if !mounted {
        let status = Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status()
            .expect("mount");
        assert!(status.success(), "mount bpffs at /sys/fs/bpf");
    }
    let mut names: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    names.sort();
    names
}

/// Which of `objects` the kernel still has.
fn still_loaded(objects: &[(String, u32)]) -> Vec<(String, u32)> {
    let programs: Vec<u32> = aya::programs::loaded_programs()
        .flatten()
        .map(|p| p.id())
        .collect();
    let links: Vec<u32> = aya::programs::loaded_links()
        .flatten()
        .map(|l| l.id())
        .collect();
    let maps: Vec<u32> = aya::maps::loaded_maps().flatten().map(|m| m.id()).collect();
    objects
        .iter()
        .filter(|(kind, id)| match kind.as_str() {
            "prog_id" => programs.contains(id),
            "link_id" => links.contains(id),
            _ => maps.contains(id),
        })
        .cloned()
        .collect()
}

/// Runs `command` as `nobody`, without any capability.
fn as_nobody(command: &mut Command) {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    *command = {
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        wrapped
    };
}

#[test]
fn unprivileged_falls_back_to_polling_and_still_signals() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let name = unique_name("mme-fb");
    // The target belongs to the same unprivileged user as the monitor.
    let mut target = Target::spawn_with(&name, |command| {
        if root {
            command.uid(65534).gid(65534);
        }
    });
    let args = ["-m", "32", "-i", "100ms", "-s", "USR1", &name];
    let mut monitor = Monitor::start_with(&args, |command| {
        if root {
            as_nobody(command);
        }
    });
    let start = monitor.expect_log(&["watching", "mode=poll"]);
    assert!(
        start.contains("eBPF unavailable: not privileged") && start.contains("CAP_BPF"),
        "says why, on the start line: {start}"
    );
    let log = monitor.log_text();
    assert_eq!(
        log.lines().next(),
        Some(start.as_str()),
        "the first line: {log}"
    );
    target.grow(48);
    assert!(target.wait_signal(USR1), "log:\n{}", monitor.log_text());
    assert_eq!(monitor.count(&["eBPF unavailable"]), 1, "said once");
    assert!(monitor.stop().success());

    // Asked for eBPF mode outright, it fails with the reason and exit status 1.
    let mut command = Command::new(memory_monitor_tests::bin("memory-monitor"));
    command.args(["--mode", "ebpf", "-m", "32", &name]);
    if root {
        as_nobody(&mut command);
    }
    let output = command.output().expect("run");
    memory_monitor_tests::the_one_error(&output, &["eBPF mode is unavailable: not privileged"]);
}

/// The system call that sleeps with no timeout at all, by number: `epoll_wait`'s (where the
/// architecture has it) and `epoll_pwait`'s timeout is its fourth argument, -1 for none;
/// `epoll_pwait2`'s and `futex`'s is a pointer there, null for none.
fn sleeps_for_ever(syscall: &str) -> bool {
    let mut fields = syscall.split_whitespace();
    let Some(Ok(number)) = fields.next().map(str::parse::<i64>) else {
        return false;
    };
    let Some(Ok(timeout)) = fields
        .nth(3)
        .map(|arg| u64::from_str_radix(arg.trim_start_matches("0x"), 16))
    else {
        return false;
    };
    #[cfg(target_arch = "x86_64")]
    let epoll_wait = number == libc::SYS_epoll_wait;
    #[cfg(not(target_arch = "x86_64"))]
    let epoll_wait = false;
    if epoll_wait || number == libc::SYS_epoll_pwait {
        timeout as i32 == -1
    } else {
        (number == libc::SYS_epoll_pwait2 || number == libc::SYS_futex) && timeout == 0
    }
}

/// What each thread of `pid` is doing (`/proc/PID/task/TID/syscall`): the system call it is
/// blocked in and its arguments, or `running`.
fn threads_syscalls(pid: i32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    tasks
        .flatten()
        .map(|task| std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default())
        .map(|line| line.trim().to_string())
        .collect()
}

/// The timers (`timerfd`s) `pid` holds, as their `fdinfo` says: `it_value: (0, 0)` when
/// disarmed.
fn timers_of(pid: i32) -> Vec<String> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds");
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().contains("timerfd"))
        })
        .filter_map(|fd| {
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().display())).ok()
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn an_idle_monitor_never_wakes_up() {
    let name = unique_name("mme-id");
    let mut target = Target::spawn(&name);
    target.grow(8);
    let mut monitor = start(&ebpf_args(&[&name]));
    monitor.expect_log(&["checked", "watched=1"]);
    monitor.expect_log(&["start-up done"]);
    // Asleep: every thread blocked in a system call.
    let pid = monitor.pid();
    assert!(
        wait_until(|| threads_syscalls(pid)
            .iter()
            .all(|s| !s.is_empty() && s != "running")),
        "the monitor never went to sleep: {:?}",
        threads_syscalls(pid)
    );
    // And nothing to wake it but an event: no thread sleeps with a timeout, and no timer of
    // its own is armed. So, however long it stays idle, it never runs (a wake-up scheduled
    // for later, however much later, would be one of these).
    let syscalls = threads_syscalls(pid);
    assert!(
        syscalls.iter().all(|s| sleeps_for_ever(s)),
        "a thread sleeps with a timeout: {syscalls:?}"
    );
    let timers = timers_of(pid);
    assert!(
        timers.iter().all(|t| t.contains("it_value: (0, 0)")),
        "an armed timer: {timers:?}"
    );
    assert!(monitor.stop().success());
}
