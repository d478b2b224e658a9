//! Rules that act on memory pressure (`--on-pressure`) or on a cgroup throttled at its
//! `memory.high` (`--on-high`), heard from the kernel, not polled: a hog reclaiming page cache
//! in a small memory cgroup stalls on memory, which the host's pressure
//! (`/proc/pressure/memory`) shows, and so does its cgroup v2's own (`memory.pressure`); the
//! rule's trigger fires, the episode is said once, and with `signal-largest` the largest
//! process the rule watches (a target of the test's own, so that nothing else can be
//! signalled) gets the rule's signal. `memory.high` needs the memory controller on cgroup v2:
//! the kernel-matrix guests (this project's machine has it on v1).

use memory_monitor_tests::cgroup::{Cgroup, memory_hierarchy, spawn_inside, v2_mount};
use memory_monitor_tests::{Monitor, RulesFile, Target, unique_name};

/// The hog's cgroup: small, so that its page cache is reclaimed all the time.
const LIMIT_MIB: u64 = 48;

/// Page cache the hog writes at a time, each round reclaiming about as much.
const CACHE_MIB: usize = 96;

/// Rounds of it at most before the trigger must have fired.
const ROUNDS: usize = 40;

/// The monitor in `mode`, with `rest` and a rule that signals (SIGUSR1) the largest process
/// it watches when its trigger fires; once it has started.
fn start_monitor(mode: &str, rest: &[&str]) -> Monitor {
    let mut args = vec![
        "--mode",
        mode,
        "-v",
        "-m",
        "1G",
        "-s",
        "USR1",
        "--pressure-action",
        "signal-largest",
    ];
    args.extend_from_slice(rest);
    let mut monitor = Monitor::start(&args);
    monitor.expect_log(&["start-up done"]);
    monitor
}

/// A small memory cgroup for the hog, named after `label`, where the host has PSI (its
/// pressure file); `None`, said, where it has none to try.
fn hog_cgroup(label: &str) -> Option<Cgroup> {
    if !std::path::Path::new("/proc/pressure/memory").exists() {
        eprintln!("this kernel has no PSI (or it is off): nothing to try");
        return None;
    }
    let (root, limit_file) = memory_hierarchy().expect("a memory controller");
    let cgroup = Cgroup::create(&root, &unique_name(label));
    cgroup.set(limit_file, &(LIMIT_MIB << 20).to_string());
    Some(cgroup)
}

/// How many of `monitor`'s triggers were not armed so far.
fn unarmed(monitor: &mut Monitor) -> usize {
    monitor.count(&["pressure_unavailable"])
}

/// The hog reclaims page cache until `monitor` has said `wanted` more than `before` times in
/// all; the first such line.
fn press(hog: &mut Target, monitor: &mut Monitor, wanted: &[&str], before: usize) -> String {
    for _ in 0..ROUNDS {
        hog.cache(CACHE_MIB);
        if monitor.count(wanted) > before {
            break;
        }
    }
    monitor.expect_count(wanted, before + 1);
    let line = monitor.expect_log(wanted);
    println!("{line}");
    line
}

#[test]
#[ignore = "needs root"]
fn host_memory_pressure_fires_the_trigger_in_poll_mode() {
    host_memory_pressure_fires_the_trigger_and_signals_the_largest_watched("poll");
}

#[test]
#[ignore = "needs root"]
fn host_memory_pressure_fires_the_trigger_in_ebpf_mode() {
    host_memory_pressure_fires_the_trigger_and_signals_the_largest_watched("ebpf");
}

fn host_memory_pressure_fires_the_trigger_and_signals_the_largest_watched(mode: &str) {
    let Some(cgroup) = hog_cgroup("mmpsi-cg") else {
        return;
    };
    let name = unique_name("mmpsi-t");
    let mut target = Target::spawn(&name);
    target.grow(8);
    let mut monitor = start_monitor(
        mode,
        &["--repeat", "never", "--on-pressure", "some:5ms/2s", &name],
    );
    assert_eq!(unarmed(&mut monitor), 0, "{}", monitor.log_text());
    let mut hog = Target::spawn(&unique_name("mmpsi-hog"));
    cgroup.add(hog.pid());
    let pressure = ["event=\"pressure\"", "some:5ms/2s"];
    let line = press(&mut hog, &mut monitor, &pressure, 0);
    assert!(line.contains(&format!("pid={}", target.pid())), "{line}");
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    // However long the pressure lasts, one episode is one line: more of the hog's reclaim
    // says nothing more (`--repeat never`: no signal again either).
    for _ in 0..3 {
        hog.cache(CACHE_MIB);
    }
    assert_eq!(monitor.count(&pressure), 1, "{}", monitor.log_text());
    // Nor did the firing, its line and its signal allocate (`-v`'s stop line counts what
    // was allocated after start-up).
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGTERM) };
    assert!(monitor.wait().success());
    let stop = monitor.expect_log(&["event=\"stop\""]);
    assert!(stop.contains("allocations=0"), "{stop}");
    drop(hog);
}

