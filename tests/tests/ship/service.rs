//! Running as a service: the systemd units pass `systemd-analyze verify`, and the monitor
//! speaks systemd's notification protocol (readiness, watchdog, stopping).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use memory_monitor_tests::{Monitor, bin, unique_name};

/// `systemd-analyze verify` on `unit` (a copy, with ExecStart pointing at the built binary,
/// which verify requires to exist): it must pass without a single complaint.
fn verify(unit: &Path, name: &str) {
    let dir = std::env::temp_dir().join(format!("mm-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/memory-monitor "),
        "{text}"
    );
    let binary = bin("memory-monitor").display().to_string();
    let copy = dir.join(name);
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/memory-monitor", &binary),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian's systemd)");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "{name}: {complaints}"
    );
}

#[test]
fn the_service_units_pass_systemd_analyze_verify() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    verify(
        &packaging.join("memory-monitor.service"),
        "memory-monitor.service",
    );
    verify(
        &packaging.join("memory-monitor@.service"),
        "memory-monitor@example.service",
    );
}

/// The value of `key=` in a unit's text.
pub(crate) fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn a_bad_command_line_does_not_restart_and_both_units_bound_the_same_capabilities() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let units = ["memory-monitor.service", "memory-monitor@.service"]
        .map(|name| std::fs::read_to_string(packaging.join(name)).unwrap());
    // The status systemd must not restart on is the one a bad command line exits with.
    let status = Command::new(bin("memory-monitor"))
        .args(["--max-memory", "5X", "some-name"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    for unit in &units {
        assert_eq!(
            setting(unit, "RestartPreventExitStatus"),
            Some("2"),
            "{unit}"
        );
    }
    let bounding = units
        .each_ref()
        .map(|unit| setting(unit, "CapabilityBoundingSet").expect("a bounding set"));
    assert_eq!(bounding[0], bounding[1]);
    assert!(bounding[0].split(' ').any(|cap| cap == "CAP_SETPCAP"));
}

/// Receives the next notification, or `None` after a bounded wait.
fn next(socket: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 512];
    let len = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

#[test]
fn under_systemd_it_says_ready_pings_the_watchdog_and_says_stopping_in_poll_mode() {
    under_systemd_it_says_ready_pings_the_watchdog_and_says_stopping("poll");
}

#[test]
#[ignore = "needs root"]
fn under_systemd_it_says_ready_pings_the_watchdog_and_says_stopping_in_ebpf_mode() {
    under_systemd_it_says_ready_pings_the_watchdog_and_says_stopping("ebpf");
}

fn under_systemd_it_says_ready_pings_the_watchdog_and_says_stopping(mode: &str) {
    let path = std::env::temp_dir().join(format!("mm-notify-{}-{mode}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(memory_monitor_tests::patience()))
        .unwrap();
    let name = unique_name("mms-svc");
    let mut monitor = Monitor::start_with(&["--mode", mode, "-v", "-m", "1G", &name], |command| {
        command
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "200000");
    });
    // READY=1 is sent just before start-up's end is logged: wait for the monitor to get
    // there, however long a busy machine makes start-up take.
    monitor.expect_log(&["start-up done"]);
    let ready = next(&socket).expect("no READY=1");
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=watching 0 processes ({mode} mode)")
    );
    for _ in 0..3 {
        assert_eq!(next(&socket).as_deref(), Some("WATCHDOG=1"), "{mode}");
    }
    assert!(monitor.stop().success());
    // Whatever came after (more pings), up to the last word.
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let rest: Vec<String> = std::iter::from_fn(|| next(&socket)).collect();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("STOPPING=1"),
        "{mode}: {rest:?}"
    );
    std::fs::remove_file(&path).unwrap();
}

/// This machine's `CLOCK_MONOTONIC`, in microseconds (systemd's `MONOTONIC_USEC`).
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[test]
fn a_reload_says_reloading_then_ready_again_even_when_the_file_is_bad_in_poll_mode() {
    a_reload_says_reloading_then_ready_again_even_when_the_file_is_bad("poll");
}

#[test]
#[ignore = "needs root"]
fn a_reload_says_reloading_then_ready_again_even_when_the_file_is_bad_in_ebpf_mode() {
    a_reload_says_reloading_then_ready_again_even_when_the_file_is_bad("ebpf");
}

fn a_reload_says_reloading_then_ready_again_even_when_the_file_is_bad(mode: &str) {
    let path = std::env::temp_dir().join(format!("mm-reload-{}-{mode}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(memory_monitor_tests::patience()))
        .unwrap();
    let rules = std::env::temp_dir().join(format!("{}.toml", unique_name("mms-rl")));
    let good = format!(
        "[[rule]]\nname = \"app\"\nprefix = \"{}\"\nmax-memory = \"1G\"\n",
        unique_name("mms-app")
    );
    std::fs::write(&rules, &good).unwrap();
    let config = rules.display().to_string();
    // No watchdog: nothing but the notifications under test.
    let mut monitor =
        Monitor::start_with(&["--mode", mode, "-v", "--config", &config], |command| {
            command.env("NOTIFY_SOCKET", &path);
        });
    // Sent just before start-up's end is logged (see above).
    monitor.expect_log(&["start-up done"]);
    let ready = format!("READY=1\nSTATUS=watching 0 processes ({mode} mode)");
    assert_eq!(next(&socket).as_deref(), Some(ready.as_str()), "{mode}");

    let files = [
        good.as_str(),
        "[[rule]]\nname = \"app\"\nmax-memory = \"1G\"\n",
    ];
    for (reloads, file) in (1..).zip(files) {
        std::fs::write(&rules, file).unwrap();
        let before = monotonic_usec();
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
        // RELOADING=1 is sent before the reload, READY=1 right after its line is logged.
        monitor.expect_count(&[r#"event="reload"#], reloads);
        let reloading = next(&socket).expect("no RELOADING=1");
        let after = monotonic_usec();
        let usec: u64 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{mode}: {reloading:?}"))
            .parse()
            .expect("microseconds");
        // The same clock as ours, read between the signal and its notification.
        assert!((before..=after).contains(&usec), "{before} {usec} {after}");
        // Ready again, whether the file was good or not.
        assert_eq!(next(&socket).as_deref(), Some(ready.as_str()), "{mode}");
    }
    assert!(monitor.stop().success());
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&rules).unwrap();
}
