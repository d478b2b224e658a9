//! The target driver's own promise, which every "not signalled" in the suite rests on: the
//! signals a target is asked for include every one sent to it before the asking.

use memory_monitor_tests::{Target, unique_name};

#[test]
fn a_signal_sent_just_before_the_asking_is_in_the_answer() {
    let mut target = Target::spawn(&unique_name("mmt-fl"));
    let child = target.fork();
    for round in 1..=20 {
        // Sent and at once asked for: its report is still on its way.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(target.pid(), libc::SIGUSR1) };
        assert_eq!(target.signals(), vec![libc::SIGUSR1; round]);
        // SAFETY: as above.
        unsafe { libc::kill(child, libc::SIGUSR2) };
        assert_eq!(target.signals_of(child), vec![libc::SIGUSR2; round]);
    }
}