/// A rule's cgroup (v2) has a pressure of its own (`memory.pressure`), whatever hierarchy
/// the memory controller is on. The cgroup is made after the monitor starts, which says its
/// trigger cannot be armed yet, and arms it when the cgroup appears; the hog reclaiming in it
/// (within its own `memory.max` where the controller is v2, in a small v1 memory cgroup
/// beside it on this project's machine) then fires the rule's trigger, whose line names the
/// cgroup, and the target in it is signalled.
#[test]
#[ignore = "needs root"]
fn a_cgroups_own_memory_pressure_fires_its_trigger_once_the_cgroup_is_made() {
    let Some(v2) = v2_mount() else {
        eprintln!("no cgroup v2 hierarchy here: no cgroup pressure to try");
        return;
    };
    let scope_name = unique_name("mmpscope-cg");
    let path = format!("/{scope_name}");
    let name = unique_name("mmpscope-t");
    // Signalled again while the episode lasts: it may begin before the target is watched.
    let mut monitor = start_monitor(
        "poll",
        &[
            "--repeat",
            "1s",
            "--cgroup",
            &path,
            "--on-pressure",
            "some:5ms/2s",
            &name,
        ],
    );
    assert_eq!(unarmed(&mut monitor), 1, "{}", monitor.log_text());
    let scope = Cgroup::create(v2, &scope_name);
    monitor.expect_log(&["event=\"cgroup_appeared\""]);
    let (root, limit_file) = memory_hierarchy().expect("a memory controller");
    let limited = match limit_file {
        "memory.max" => {
            scope.set(limit_file, &(LIMIT_MIB << 20).to_string());
            None
        }
        _ => {
            let v1 = Cgroup::create(&root, &unique_name("mmpscope-v1"));
            v1.set(limit_file, &(LIMIT_MIB << 20).to_string());
            Some(v1)
        }
    };
    let target = spawn_inside(&name, &scope);
    monitor.expect_log(&["checked watched=1"]);
    let mut hog = Target::spawn(&unique_name("mmpscope-hog"));
    scope.add(hog.pid());
    if let Some(v1) = &limited {
        v1.add(hog.pid());
    }
    let signalled = format!("pid={}", target.pid());
    press(
        &mut hog,
        &mut monitor,
        &["event=\"pressure\"", &path, &signalled],
        0,
    );
    assert_eq!(
        unarmed(&mut monitor),
        1,
        "armed once made: {}",
        monitor.log_text()
    );
    assert!(monitor.stop().success());
    drop(hog);
}

/// A cgroup (v2) of its own with `memory.high` under what its one process grows to: the kernel
/// throttles the process into reclaim (anonymous memory, no swap: it stays over), so the
/// cgroup's `high` count rises and its own memory pressure builds. Both triggers of a rule
/// selecting the cgroup fire, and the process, the largest there, is signalled. Needs the
/// memory controller on cgroup v2: the kernel-matrix guests (this project's machine has it on
/// v1, where a cgroup has neither `memory.high` nor its own pressure).
#[test]
#[ignore = "needs root"]
fn a_cgroup_throttled_at_its_memory_high_fires_both_triggers() {
    let (root, limit_file) = memory_hierarchy().expect("a memory controller");
    if limit_file != "memory.max" {
        eprintln!("the memory controller is on cgroup v1 here: no memory.high to try");
        return;
    }
    let cgroup = Cgroup::create(&root, &unique_name("mmhigh-cg"));
    cgroup.set("memory.high", &(32u64 << 20).to_string());
    let name = unique_name("mmhigh-t");
    let mut target = spawn_inside(&name, &cgroup);
    let path = cgroup.path();
    let mut monitor = start_monitor(
        "poll",
        &[
            "--repeat",
            "never",
            "--cgroup",
            &path,
            "--on-high",
            "--on-pressure",
            "some:5ms/2s",
            &name,
        ],
    );
    assert_eq!(unarmed(&mut monitor), 0, "{}", monitor.log_text());
    // Throttled, it may never answer: the test waits for what the monitor says instead.
    target.start_growing(64);
    let high = monitor.expect_log(&["event=\"high_throttled\"", &path]);
    println!("{high}");
    let pressure = monitor.expect_log(&["event=\"pressure\"", &path]);
    println!("{pressure}");
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    let signalled = format!("pid={}", target.pid());
    assert!(
        high.contains(&signalled) || pressure.contains(&signalled),
        "{high}\n{pressure}"
    );
    assert!(monitor.stop().success());
}

/// A reload that leaves a rule's trigger as it was keeps it (the descriptor made at start-up,
/// which a monitor that has dropped its privileges could not always make again): the host's
/// pressure still fires it after `SIGHUP`, and nothing says it unarmed. (Its episode carries
/// on too, so the rule signals again each second while it lasts: a firing after the reload
/// is said, whether the episode began before it or not.)
#[test]
#[ignore = "needs root"]
fn a_reload_keeps_the_trigger_armed() {
    let Some(cgroup) = hog_cgroup("mmpsr-cg") else {
        return;
    };
    let name = unique_name("mmpsr-t");
    let _target = Target::spawn(&name);
    let rules = RulesFile::new(
        "mmpsr-rules",
        &format!(
            "[[rule]]\nname = \"under-pressure\"\nprefix = \"{name}\"\nmax-memory = \"1G\"\non-pressure = \"some:5ms/2s\"\npressure-action = \"signal-largest\"\nsignal = \"USR1\"\nrepeat = \"1s\"\n"
        ),
    );
    let mut monitor = Monitor::start_rules("poll", rules.path(), &[]);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
    monitor.expect_log(&["event=\"reload\""]);
    let pressure = ["event=\"pressure\"", "rule=\"under-pressure\""];
    let before = monitor.count(&pressure);
    let mut hog = Target::spawn(&unique_name("mmpsr-hog"));
    cgroup.add(hog.pid());
    press(&mut hog, &mut monitor, &pressure, before);
    assert_eq!(unarmed(&mut monitor), 0, "{}", monitor.log_text());
    assert!(monitor.stop().success());
    drop(hog);
}
