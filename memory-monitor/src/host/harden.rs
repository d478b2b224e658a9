//! Keeping the monitor working when the machine is in trouble, and no more privileged than it
//! has to be once it runs.
//!
//! - Its memory is locked (`mlockall`) once start-up is over: under memory pressure the kernel
//!   reclaims and swaps everything else first, and the monitor's next reaction never waits on a
//!   page fault to disk.
//! - Its OOM score is lowered: it must outlive the processes it protects from the OOM killer.
//! - After the BPF programs are loaded and attached, it keeps only the capabilities that
//!   signalling and reading `/proc` need, in every set (the bounding set too, where it may),
//!   and sets `no_new_privs`, so neither it nor the hooks it runs can take the others back.
//!   What loading and attaching took goes: `CAP_BPF`, `CAP_PERFMON`, and `CAP_SYS_ADMIN`,
//!   which `perf_event_open` (the classic tracepoints' attach) needs where
//!   `kernel.perf_event_paranoid` is 3, the default of Debian's kernels. Nothing after
//!   start-up attaches a program: a reload rewrites the rules map, which the loaded programs
//!   read, and profiles read the maps the programs already fill.

use std::io;

use rustix::thread::{CapabilitySet, CapabilitySets};

/// Default for `--oom-score-adj`: the OOM killer takes the monitor last, yet can still take a
/// monitor that has itself gone wrong (-1000 would make it unkillable).
pub(crate) const DEFAULT_OOM_SCORE_ADJ: i32 = -900;

/// What the monitor keeps after start-up: signalling other users' processes (`KILL`), reading
/// their `/proc` files and memory maps for profiles (`SYS_PTRACE`), reading `/proc` and cgroup
/// files whatever their modes (`DAC_READ_SEARCH`), and keeping its memory locked as it grows
/// (`IPC_LOCK`: without it, a locked process whose memlock limit cannot be lifted would fail
/// to allocate past the limit).
pub(crate) fn kept_capabilities() -> CapabilitySet {
    CapabilitySet::KILL
        | CapabilitySet::SYS_PTRACE
        | CapabilitySet::DAC_READ_SEARCH
        | CapabilitySet::IPC_LOCK
}

/// Drops every capability but [`kept_capabilities`] and `also` from the calling thread's effective,
/// permitted and inheritable sets, its ambient set and (when it may) its bounding set. Threads
/// started afterwards inherit the result, so call it before starting any. Returns whether the
/// bounding set now holds no more than what is kept: reducing it needs `CAP_SETPCAP`, which a
/// service manager may withhold (then [`forbid_new_privileges`] is what keeps an exec from
/// gaining the rest back).
///
/// `CAP_SETPCAP`, when held, stays in the permitted set only, never effective: it is what lets
/// a command the monitor runs empty its own bounding set ([`drop_every_capability`]) before
/// its exec. Held that way it gives the monitor nothing: under `no_new_privs` no exec gains
/// what the permitted set lacks, and what else it allows only takes capabilities away.
pub(crate) fn drop_capabilities(also: CapabilitySet) -> io::Result<bool> {
    use rustix::thread::{capability_is_in_bounding_set, remove_capability_from_bounding_set};
    let current = rustix::thread::capabilities(None)?;
    let keep = (kept_capabilities() | also) & current.permitted;
    // The bounding set first: removing from it needs CAP_SETPCAP, about to be dropped. A
    // capability this kernel does not know is in no set.
    let mut bounded = true;
    for capability in CapabilitySet::all().iter().filter(|c| !keep.contains(*c)) {
        if capability_is_in_bounding_set(capability).unwrap_or(false) {
            bounded &= remove_capability_from_bounding_set(capability).is_ok();
        }
    }
    let _ = rustix::thread::clear_ambient_capability_set();
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep | (current.permitted & CapabilitySet::SETPCAP),
            inheritable: CapabilitySet::empty(),
        },
    )?;
    Ok(bounded)
}

