//! The resource limits the monitor started with. It raises two for itself (locked memory in
//! [`crate::host::harden`], open files in [`crate::footprint`]); the commands it runs get the
//! originals back, so a hook neither locks unbounded memory nor inherits the monitor's
//! descriptor budget.

use std::sync::OnceLock;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// `RLIMIT_MEMLOCK` and `RLIMIT_NOFILE` as they were before the monitor raised either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtStart {
    memlock: Rlimit,
    nofile: Rlimit,
}

static AT_START: OnceLock<AtStart> = OnceLock::new();

/// The limits at start: read on the first call, so whatever raises one calls this first.
pub(crate) fn at_start() -> AtStart {
    *AT_START.get_or_init(|| AtStart {
        memlock: getrlimit(Resource::Memlock),
        nofile: getrlimit(Resource::Nofile),
    })
}

impl AtStart {
    /// Puts these limits back in force. Two system calls and nothing else (no allocation, no
    /// lock), so a child may call it between fork and exec. Lowering a limit needs no
    /// privilege, and the monitor only ever raises them.
    pub(crate) fn restore(&self) -> rustix::io::Result<()> {
        setrlimit(Resource::Memlock, self.memlock)?;
        setrlimit(Resource::Nofile, self.nofile)
    }
}
