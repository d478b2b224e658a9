//! PID reuse, staged in a PID namespace of its own: run as its first process
//! (`unshare --pid --fork --mount-proc mm-pidns`), where `ns_last_pid` can hand a chosen PID to
//! the next process.
//!
//! A watched process over its limit (signalled again every cycle) exits while the monitor is
//! stopped, and its PID goes to a newcomer with another name, over the limit too. The monitor
//! then resumes holding a record for that PID: it must never signal the newcomer. Prints
//! `newcomer not signalled` and exits 0 when all went as it should.
//!
//! `mm-pidns` watches the process by name; `mm-pidns pinned` by PID (`--pid`), where the PID
//! itself is what selects it, so only the process's identity can tell the newcomer apart.

use memory_monitor_tests::{Monitor, Target, unique_name};

fn main() {
    assert_eq!(
        std::process::id(),
        1,
        "run as the first process of a new PID namespace: unshare --pid --fork --mount-proc mm-pidns"
    );
    let pinned = std::env::args().nth(1).as_deref() == Some("pinned");
    let name = unique_name("mmp-w");
    let mut watched = Target::spawn(&name);
    let pid_arg = watched.pid().to_string();
    let mut args = vec![
        "--mode", "poll", "-i", "200ms", "-v", "-m", "32M", "-s", "USR1", "--repeat", "200ms",
    ];
    if pinned {
        // A name nothing has keeps the monitor running once the pinned process is gone.
        args.extend(["--pid", &pid_arg, "mmp-nothing"]);
    } else {
        args.push(&name);
    }
    let mut monitor = Monitor::start(&args);
    watched.grow(48);
    assert!(
        watched.wait_signals(libc::SIGUSR1, 2),
        "repeats: {}",
        monitor.log_text()
    );

    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGSTOP) };
    let pid = watched.pid();
    watched.exit();
    let newcomer = loop {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid (needs CAP_SYS_ADMIN)");
        let candidate = Target::spawn("mmp-other");
        if candidate.pid() == pid {
            break candidate;
        }
        // Something else took the PID first (a thread): try again.
    };
    let mut newcomer = newcomer;
    newcomer.grow(48);
    // SAFETY: as above.
    unsafe { libc::kill(monitor.pid(), libc::SIGCONT) };
    // Cycles after the PID changed hands: each would have repeated the signal.
    monitor.expect_more("checked", 5);
    let signals = newcomer.signals();
    assert!(
        signals.is_empty(),
        "newcomer {pid} got {signals:?}: {}",
        monitor.log_text()
    );
    let log = monitor.log_text();
    assert!(
        !log.lines()
            .any(|line| line.contains(&format!("pid={pid}")) && line.contains("mmp-other")),
        "{log}"
    );
    println!("newcomer not signalled (pid {pid} reused)");
}
