//! Bounded waits: every wait in the tests ends, so that a broken build fails instead of
//! hanging, and none is asserted on.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// The longest any single wait may take before the test gives up: 30 s, and three times that
/// in the emulated guests of other kernels (`cargo xtask vmtest` sets `MEMORY_MONITOR_VMTEST`),
/// which run everything many times slower. A bound so that a broken build fails instead of
/// hanging, never a timing assertion.
pub fn patience() -> Duration {
    match std::env::var_os("MEMORY_MONITOR_VMTEST") {
        Some(_) => Duration::from_secs(90),
        None => Duration::from_secs(30),
    }
}

pub(crate) fn wait_child(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience();
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Waits until `done` holds, checking every 20 ms; false if it still does not within
/// [`patience`] (a bound so that a broken build fails instead of hanging, never a timing
/// assertion).
pub fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience();
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
