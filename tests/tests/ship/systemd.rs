//! The packaged unit run by systemd itself: `systemctl start` runs the monitor (eBPF mode)
//! under every setting of `packaging/memory-monitor.service`, and it still watches, signals and
//! profiles another user's process over its limit, logs to the journal, pings the watchdog and
//! stops cleanly, with the unit's hardening in force.
//!
//! It needs systemd as PID 1 on a machine whose `memory-monitor.service` it may replace: the
//! guest `cargo xtask vmtest --systemd` boots for it and throws away, which says so with
//! `MEMORY_MONITOR_SYSTEMD`. Anywhere else the test says it did not run.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use memory_monitor_tests::{
    Target, bin, capability_set as capabilities, status_field as field, unique_name, wait_until,
};

use crate::service::setting;

const UNIT: &str = "memory-monitor.service";

/// systemd's directory of runtime units: gone at the next boot.
const RUNTIME_UNITS: &str = "/run/systemd/system";

/// The capabilities the unit's bounding set may name, and their numbers (linux/capability.h).
const CAPABILITIES: [(&str, u32); 8] = [
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_KILL", 5),
    ("CAP_SETPCAP", 8),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

/// CAP_SYS_ADMIN (21), CAP_PERFMON (38), CAP_BPF (39): what the unit grants the monitor to
/// load and attach its programs, and what it must no longer hold once they are attached.
const START_UP_ONLY: u64 = (1 << 21) | (1 << 38) | (1 << 39);

/// Whether this test may run here: only where `MEMORY_MONITOR_SYSTEMD` says systemd is PID 1
/// on a machine booted for it, and then it must be.
fn booted_for_it() -> bool {
    if std::env::var_os("MEMORY_MONITOR_SYSTEMD").is_none() {
        eprintln!(
            "SKIPPED: the packaged unit is tested under systemd in `cargo xtask vmtest --systemd`"
        );
        return false;
    }
    let init = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert_eq!(init.trim(), "systemd", "MEMORY_MONITOR_SYSTEMD is set");
    assert!(Path::new("/run/systemd/system").is_dir());
    true
}

/// The packaged unit, as shipped.
fn packaged() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(UNIT)
        .canonicalize()
        .unwrap()
}

/// `kernel.perf_event_paranoid`: Debian's kernels, the guest's, default to 3, under which
/// `perf_event_open` (the classic tracepoints' attach) needs `CAP_SYS_ADMIN`.
fn perf_event_paranoid() -> i32 {
    let level = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").unwrap();
    level.trim().parse().unwrap()
}

