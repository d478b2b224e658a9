//! Memory back at once after a SIGKILL: `process_mrelease` (Linux 5.15+) reaps a killed
//! process's memory, as the kernel's OOM reaper does, instead of waiting for its own exit to
//! free it. Under memory pressure that is the point of the kill, and a process stuck in the
//! kernel, or frozen, may take long to exit.
//!
//! Every process one kill reaches is reaped: the process over its limit and, with `--act-on`,
//! each member of its group. Each is held by a pidfd opened before its SIGKILL (a PID read
//! after may already be another process's), at most [`AT_MOST`] of them: a cgroup may hold
//! thousands of processes, and each held is a descriptor. Past them, members are killed all
//! the same and their memory comes back as they exit (`event="release_capped"` says how many).
//!
//! Freeing gigabytes takes the kernel most of a second a process, so the reaping is done on
//! one thread of its own per kill, the whole group's in turn: the loop goes on watching
//! meanwhile. A kill is no steady state: the thread's allocations, and the list, are the
//! kill's.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

use crate::system::procfs::{self, Comm, ProcRoot};
use crate::watch::process::WatchedProcess;

/// Processes held for reaping after one kill, at most.
pub(crate) const AT_MOST: usize = 256;

/// What became of the memory of a process just sent SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// `process_mrelease` reaped it: the memory is free now, not when the process has
    /// finished exiting (which a process stuck in the kernel, or frozen, may take long to do).
    Released,
    /// The process had already let go of its memory.
    Exited,
    /// This kernel has no `process_mrelease` (before 5.15): the memory comes back as the
    /// process exits.
    Unsupported,
    /// The kernel refused (`EINVAL` for a process that is not dying: one held before a
    /// `cgroup.kill` that left the cgroup first).
    Failed(Errno),
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Release::Released => f.write_str("released"),
            Release::Exited => f.write_str("process already exited"),
            Release::Unsupported => f.write_str("left to the exit (no process_mrelease)"),
            Release::Failed(errno) => write!(f, "not released: {errno}"),
        }
    }
}

/// A process held for reaping.
#[derive(Debug)]
struct Held {
    pid: i32,
    name: Comm,
    pidfd: OwnedFd,
}

/// The processes one kill is to reap, each held by a pidfd, and how many more it killed past
/// [`AT_MOST`].
#[derive(Debug, Default)]
pub(crate) struct Reaping {
    held: Vec<Held>,
    beyond: u32,
}

impl Reaping {
    /// Holds `target`, the process over its limit, sent SIGKILL, for reaping.
    pub(crate) fn hold_target(&mut self, target: &WatchedProcess) {
        let (pid, name) = (target.pid(), *target.comm());
        match target.pidfd().as_fd().try_clone_to_owned() {
            Ok(pidfd) => self.hold(pid, || name, pidfd),
            Err(error) => {
                tracing::warn!(pid, %name, "memory not reaped: no descriptor left ({error})");
            }
        }
    }

    /// Whether another process would be held, not only counted.
    pub(crate) fn has_room(&self) -> bool {
        self.held.len() < AT_MOST
    }

    /// Holds `pid`, by `pidfd`, for reaping, with the name `name` gives; past [`AT_MOST`]
    /// only counts it (and the descriptor is closed, the name not read).
    pub(crate) fn hold(&mut self, pid: i32, name: impl FnOnce() -> Comm, pidfd: OwnedFd) {
        if self.has_room() {
            let name = name();
            self.held.push(Held { pid, name, pidfd });
        } else {
            self.beyond += 1;
        }
    }

    /// Reaps the processes held, in the order they were held, on one thread of their own,
    /// logging one `event="released"` line for each; nothing when none was held.
    pub(crate) fn start(self, rule: &str) {
        if self.held.is_empty() {
            return;
        }
        let (rule, processes) = (rule.to_owned(), self.held.len());
        let spawned = std::thread::Builder::new()
            .name("mm-mrelease".into())
            .spawn(move || self.reap(&rule));
        if let Err(error) = spawned {
            tracing::warn!(processes, "memory not reaped: no thread ({error})");
        }
    }

    fn reap(self, rule: &str) {
        for Held { pid, name, pidfd } in self.held {
            let start = std::time::Instant::now();
            let memory = release(pidfd);
            let took_us = start.elapsed().as_micros() as u64;
            tracing::info!(event = "released", rule, pid, %name, %memory, took_us, "killed process's memory");
        }
        if self.beyond > 0 {
            tracing::warn!(
                event = "release_capped",
                rule,
                reaped = AT_MOST,
                left = self.beyond,
                "killed more processes than are reaped at once: the rest's memory comes back \
                 as they exit"
            );
        }
    }
}

/// Process `pid`'s name for its `released` line, read before its kill: once it is dead and
/// waited for, its PID may be another's.
pub(crate) fn name_of(proc: &ProcRoot, pid: i32) -> Comm {
    let mut buf = [0u8; 64];
    match proc.read_file(pid, "comm", &mut buf) {
        Ok(comm) => Comm::new(procfs::parse_comm(comm)),
        Err(_) => Comm::new(b""),
    }
}

/// `process_mrelease` of the process `pidfd` names. Where the kernel lacks it, says so once
/// and does not try again.
fn release(pidfd: impl AsFd) -> Release {
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return Release::Unsupported;
    }
    // SAFETY: process_mrelease takes a pidfd and a flags word, both plain integers; the fd
    // is borrowed for the call.
    let reaped = unsafe {
        libc::syscall(
            libc::SYS_process_mrelease,
            pidfd.as_fd().as_raw_fd(),
            0 as libc::c_uint,
        )
    };
    if reaped == 0 {
        return Release::Released;
    }
    match Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO) {
        Errno::SRCH => Release::Exited,
        Errno::NOSYS => {
            if !UNSUPPORTED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    event = "mrelease_unsupported",
                    "this kernel has no process_mrelease (Linux 5.15+): a killed process's \
                     memory comes back only as it exits"
                );
            }
            Release::Unsupported
        }
        errno => Release::Failed(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_processes_are_counted_not_held() {
        let mut reaping = Reaping::default();
        for pid in 0..AT_MOST as i32 + 3 {
            let fd = std::fs::File::open("/dev/null").expect("/dev/null");
            reaping.hold(pid, || Comm::new(b"x"), fd.into());
        }
        assert_eq!((reaping.held.len(), reaping.beyond), (AT_MOST, 3));
        assert_eq!(
            reaping.held.last().map(|held| held.pid),
            Some(AT_MOST as i32 - 1)
        );
    }
}
