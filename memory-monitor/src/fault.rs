//! Fault injection for the tests (`MEMORY_MONITOR_INJECT_FAULT`), honoured by debug builds
//! only, which the tests run: each makes one real failure or kernel behaviour happen, through
//! the same paths as in the field.

/// A fault to inject: each proves a failure is reported clearly and survived (in auto mode,
/// by polling), or makes a path run that this kernel would not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Load a program the verifier refuses in the RSS program's place.
    Verifier,
    /// Attach the RSS program to a tracepoint that does not exist.
    Attach,
    /// A one-page ring buffer, which a burst of events overflows.
    SmallRing,
    /// Take `statm` for inexact, as on kernels whose `statm` leaves per-CPU parts out: the
    /// kernel side's exact reading then decides, where it can run.
    StatmInexact,
}

impl Fault {
    /// The fault asked for, if any.
    pub(crate) fn injected() -> Option<Fault> {
        if !cfg!(debug_assertions) {
            return None;
        }
        match std::env::var("MEMORY_MONITOR_INJECT_FAULT").ok()?.as_str() {
            "verifier" => Some(Fault::Verifier),
            "attach" => Some(Fault::Attach),
            "small-ring" => Some(Fault::SmallRing),
            "statm-inexact" => Some(Fault::StatmInexact),
            _ => None,
        }
    }
}