/// Empties every capability set of the calling process, the bounding set too where
/// `CAP_SETPCAP` is permitted: for a command the monitor runs, between fork and exec, so that
/// it holds nothing of the monitor's (`no_new_privs` then keeps its exec from gaining
/// anything back). System calls only; nothing allocated.
pub(crate) fn drop_every_capability() -> io::Result<()> {
    use rustix::thread::{clear_ambient_capability_set, remove_capability_from_bounding_set};
    let only = |set: CapabilitySet| CapabilitySets {
        effective: set,
        permitted: set,
        inheritable: CapabilitySet::empty(),
    };
    if rustix::thread::set_capabilities(None, only(CapabilitySet::SETPCAP)).is_ok() {
        for capability in CapabilitySet::all().iter() {
            let _ = remove_capability_from_bounding_set(capability);
        }
    }
    let _ = clear_ambient_capability_set();
    rustix::thread::set_capabilities(None, only(CapabilitySet::empty())).map_err(Into::into)
}

/// Sets `no_new_privs`: from now on no exec by the monitor or by anything it starts (hooks,
/// `cmd:` writers) can gain privileges — setuid and setgid bits and file capabilities are
/// ignored, and a root process's exec gets no capability it does not already hold — whatever
/// the bounding set still holds. Needs no privilege; inherited, and irreversible. Per thread,
/// like capabilities: call it before starting any.
pub(crate) fn forbid_new_privileges() -> io::Result<()> {
    rustix::thread::set_no_new_privs(true).map_err(Into::into)
}

/// Lets the monitor lock its memory whatever it grows to (kernels charge locked memory to
/// RLIMIT_MEMLOCK); false when the limit cannot be lifted (unprivileged).
pub(crate) fn lift_memlock_limit() -> bool {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // Remembered before raising: the commands the monitor runs get the original.
    crate::host::rlimits::at_start();
    let unlimited = Rlimit {
        current: None,
        maximum: None,
    };
    setrlimit(Resource::Memlock, unlimited).is_ok()
        || getrlimit(Resource::Memlock).current.is_none()
}

/// Whether memory can be locked without ever making an allocation fail: the memlock limit is
/// lifted, or the process may lock past it (`CAP_IPC_LOCK`).
pub(crate) fn can_lock_memory() -> bool {
    let unlimited = rustix::process::getrlimit(rustix::process::Resource::Memlock)
        .current
        .is_none();
    unlimited
        || rustix::thread::capabilities(None)
            .is_ok_and(|sets| sets.effective.contains(CapabilitySet::IPC_LOCK))
}

/// Locks the pages the monitor has touched, and those it touches later, in memory. Pages are
/// locked as they are faulted in (`MCL_ONFAULT`): reserved but unused memory (thread stacks,
/// buffers) stays unused.
pub(crate) fn lock_memory() -> io::Result<()> {
    use rustix::mm::{MlockAllFlags, mlockall};
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .map_err(Into::into)
}

/// Says why the OOM score adjustment could not be set to `asked` (`error`), naming what is
/// missing and what it costs: lowering it needs `CAP_SYS_RESOURCE`, which a root in a
/// container often lacks.
pub(crate) fn oom_score_refused(asked: i32, error: &io::Error) -> String {
    let now = std::fs::read_to_string("/proc/self/oom_score_adj")
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let has_resource = rustix::thread::capabilities(None)
        .is_ok_and(|sets| sets.effective.contains(CapabilitySet::SYS_RESOURCE));
    let why = match has_resource {
        false => "lowering it needs CAP_SYS_RESOURCE, which this process lacks".to_string(),
        true => error.to_string(),
    };
    format!(
        "OOM score adjustment left at {now}, not {asked}: {why}; under memory pressure the OOM killer may take the monitor as soon as the processes it watches (grant CAP_SYS_RESOURCE, or set OOMScoreAdjust= in the unit)"
    )
}

/// Sets this process's OOM score adjustment (-1000 to 1000).
pub(crate) fn set_oom_score_adj(adj: i32) -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", adj.to_string())
}
