//! Rules that act on memory pressure (`--on-pressure`) or on a cgroup throttled at its
//! `memory.high` (`--on-high`), heard from the kernel, not polled: a hog reclaiming page cache
//! in a small memory cgroup stalls on memory, which the host's pressure
//! (`/proc/pressure/memory`) shows, and so does its cgroup v2's own (`memory.pressure`); the
//! rule's trigger fires, the episode is said once, and with `signal-largest` the largest
//! process the rule watches (a target of the test's own, so that nothing else can be
//! signalled) gets the rule's signal. `memory.high` needs the memory controller on cgroup v2:
//! the kernel-matrix guests (this project's machine has it on v1). With `signal-fastest` the
//! process that grew since the monitor last read it is signalled instead, and neither ever
//! signals the monitor's parent, even one it watches.

use memory_monitor_tests::cgroup::{Cgroup, memory_hierarchy, spawn_inside, v2_mount};
use std::path::Path;

use memory_monitor_tests::{Monitor, RulesFile, Target, bin, unique_name, wait_until};

/// The hog's cgroup: small, so that its page cache is reclaimed all the time.
const LIMIT_MIB: u64 = 48;

/// Page cache the hog writes at a time, each round reclaiming about as much.
const CACHE_MIB: usize = 96;

/// Rounds of it at most before the trigger must have fired.
const ROUNDS: usize = 40;

/// The monitor in `mode`, with `rest` and a rule that signals (SIGUSR1) the largest process
/// it watches when its trigger fires; once it has started.
fn start_monitor(mode: &str, rest: &[&str]) -> Monitor {
    let mut monitor = Monitor::start(&monitor_args(mode, "signal-largest", rest));
    monitor.expect_log(&["start-up done"]);
    monitor
}

/// The monitor's arguments: `mode`, a rule that signals (SIGUSR1) the process its `action`
/// picks when its trigger fires, and `rest`.
fn monitor_args<'a>(mode: &'a str, action: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--mode",
        mode,
        "-v",
        "-m",
        "1G",
        "-s",
        "USR1",
        "--pressure-action",
        action,
    ];
    args.extend_from_slice(rest);
    args
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

/// A process SIGKILLed when dropped, however the test ends: a monitor the test did not start
/// itself (its PID is not reused while it is a zombie of the test's target).
struct Killed(i32);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// A cgroup (v2) of a test's own whose pressure (`memory.pressure`) only the test's hog makes:
/// a busy host's own pressure, which may fire a host-wide trigger at any moment (before the
/// test has set the scene), does not fire a trigger on it. The test's targets go in one cgroup
/// below it, the hog in another, where it reclaims within its own `memory.high` where the
/// memory controller is v2 (else in a small v1 memory cgroup too).
struct Scope {
    /// Its path, as a rule names it.
    path: String,
    targets: Cgroup,
    hog: Cgroup,
    v1: Option<Cgroup>,
    /// Removed last (fields drop in order), once the cgroups below it are.
    _scope: Cgroup,
}

impl Scope {
    /// A new one named after `label`; `None`, said, where there is no PSI or no cgroup v2.
    fn new(label: &str) -> Option<Scope> {
        let (Some(v2), true) = (v2_mount(), Path::new("/proc/pressure/memory").exists()) else {
            eprintln!("no PSI or no cgroup v2 here: no cgroup pressure to try");
            return None;
        };
        let scope = Cgroup::create(v2, &unique_name(label));
        let (root, limit_file) = memory_hierarchy().expect("a memory controller");
        let v1 = match limit_file {
            "memory.max" => {
                scope.set("cgroup.subtree_control", "+memory");
                None
            }
            _ => Some(Cgroup::create(&root, &unique_name(label))),
        };
        let targets = Cgroup::create(scope.dir(), "targets");
        let hog = Cgroup::create(scope.dir(), "hog");
        // On v2 held at memory.high rather than memory.max: throttled into reclaim, which is
        // pressure, and never OOM-killed when writeback lags (as it may in a slow guest).
        let limit = (LIMIT_MIB << 20).to_string();
        match &v1 {
            Some(v1) => v1.set(limit_file, &limit),
            None => hog.set("memory.high", &limit),
        }
        Some(Scope {
            path: scope.path(),
            targets,
            hog,
            v1,
            _scope: scope,
        })
    }

    /// The monitor's arguments in `mode`: a rule watching `name` in it, acting (`action`) on
    /// its pressure, a signal again `repeat` after the last while an episode lasts, and hourly
    /// looks (in poll mode) that leave the processes' readings to the firings.
    fn monitor_args<'a>(
        &'a self,
        mode: &'a str,
        action: [&'a str; 2],
        name: &'a str,
    ) -> Vec<&'a str> {
        let [action, repeat] = action;
        let rest = [
            "-i",
            "1h",
            "--repeat",
            repeat,
            "--cgroup",
            &self.path,
            "--on-pressure",
            "some:5ms/2s",
            name,
        ];
        monitor_args(mode, action, &rest)
    }

    /// A target named `name` grown by `mib` MiB, then moved in: its growth, which may stall
    /// on a busy host, was not in the cgroup's pressure.
    fn target(&self, name: &str, mib: usize) -> Target {
        let mut target = Target::spawn(name);
        target.grow(mib);
        self.targets.add(target.pid());
        target
    }

    /// A hog reclaiming in it.
    fn hog(&self) -> Target {
        let hog = Target::spawn(&unique_name("mmpscope-hog"));
        self.hog.add(hog.pid());
        if let Some(v1) = &self.v1 {
            v1.add(hog.pid());
        }
        hog
    }
}

