//! PID reuse in a private PID namespace (see `src/bin/mm-pidns.rs`): a watched process's PID
//! handed to a process of another name before the monitor acts never gets the signal, whether
//! the process was watched by name or by PID.

use std::process::Command;

use memory_monitor_tests::bin;

/// Runs `mm-pidns` with `args` as the first process of a new PID namespace.
fn in_new_pid_namespace(args: &[&str]) {
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(bin("mm-pidns"))
        .args(args)
        .output()
        .expect("unshare (util-linux)");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("newcomer not signalled"), "{said}");
}

#[test]
#[ignore = "needs root"]
fn a_reused_pid_is_never_signalled() {
    in_new_pid_namespace(&[]);
}

#[test]
#[ignore = "needs root"]
fn a_reused_pid_of_a_pid_watched_by_number_is_never_signalled() {
    in_new_pid_namespace(&["pinned"]);
}
