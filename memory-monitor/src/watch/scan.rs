//! Discovery by scanning `/proc`: the source that works everywhere, unprivileged included.
//!
//! Each scan lists every PID with `getdents64` into a buffer kept from start-up, reads the
//! `comm` of each (a stack buffer), admits new matches into the [`ProcessTable`] and sweeps out the
//! processes that exited or no longer match. A steady scan allocates nothing.

use std::io;
use std::time::Instant;

use rustix::io::Errno;

use crate::rules::RuleSet;
use crate::system::procfs::{self, DirBuffer, ProcRoot};
use crate::watch::process::{AdmitError, WatchedProcess};
use crate::watch::table::ProcessTable;

/// Bytes of a command line that `--match cmdline` (and long names) look at: enough for long
/// Java class paths (one argument may be at most 128 KiB). Only what a read fills is touched.
pub(crate) const CMDLINE_MAX: usize = 128 * 1024;

/// Processes a monitor must never watch: PID 1, itself, its parent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exclusions {
    me: i32,
    parent: i32,
}

impl Exclusions {
    /// The exclusions as they stand now (the parent changes when the monitor is re-parented).
    pub(crate) fn now() -> Exclusions {
        Exclusions {
            me: std::process::id() as i32,
            parent: rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()),
        }
    }

    /// Whether `pid` must be left alone.
    pub(crate) fn excludes(&self, pid: i32) -> bool {
        pid <= 1 || pid == self.me || pid == self.parent
    }
}

/// Counts from one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScanReport {
    /// Processes that matched but could not be watched (table full, out of file descriptors).
    pub(crate) skipped: usize,
    /// The first reason something was skipped.
    pub(crate) skip_reason: Option<SkipReason>,
}

/// Why a matching process was not watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipReason {
    /// `--max-processes` reached.
    Full(usize),
    /// Opening its pidfd or statm failed (usually EMFILE).
    Open(Errno),
}

/// Finds the processes to watch by reading `/proc`.
#[derive(Debug)]
pub(crate) struct Scanner {
    proc: ProcRoot,
    dir_buf: DirBuffer,
    cmdline_buf: Box<[u8]>,
    /// Whether watched processes keep their `statm` open (see [`WatchedProcess`]).
    hold_statm: bool,
}

impl Scanner {
    /// A scanner whose records hold `statm` open when `hold_statm` (measurements every
    /// cycle).
    pub(crate) fn new(hold_statm: bool) -> io::Result<Scanner> {
        Ok(Scanner {
            proc: ProcRoot::open()?,
            dir_buf: ProcRoot::dir_buffer(),
            cmdline_buf: vec![0; CMDLINE_MAX].into_boxed_slice(),
            hold_statm,
        })
    }

    /// The `/proc` this scanner reads.
    pub(crate) fn proc(&self) -> &ProcRoot {
        &self.proc
    }

    /// Brings `list` up to date with `/proc` at `now` under `rules`: admits new matches, moves
    /// a watched process that was renamed or moved to another cgroup under the rule that
    /// selects it now, and drops what exited or stopped matching (calling `gone` for each).
    pub(crate) fn scan(
        &mut self,
        rules: &RuleSet,
        list: &mut ProcessTable,
        now: Instant,
        gone: impl FnMut(&WatchedProcess),
    ) -> io::Result<ScanReport> {
        let mut report = ScanReport::default();
        list.begin_scan();
        let exclusions = Exclusions::now();
        let Scanner {
            proc,
            dir_buf,
            cmdline_buf,
            hold_statm,
        } = self;
        proc.for_each_pid(dir_buf, |pid| {
            if exclusions.excludes(pid) {
                return;
            }
            let mut comm_buf = [0u8; 64];
            let Ok(comm) = proc.read_file(pid, "comm", &mut comm_buf) else {
                return;
            };
            let comm = procfs::parse_comm(comm);
            let Some((rule, _)) = rules.select(proc, pid, comm, cmdline_buf) else {
                return;
            };
            match list.get(pid) {
                Some(watched)
                    if watched.rule() == rule
                        && watched.comm().as_bytes() == comm
                        && !watched.moved_cgroup(proc) =>
                {
                    list.mark_seen(pid);
                    return;
                }
                Some(_) => {
                    let refreshed = list.update(pid, |watched| {
                        watched.refresh(proc, rules, cmdline_buf, now, &Some)
                    });
                    if let Some(Ok(())) = refreshed {
                        list.mark_seen(pid);
                    }
                    return;
                }
                None => {}
            }
            let skip = match WatchedProcess::open(proc, pid, rules, cmdline_buf, *hold_statm) {
                Ok(watched) => match list.insert(watched) {
                    Ok(()) => return,
                    Err(full) => SkipReason::Full(full.0),
                },
                Err(AdmitError::Gone | AdmitError::Exited) => return,
                Err(AdmitError::Io(error)) => {
                    SkipReason::Open(Errno::from_io_error(&error).unwrap_or(Errno::IO))
                }
            };
            report.skipped += 1;
            report.skip_reason.get_or_insert(skip);
        })?;
        list.sweep(gone);
        Ok(report)
    }

    /// Looks at `watched` again under `rules` (see [`WatchedProcess::refresh`]; the rule it was
    /// watched under is at `renumbered` in them).
    pub(crate) fn refresh(
        &mut self,
        rules: &RuleSet,
        watched: &mut WatchedProcess,
        now: Instant,
        renumbered: &dyn Fn(usize) -> Option<usize>,
    ) -> Result<(), AdmitError> {
        watched.refresh(&self.proc, rules, &mut self.cmdline_buf, now, renumbered)
    }

    /// Opens `pid` if it is one to watch: one of `rules` selects it now.
    pub(crate) fn open(&mut self, rules: &RuleSet, pid: i32) -> Result<WatchedProcess, AdmitError> {
        if Exclusions::now().excludes(pid) {
            return Err(AdmitError::Gone);
        }
        WatchedProcess::open(
            &self.proc,
            pid,
            rules,
            &mut self.cmdline_buf,
            self.hold_statm,
        )
    }
}