/// Runs `test` in poll mode, then in eBPF mode, each with a [`Scope`] named after `label`
/// (removed after it); nothing where there is none to be had.
fn in_each_mode(label: &str, test: impl Fn(&str, &Scope)) {
    for mode in ["poll", "ebpf"] {
        let Some(scope) = Scope::new(label) else {
            return;
        };
        test(mode, &scope);
    }
}

/// `signal-fastest`: of the two processes the rule watches, the larger stays as it is and the
/// smaller grows a MiB with each round of the hog's reclaim (poll mode looks only hourly here,
/// eBPF mode reads them again only as processes come and go; both at each signal). Under
/// their cgroup's pressure, signalled each second while the episode lasts, the grower is
/// signalled with its growth, and the largest only when nothing grew since the last signal (a
/// firing before the grower's first growth, or two within one slow round: a tie, which goes to
/// the larger).
#[test]
#[ignore = "needs root"]
fn the_fastest_growing_is_signalled_not_the_largest() {
    in_each_mode("mmpsf-cg", |mode, scope| {
        let name = unique_name("mmpsf-t");
        // The largest however many rounds the grower grows.
        let largest = scope.target(&name, 4 + ROUNDS + 16);
        let mut grower = scope.target(&name, 4);
        let args = scope.monitor_args(mode, ["signal-fastest", "1s"], &name);
        let mut monitor = Monitor::start(&args);
        monitor.expect_log(&["start-up done"]);
        let mut hog = scope.hog();
        let named = ["event=\"pressure\"", &format!("pid={}", grower.pid())];
        for _ in 0..ROUNDS {
            grower.grow(1);
            hog.cache(CACHE_MIB);
            if monitor.count(&named) > 0 {
                break;
            }
        }
        let line = monitor.expect_log(&named);
        // Stopped before the log is read whole: every signal it sent is in it.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(monitor.pid(), libc::SIGTERM) };
        assert!(monitor.wait().success());
        drop(hog);
        assert!(line.contains("action=\"signal-fastest\""), "{mode}: {line}");
        assert!(!line.contains("growth_bytes_per_s=0 "), "{mode}: {line}");
        assert!(grower.signals().contains(&libc::SIGUSR1), "{mode}: {line}");
        assert!(grower.rss() < largest.rss(), "{mode}: {line}");
        let text = monitor.log_text();
        let largest = format!("pid={} ", largest.pid());
        for line in text.lines().filter(|l| l.contains(&largest)) {
            assert!(
                line.contains("growth_bytes_per_s=0 "),
                "{mode}: {line}\n{text}"
            );
        }
    });
}

/// The monitor's parent is never signalled, even when the monitor watches it: started by a
/// shell that waits for its start-up and exits, the monitor is then re-parented to the
/// shell's parent, a watched process (a child subreaper) far larger than the other one the
/// rule watches. Under their cgroup's pressure `signal-largest` signals the other, each
/// second while the episode lasts, and never the parent from then on. (The shell and the
/// monitor leave the cgroup first: their own start-up may stall there on a busy host, and a
/// signal before the re-parenting may go to the one that is not yet the parent.)
#[test]
#[ignore = "needs root"]
fn the_monitors_parent_is_never_signalled_though_it_is_the_largest() {
    in_each_mode("mmpsx-cg", |mode, scope| {
        let leave = v2_mount().unwrap().join("cgroup.procs");
        let name = unique_name("mmpsx-t");
        let mut other = scope.target(&name, 8);
        let mut parent = scope.target(&name, 64);
        let dir = std::env::temp_dir();
        let log_path = dir.join(format!("{name}.log"));
        let pid_path = dir.join(format!("{name}.pid"));
        let args = scope
            .monitor_args(mode, ["signal-largest", "1s"], &name)
            .join(" ");
        let (log, pid) = (log_path.display(), pid_path.display());
        parent.adopt(&format!(
            "echo 0 >{}; {} {args} 2>{log} & echo $! >{pid}; until grep -q 'start-up done' {log}; do sleep 0.05; done",
            leave.display(),
            bin("memory-monitor").display()
        ));
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let monitor =
            || -> Option<i32> { std::fs::read_to_string(&pid_path).ok()?.trim().parse().ok() };
        let parent_of = |pid: i32| -> Option<i32> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
        };
        assert!(
            wait_until(|| monitor().and_then(parent_of) == Some(parent.pid())),
            "{mode}: not re-parented: {}",
            log()
        );
        let _killed = Killed(monitor().expect("its PID"));
        assert!(log().contains("checked watched=2"), "{mode}: {}", log());
        let (parent_before, other_before) = (parent.signals().len(), other.signals().len());
        let picked = format!("pid={}", other.pid());
        let signalled = |log: &str| {
            log.lines()
                .filter(|l| l.contains("event=\"pressure\"") && l.contains(&picked))
                .count()
        };
        let before = signalled(&log());
        let mut hog = scope.hog();
        for _ in 0..ROUNDS {
            hog.cache(CACHE_MIB);
            if signalled(&log()) > before {
                break;
            }
        }
        assert!(
            wait_until(|| signalled(&log()) > before),
            "{mode}: {}",
            log()
        );
        // A second one, a repeat while the episode lasts, if the first was said before the
        // re-parenting was seen.
        hog.cache(CACHE_MIB);
        drop(hog);
        assert!(
            other.wait_signals(libc::SIGUSR1, other_before + 1),
            "{mode}: {}",
            log()
        );
        assert_eq!(parent.signals().len(), parent_before, "{mode}: {}", log());
        let monitor = monitor().expect("its PID");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(monitor, libc::SIGTERM) };
        assert!(
            wait_until(|| log().contains("event=\"stop\"")),
            "{mode}: {}",
            log()
        );
        let _ = std::fs::remove_file(&log_path);
        let _ = std::fs::remove_file(&pid_path);
    });
}
