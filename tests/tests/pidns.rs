//! PID reuse in a private PID namespace (see `src/bin/mm-pidns.rs`): a watched process's PID
//! handed to a process of another name before the monitor acts never gets the signal.

use std::process::Command;

use memory_monitor_tests::{bin, root_or_skip};

#[test]
fn a_reused_pid_is_never_signalled() {
    if !root_or_skip("a_reused_pid_is_never_signalled (unshare and ns_last_pid need root)") {
        return;
    }
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(bin("mm-pidns"))
        .output()
        .expect("unshare (util-linux)");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("newcomer not signalled"), "{said}");
}
