//! eBPF mode's failure paths, each forced for real: a program the verifier refuses, an attach
//! that fails, a tracefs that cannot be mounted, a ring buffer that overflows. Each is one
//! clear log line; in auto mode the monitor then polls (and still signals), holding nothing in
//! the kernel; in `--mode ebpf` it exits 1 saying why.

use std::process::{Command, Stdio};

use memory_monitor_tests::scrape::{get, sample, served_at};
use memory_monitor_tests::{
    Monitor, Target, bin, bpf_objects_of, the_one_error, unique_name, usr1_over_32m,
};

/// Fault injection (see `source::ebpf::Fault`): a real failure through the real path.
const INJECT: &str = "MEMORY_MONITOR_INJECT_FAULT";

/// In auto mode the failure is said once as the reason for polling, and polling works.
fn falls_back(monitor: &mut Monitor, reason: &str, name: &str, target: &mut Target) {
    let start = monitor.expect_log(&["watching", "mode=poll"]);
    assert!(start.contains(reason), "{start}");
    assert!(
        bpf_objects_of(monitor.pid()).is_empty(),
        "nothing held in the kernel after the failure"
    );
    target.grow(48);
    assert!(
        target.wait_signal(libc::SIGUSR1),
        "{name}: {}",
        monitor.log_text()
    );
}

/// In `--mode ebpf` the same failure is exit 1 with one line saying why.
fn fails_in_ebpf_mode(fault: &str, reason: &str) {
    let output = Command::new(bin("memory-monitor"))
        .args(["--mode", "ebpf", "-m", "1G", "some-name"])
        .env(INJECT, fault)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    the_one_error(&output, &["eBPF mode is unavailable", reason]);
}

fn injected(fault: &str, reason: &str) {
    let name = unique_name("mmf-");
    let mut target = Target::spawn(&name);
    let mut monitor = Monitor::start_with(&usr1_over_32m("auto", &[&name]), |command| {
        command.env(INJECT, fault);
    });
    falls_back(&mut monitor, reason, &name, &mut target);
    assert!(monitor.stop().success());
    fails_in_ebpf_mode(fault, reason);
}

#[test]
#[ignore = "needs root"]
fn a_verifier_rejection_is_said_and_survived() {
    // The register's type is named as the kernel names it: 'scalar' now, 'inv' on 5.10.
    injected("verifier", "the verifier says: R1 invalid mem access '");
}

#[test]
#[ignore = "needs root"]
fn a_failed_attach_is_said_and_survived() {
    injected(
        "attach",
        "attaching rss_stat to kmem:no_such_tracepoint failed",
    );
}

#[test]
#[ignore = "needs root"]
fn a_tracefs_that_cannot_be_mounted_is_said_and_survived() {
    // In a mount namespace of its own, tracefs is hidden under an empty tmpfs and the monitor
    // runs without CAP_SYS_ADMIN, so it cannot mount it (it keeps CAP_BPF and CAP_PERFMON).
    let script = "mount -t tmpfs none /sys/kernel/tracing && \
                  { ! [ -d /sys/kernel/debug ] || mount -t tmpfs none /sys/kernel/debug; } && \
                  exec setpriv --bounding-set -sys_admin --inh-caps -sys_admin -- \"$@\"";
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ];
    let name = unique_name("mmf-t");
    let mut target = Target::spawn(&name);
    let mut monitor = Monitor::start_wrapped(&wrapper, &usr1_over_32m("auto", &[&name]));
    falls_back(
        &mut monitor,
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed",
        &name,
        &mut target,
    );
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn an_overflowing_ring_buffer_is_said_and_everything_rechecked() {
    let prefix = unique_name("mmf-r");
    let mut target = Target::spawn(&format!("{prefix}t"));
    let args = ["-v", "--metrics-addr", "127.0.0.1:0", &prefix];
    let mut monitor = Monitor::start_with(&usr1_over_32m("ebpf", &args), |command| {
        command.env(INJECT, "small-ring");
    });
    let address = served_at(&mut monitor);
    monitor.expect_log(&["start-up done"]);
    // While the monitor is stopped, a burst of matching processes (each an exec and an exit
    // event) overflows a one-page ring buffer; meanwhile the target goes over its limit.
    monitor.freeze();
    let link = std::env::temp_dir().join(format!("{prefix}b"));
    std::os::unix::fs::symlink("/bin/true", &link).unwrap();
    for _ in 0..300 {
        Command::new(&link).status().unwrap();
    }
    std::fs::remove_file(&link).unwrap();
    target.grow(48);
    monitor.thaw();
    let lost = monitor.expect_log(&["kernel events were lost", "re-checking every process"]);
    assert!(lost.contains("event=\"lost_events\""), "{lost}");
    // The re-check (or the target's own later events) still catches the breach.
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    // And the loss is counted where an alert would look.
    let text = get(&address, "/metrics").1;
    let lost = sample(&text, "memory_monitor_lost_kernel_events_total").unwrap_or(0.0);
    assert!(lost > 0.0, "{text}");
    assert!(monitor.stop().success());
}