/// `systemctl ARGS`, which must succeed; its output.
fn systemctl(args: &[&str]) -> String {
    let output = Command::new("systemctl").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "systemctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A property of the unit, as systemd has it now.
fn property(name: &str) -> String {
    systemctl(&["show", "--property", name, "--value", UNIT])
}

/// The journal's lines of one run of the unit (its invocation).
fn journal(invocation: &str) -> String {
    let output = Command::new("journalctl")
        .args(["--output", "cat", "--no-pager"])
        .arg(format!("_SYSTEMD_INVOCATION_ID={invocation}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The unit's `CapabilityBoundingSet`, as a mask.
fn bounding_set(unit: &str) -> u64 {
    let set = setting(unit, "CapabilityBoundingSet").expect("the unit bounds its capabilities");
    set.split_whitespace()
        .map(|name| {
            let (_, bit) = CAPABILITIES
                .iter()
                .find(|(known, _)| *known == name)
                .unwrap_or_else(|| panic!("{name}: add its number to CAPABILITIES"));
            1u64 << bit
        })
        .fold(0, |mask, cap| mask | cap)
}

/// The options of what is mounted at `point` in a `mountinfo` text: the last mount there,
/// which hides those under it.
fn mount_options(mountinfo: &str, point: &str) -> String {
    mountinfo
        .lines()
        .rfind(|line| line.split(' ').nth(4) == Some(point))
        .and_then(|line| line.split(' ').nth(5))
        .unwrap_or_else(|| panic!("nothing mounted at {point}: {mountinfo}"))
        .to_string()
}

/// The packaged unit linked in as a runtime unit, with a drop-in that runs the built binary
/// with the test's arguments (ExecStart and its arguments are all it changes); stopped and
/// removed when dropped, passed or not.
struct Installed {
    link: PathBuf,
    drop_in: PathBuf,
}

impl Installed {
    /// `settings`: further `[Service]` lines for the drop-in, one per line.
    fn new(unit: &Path, args: &str, settings: &str) -> Installed {
        systemctl(&["link", "--runtime", unit.to_str().unwrap()]);
        let drop_in = Path::new(RUNTIME_UNITS).join(format!("{UNIT}.d"));
        std::fs::create_dir_all(&drop_in).unwrap();
        std::fs::write(
            drop_in.join("test.conf"),
            format!(
                "[Service]\nExecStart=\nExecStart={} $MEMORY_MONITOR_ARGS\nEnvironment=\"MEMORY_MONITOR_ARGS={args}\"\n{settings}",
                bin("memory-monitor").display()
            ),
        )
        .unwrap();
        systemctl(&["daemon-reload"]);
        Installed {
            link: Path::new(RUNTIME_UNITS).join(UNIT),
            drop_in,
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("systemctl").args(["stop", UNIT]).status();
        let _ = std::fs::remove_dir_all(&self.drop_in);
        let _ = std::fs::remove_file(&self.link);
        let _ = Command::new("systemctl").arg("daemon-reload").status();
    }
}

#[test]
#[ignore = "needs root"]
fn the_packaged_unit_runs_the_monitor_hardened_and_it_signals_profiles_logs_and_stops() {
    if !booted_for_it() {
        return;
    }
    let packaged = packaged();
    let text = std::fs::read_to_string(&packaged).unwrap();
    let state = Path::new("/var/lib").join(setting(&text, "StateDirectory").unwrap());
    // The unit must work under the kernel's default, which is 3 on Debian's kernels.
    eprintln!("kernel.perf_event_paranoid = {}", perf_event_paranoid());
    let name = unique_name("mmu-svc");
    // Another user's process: signalling it needs CAP_KILL, profiling it CAP_SYS_PTRACE.
    let mut target = Target::spawn_with(&name, |command| {
        command.uid(65534).gid(65534);
    });
    let args = format!(
        "--mode ebpf -v -m 32M -s USR1 --repeat never --profile-dir {} {name}",
        state.display()
    );
    let _installed = Installed::new(&packaged, &args, "");
    // What systemd runs is the packaged file, with the drop-in.
    let fragment = PathBuf::from(property("FragmentPath"));
    assert_eq!(fragment.canonicalize().unwrap(), packaged);

    // Type=notify: `start` returns once the monitor said READY=1, or fails.
    let invocation = start_unit();
    assert_eq!(property("StatusText"), "watching 1 processes (ebpf mode)");
    let pid = property("MainPID");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();

    // The hardening is in force: the bounding set is within the unit's (the monitor shrinks
    // it further once started), no exec gains privileges, and a seccomp filter
    // (SystemCallFilter, MemoryDenyWriteExecute, …) is on.
    let bound = bounding_set(&text);
    assert_eq!(
        capabilities(&status, "CapBnd") & !bound,
        0,
        "CapBnd beyond the unit's {bound:#x}: {status}"
    );
    // What it needed only to attach its programs is gone from every set, the bounding set too
    // (it holds CAP_SETPCAP here); CAP_BPF stays where the kernel checks it on every map access,
    // which the monitor says.
    let dropped = match journal(&invocation).contains("keeping CAP_BPF") {
        true => START_UP_ONLY & !(1 << 39),
        false => START_UP_ONLY,
    };
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
        assert_eq!(
            capabilities(&status, set) & dropped,
            0,
            "{set} still holds what only start-up needs: {status}"
        );
    }
    assert_eq!(field(&status, "NoNewPrivs"), "1", "{status}");
    assert_eq!(field(&status, "Seccomp"), "2", "{status}");
    // ProtectSystem=strict: /var/lib, writable here, is read-only to the monitor; its state
    // directory there alone is writable.
    let ours = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let its = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(mount_options(&ours, "/var/lib").starts_with("rw"), "{ours}");
    assert!(mount_options(&its, "/var/lib").starts_with("ro"), "{its}");
    let state_point = state.to_str().unwrap();
    assert!(mount_options(&its, state_point).starts_with("rw"), "{its}");
    // PrivateTmp: a file in this /tmp is not in the monitor's.
    let mark = std::env::temp_dir().join(unique_name("mmu-tmp"));
    std::fs::write(&mark, "").unwrap();
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    assert!(root.join("tmp").is_dir());
    assert!(!root.join(mark.strip_prefix("/").unwrap()).exists());
    std::fs::remove_file(&mark).unwrap();

    // And under all of it, the kernel side reports the crossing and the monitor acts on it.
    let watchdog = property("WatchdogTimestampMonotonic");
    target.grow(48);
    assert!(
        target.wait_signal(libc::SIGUSR1),
        "{}",
        journal(&invocation)
    );
    let breach = format!("pid={}", target.pid());
    assert!(
        wait_until(|| journal(&invocation)
            .lines()
            .any(|line| line.contains("event=\"profile\"") && line.contains(&breach))),
        "{}",
        journal(&invocation)
    );
    let logged = journal(&invocation);
    assert!(
        logged
            .lines()
            .any(|line| line.contains("event=\"breach\"") && line.contains(&breach)),
        "{logged}"
    );
    // The profile and its flame graph, in the state directory.
    let profiles = std::fs::read_dir(&state).unwrap().count();
    assert_eq!(profiles, 2, "{}", state.display());
    // systemd got a watchdog ping (every 30 s, half of WatchdogSec).
    assert!(
        wait_until(|| property("WatchdogTimestampMonotonic") != watchdog),
        "no watchdog ping: {}",
        journal(&invocation)
    );

    systemctl(&["stop", UNIT]);
    assert_eq!(property("Result"), "success");
    assert_eq!(property("ExecMainStatus"), "0");
    assert!(
        journal(&invocation).contains("event=\"stop\""),
        "{}",
        journal(&invocation)
    );
}

/// The unit without `CAP_SYS_ADMIN`, on Debian's default `perf_event_paranoid=3`: the
/// tracepoints cannot be attached, so the monitor (in its default mode) polls `/proc` instead,
/// and its start line says why and how to have eBPF mode back.
#[test]
#[ignore = "needs root"]
fn without_cap_sys_admin_under_debians_default_the_unit_polls_and_says_why() {
    if !booted_for_it() {
        return;
    }
    let paranoid = perf_event_paranoid();
    assert!(
        paranoid > 2,
        "kernel.perf_event_paranoid is {paranoid}: the guest's Debian kernels default to 3, and nothing may lower it"
    );
    let name = unique_name("mmu-adm");
    let _target = Target::spawn(&name);
    // `~`: every capability but CAP_SYS_ADMIN, and-ed with the unit's own set.
    let _installed = Installed::new(
        &packaged(),
        &format!("-m 32M {name}"),
        "CapabilityBoundingSet=~CAP_SYS_ADMIN\n",
    );
    let invocation = start_unit();
    assert_eq!(property("StatusText"), "watching 1 processes (poll mode)");
    let logged = journal(&invocation);
    let said: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("kernel.perf_event_paranoid is"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {logged}");
    let start_line = said[0];
    for part in [
        "event=\"start\"",
        "mode=poll",
        "eBPF unavailable",
        &format!("kernel.perf_event_paranoid is {paranoid}"),
        "needs CAP_SYS_ADMIN",
        "set kernel.perf_event_paranoid=2",
    ] {
        assert!(start_line.contains(part), "{part}: {start_line}");
    }
    systemctl(&["stop", UNIT]);
    assert_eq!(property("Result"), "success");
}

/// `systemctl start`s the unit, which must succeed (its journal is shown if not): its
/// invocation's ID, by which its journal is read.
fn start_unit() -> String {
    let start = Command::new("systemctl")
        .args(["start", UNIT])
        .output()
        .unwrap();
    let invocation = property("InvocationID");
    assert!(
        start.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&start.stderr),
        journal(&invocation)
    );
    invocation
}
