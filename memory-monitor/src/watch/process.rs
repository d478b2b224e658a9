//! One watched process: its record holds a pidfd (so a signal can never reach a process that
//! merely reuses the PID) and, when it is read often (poll mode), an open `/proc/PID/statm`
//! (re-read in place, so a measurement costs one `pread` and no allocation). The records are
//! kept in a [`ProcessTable`](super::table::ProcessTable).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};

use crate::accounting::{Accounting, Exact};
use crate::policy::Episode;
use crate::rules::RuleSet;
use crate::rules::count::Count;
use crate::signal::Signal;
use crate::system::container::Identity;
use crate::system::procfs::{self, Comm, ProcRoot, has_exited, monotonic_ns};
use crate::trend::Trend;

/// How many times a torn `smaps_rollup` walk is read again before the counters decide.
const ROLLUP_TRIES: usize = 3;

/// One watched process.
#[derive(Debug)]
pub(crate) struct WatchedProcess {
    pub(super) pid: i32,
    comm: Comm,
    /// The user it runs as (effective uid), read at admission and again at each breach.
    uid: u32,
    pidfd: OwnedFd,
    /// Held open when measurements are frequent; else opened for each (one descriptor per
    /// process instead of two lets many more processes be watched).
    statm: Option<OwnedFd>,
    /// Watched by `--pid`: kept whatever its name becomes.
    pinned: bool,
    /// The rule it is watched under (an index into the rules in force).
    pub(super) rule: usize,
    /// Its limit in bytes under that rule.
    limit: u64,
    /// The scan generation that last saw this process (poll mode's sweep).
    pub(super) seen: u32,
    /// Whether the cgroup limit files its limit comes from are followed (see `changes`); false
    /// again whenever its rule or cgroup may have changed.
    pub(crate) limit_followed: bool,
    /// A fingerprint of its `/proc/PID/cgroup` when its rule depends on its cgroup (0 when it
    /// does not), so that a scan can tell it moved.
    cgroup_print: u64,
    /// Its container and pod, read from its cgroup path at admission (and after a move).
    identity: Identity,
    /// A fingerprint of its memory cgroup's path, read with its identity (0: none read), by
    /// which poll mode follows the OOM kills counted in each watched process's cgroup.
    memory_cgroup: u64,
    /// `CLOCK_MONOTONIC` (ns) when it was admitted: a kernel event sent before then is about
    /// an earlier process with its PID.
    admitted_ns: u64,
    /// Where the process stands against the limit.
    pub(crate) episode: Episode,
    /// eBPF mode: when to look again at a process near its limit whose kernel-side reports are
    /// held back for a moment (see `monitor`).
    pub(crate) recheck: Option<std::time::Instant>,
    /// Its RSS at its rule's last reading of its processes together (a group budget's, a
    /// pressure trigger's pick), and when: the next tells how fast it grew.
    pub(crate) last_reading: Option<(u64, Instant)>,
    /// Its growth timeline and the fit that may name it a leak (rules with `leak-horizon`).
    pub(crate) trend: Trend,
}

/// Why a process could not be watched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdmitError {
    /// It exited, is a kernel thread, or no longer matches: nothing to watch, nothing to report.
    #[error("process is gone or no longer matches")]
    Gone,
    /// It has exited, or has begun to (its end may already have been reported).
    #[error("process has exited")]
    Exited,
    /// Opening its handles failed for another reason (out of file descriptors, permission).
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<Errno> for AdmitError {
    fn from(errno: Errno) -> AdmitError {
        match errno {
            // `pidfd_open` of a thread that is not its process's leader fails with ENOENT
            // here (EINVAL on older kernels): not a process, nothing to watch.
            Errno::SRCH | Errno::NOENT | Errno::INVAL => AdmitError::Gone,
            other => AdmitError::Io(other.into()),
        }
    }
}

impl WatchedProcess {
    /// Opens handles on `pid` and confirms it is a user process one of `rules` selects.
    ///
    /// The pidfd is opened first and liveness is checked last: everything read in between
    /// (`stat`, `cmdline`, `cgroup`, the `statm` fd) belongs to the process the pidfd names,
    /// because its PID cannot be reused while it lives.
    pub(crate) fn open(
        proc: &ProcRoot,
        pid: i32,
        rules: &RuleSet,
        cmdline_buf: &mut [u8],
        hold_statm: bool,
    ) -> Result<WatchedProcess, AdmitError> {
        // Before anything is read: a process not yet exiting when read ends after this.
        let admitted_ns = monotonic_ns();
        let pidfd = rustix::process::pidfd_open(
            Pid::from_raw(pid).ok_or(AdmitError::Gone)?,
            PidfdFlags::empty(),
        )?;
        let statm = match hold_statm {
            true => Some(proc.open_file(pid, "statm").map_err(io_gone)?),
            false => None,
        };
        let standing = Standing::read(proc, pid, rules, cmdline_buf)?;
        let watched = WatchedProcess {
            pid,
            comm: standing.comm,
            uid: standing.uid,
            pidfd,
            statm,
            pinned: standing.pinned,
            rule: standing.rule,
            limit: standing.limit,
            seen: 0,
            limit_followed: false,
            cgroup_print: standing.cgroup_print,
            identity: standing.identity,
            memory_cgroup: standing.memory_cgroup,
            admitted_ns,
            episode: Episode::Under,
            recheck: None,
            last_reading: None,
            trend: Trend::new(Instant::now().checked_sub(standing.age)),
        };
        if watched.has_exited() {
            return Err(AdmitError::Exited);
        }
        Ok(watched)
    }

    /// Keeps `statm` open from now on (for a process measured often: one near its limit).
    /// Checked like at admission: opened by PID, it is this process's only if it still lives.
    pub(crate) fn hold_statm(&mut self, proc: &ProcRoot) {
        if self.statm.is_some() {
            return;
        }
        if let Ok(statm) = proc.open_file(self.pid, "statm")
            && !self.has_exited()
        {
            self.statm = Some(statm);
        }
    }

    /// Closes a held `statm` (the process is no longer measured often).
    pub(crate) fn release_statm(&mut self) {
        self.statm = None;
    }

    /// The process ID.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The process name, as of its admission or its last look (see [`WatchedProcess::refresh`],
    /// [`WatchedProcess::reread_identity`]).
    pub(crate) fn comm(&self) -> &Comm {
        &self.comm
    }

    /// The user it runs as (effective uid).
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// Reads its name and user again (for a breach's log line and hook: a rename that kept
    /// its rule is not reported by the kernel side, nor is a change of user). Each is kept as
    /// it was if it cannot be read.
    pub(crate) fn reread_identity(&mut self, proc: &ProcRoot) {
        let mut buf = [0u8; 64];
        let comm = proc
            .read_file(self.pid, "comm", &mut buf)
            .ok()
            .map(|comm| Comm::new(procfs::parse_comm(comm)));
        let uid = crate::rules::read_uid(proc, self.pid);
        if !self.has_exited() {
            self.comm = comm.unwrap_or(self.comm);
            self.uid = uid.unwrap_or(self.uid);
        }
    }

    /// Whether a kernel event sent at `time_ns` (`bpf_ktime_get_ns`, `CLOCK_MONOTONIC`) can be
    /// about this process: it was admitted before it was sent.
    pub(crate) fn was_watched_at(&self, time_ns: u64) -> bool {
        self.admitted_ns <= time_ns
    }

    /// Whether it moved to another cgroup since it was last looked at, when its rule depends
    /// on its cgroup (poll mode has no event for a move). Allocates nothing.
    pub(crate) fn moved_cgroup(&self, proc: &ProcRoot) -> bool {
        self.cgroup_print != 0 && read_cgroup_print(proc, self.pid) != self.cgroup_print
    }

    /// Its container and pod, as of its admission or its last look.
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A fingerprint of its memory cgroup (0: unknown), as of its admission or its last look.
    pub(crate) fn memory_cgroup(&self) -> u64 {
        self.memory_cgroup
    }

    /// Whether it is watched by PID rather than by name.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The index of the rule it is watched under.
    pub(crate) fn rule(&self) -> usize {
        self.rule
    }

    /// Its limit in bytes.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Sets its limit (its cgroup's limit, of which its own is a share, was rewritten).
    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Looks at the process again after it exec'd, renamed itself or moved to another cgroup,
    /// or after the rules were read again: reads its name anew and puts it under the rule that
    /// selects it now, with that rule's limit, at `now`. It is the same process (the pidfd says
    /// so), so its breach episode carries on: one exec that the kernel reports twice (as a
    /// rename, then as the exec), or a rename under a rule that matches both names, is not a
    /// second breach. Under another rule than before — `renumbered` gives where the rule it
    /// was under is in `rules` now, if it still is — see [`Episode::rule_changed`].
    /// `Err(AdmitError::Exited)`: it exited or is exiting; `Err(AdmitError::Gone)`: no rule
    /// selects it any more.
    pub(crate) fn refresh(
        &mut self,
        proc: &ProcRoot,
        rules: &RuleSet,
        cmdline_buf: &mut [u8],
        now: Instant,
        renumbered: &dyn Fn(usize) -> Option<usize>,
    ) -> Result<(), AdmitError> {
        let standing = Standing::read(proc, self.pid, rules, cmdline_buf);
        // Read by PID: all of it was this process's only if it still lives. And one that
        // has exited is reported as such, not as one that no longer matches.
        if self.has_exited() {
            return Err(AdmitError::Exited);
        }
        let standing = standing?;
        if renumbered(self.rule) != Some(standing.rule) {
            self.episode.rule_changed(now);
        }
        self.comm = standing.comm;
        self.uid = standing.uid;
        self.pinned = standing.pinned;
        self.rule = standing.rule;
        self.limit = standing.limit;
        self.cgroup_print = standing.cgroup_print;
        self.identity = standing.identity;
        self.memory_cgroup = standing.memory_cgroup;
        self.limit_followed = false;
        Ok(())
    }

    /// Exact resident memory in bytes, from `statm` (`buf` needs about 100 bytes).
    /// `Err(Errno::SRCH)` once the process has exited.
    pub(crate) fn rss(
        &self,
        proc: &ProcRoot,
        buf: &mut [u8],
        page_size: u64,
    ) -> Result<u64, Errno> {
        let errno = |e: std::io::Error| Errno::from_io_error(&e).unwrap_or(Errno::IO);
        let statm = match &self.statm {
            Some(statm) => procfs::read_at_start(statm, &mut *buf).map_err(errno)?,
            None => {
                let len = match proc.read_file(self.pid, "statm", &mut *buf) {
                    Ok(read) => read.len(),
                    // No /proc/PID any more: reaped.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Errno::SRCH),
                    Err(e) => return Err(errno(e)),
                };
                // Read by PID: it was this process's only if the process still lives now.
                if self.has_exited() {
                    return Err(Errno::SRCH);
                }
                &buf[..len]
            }
        };
        let statm = procfs::parse_statm(statm).map_err(|_| Errno::SRCH)?;
        // A process that has exited but not been reaped reads as all zeros: gone, not under.
        if statm.size_pages == 0 {
            return Err(Errno::SRCH);
        }
        Ok(statm.resident_pages * page_size)
    }

    /// The memory that counts toward `limit` in bytes (resident, and with `count` swap too),
    /// exact wherever it could decide against `limit` or the warning level `warn`: `statm`
    /// (one read; and `status`'s `VmSwap`) when `exact` says it sums exactly, or this kernel's
    /// counters are exact, or too far under the limit and from the warning level for their
    /// error to matter; else `smaps_rollup`, which walks the page tables (see [`Accounting`]).
    /// `Err(Errno::SRCH)` once the process has exited. Allocates nothing.
    pub(crate) fn exact_rss(
        &self,
        proc: &ProcRoot,
        buf: &mut [u8],
        page_size: u64,
        (limit, warn): (u64, Option<u64>),
        (accounting, exact): (Accounting, Exact),
        count: Count,
    ) -> Result<u64, Errno> {
        let statm = self.rss(proc, buf, page_size)?;
        let swap = match count.swap() {
            true => self.swap(proc)?,
            false => 0,
        };
        let counted = statm.saturating_add(swap);
        if exact == Exact::Statm || accounting.statm_is_exact() {
            return Ok(counted);
        }
        // Threads count only where each caches changes; unknown, assume many.
        let threads = match accounting.thread_lag() {
            0 => 1,
            _ => proc.threads(self.pid).unwrap_or(u64::MAX),
        };
        let error = accounting
            .statm_error(threads)
            .saturating_add(if count.swap() {
                accounting.one_counter_error()
            } else {
                0
            });
        let decides_warning = warn.is_some_and(|warn| counted.abs_diff(warn) <= error);
        if counted.saturating_add(error) <= limit && !decides_warning {
            return Ok(counted);
        }
        let mut before = counted;
        for _ in 0..ROLLUP_TRIES {
            let (rollup, rollup_swap) = match self.rollup(proc, count) {
                Ok(walked) => walked,
                // Not ours to walk (`smaps_rollup` asks for ptrace access, which an
                // unprivileged container's monitor lacks for its neighbours): the counters,
                // within their error, decide, as where the walk is torn.
                Err(Errno::ACCESS | Errno::PERM) => return Ok(before),
                Err(errno) => return Err(errno),
            };
            let after = self.rss(proc, buf, page_size)?.saturating_add(swap);
            tracing::trace!(
                pid = self.pid,
                statm = after,
                threads,
                rollup,
                swap = rollup_swap,
                "exact"
            );
            let walked = rollup.saturating_add(rollup_swap);
            if !is_torn(walked, before, after, error) {
                return Ok(walked);
            }
            before = after;
        }
        // Torn every time: the counters, within their error, are the best figure there is.
        Ok(before)
    }

    /// `Rss:` of `smaps_rollup`, a walk of the process's page tables, and its `Swap:` when
    /// `count` counts swap (else 0). Allocates nothing.
    fn rollup(&self, proc: &ProcRoot, count: Count) -> Result<(u64, u64), Errno> {
        // Room for every line up to `Swap:` (after some twenty others).
        let mut rollup = [0u8; 2048];
        let read = match proc.read_file(self.pid, "smaps_rollup", &mut rollup) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Errno::SRCH),
            Err(e) => return Err(Errno::from_io_error(&e).unwrap_or(Errno::IO)),
        };
        // Read by PID: it was this process's only if the process still lives now.
        let rss = procfs::parse_rollup_rss(read).map_err(|_| Errno::SRCH)?;
        let swap = match count.swap() {
            true => procfs::parse_rollup_swap(read).map_err(|_| Errno::SRCH)?,
            false => 0,
        };
        if self.has_exited() {
            return Err(Errno::SRCH);
        }
        Ok((rss, swap))
    }

    /// What it has in swap in bytes (`status`'s `VmSwap`, as exact as `statm`).
    /// `Err(Errno::SRCH)` once the process has exited. Allocates nothing.
    fn swap(&self, proc: &ProcRoot) -> Result<u64, Errno> {
        let mut status = [0u8; 2048];
        let read = match proc.read_file(self.pid, "status", &mut status) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Errno::SRCH),
            Err(e) => return Err(Errno::from_io_error(&e).unwrap_or(Errno::IO)),
        };
        let swap = procfs::parse_status_rss(read).swap;
        // Read by PID: it was this process's only if the process still lives now.
        if self.has_exited() {
            return Err(Errno::SRCH);
        }
        Ok(swap)
    }

    /// Sends `signal` through the pidfd.
    pub(crate) fn send(&self, signal: Signal) -> Result<(), Errno> {
        rustix::process::pidfd_send_signal(&self.pidfd, signal.to_rustix())
    }

    /// Whether the process has exited.
    pub(crate) fn has_exited(&self) -> bool {
        has_exited(&self.pidfd)
    }

    /// The pidfd, for waiting on the process's exit.
    pub(crate) fn pidfd(&self) -> impl AsFd + '_ {
        &self.pidfd
    }
}

/// Whether a `smaps_rollup` figure read between two counter readings, `before` and `after`,
/// is below both by more than the counters' `error`: then the walk was torn by the process's
/// own mapping changes (the kernel drops the mmap lock when it is contended and resumes, and
/// on some kernels skips mappings), and is not the truth. Taken for the truth, it would end a
/// breach that has not ended. A process that really shrank between the readings reads low on
/// the counters after, too.
fn is_torn(rollup: u64, before: u64, after: u64, error: u64) -> bool {
    rollup.saturating_add(error) < before.min(after)
}

/// What the rules make of a process now: its name, the rule that selects it and that rule's
/// limit for it. Read by PID, so it is the process's own only while its pidfd says it lives.
struct Standing {
    comm: Comm,
    /// How long ago it started.
    age: std::time::Duration,
    uid: u32,
    rule: usize,
    pinned: bool,
    limit: u64,
    cgroup_print: u64,
    identity: Identity,
    memory_cgroup: u64,
}

impl Standing {
    /// Reads it for `pid`; `Err(AdmitError::Gone)` if it exited, is a kernel thread, or no
    /// rule selects it.
    fn read(
        proc: &ProcRoot,
        pid: i32,
        rules: &RuleSet,
        cmdline_buf: &mut [u8],
    ) -> Result<Standing, AdmitError> {
        let mut stat_buf = [0u8; 1024];
        let stat = proc
            .read_file(pid, "stat", &mut stat_buf)
            .map_err(io_gone)?;
        let stat = procfs::parse_stat(stat).map_err(|_| AdmitError::Gone)?;
        // An exiting process is gone already: the kernel side may have reported its end
        // before this read (its leader is marked exiting first), and a record made now would
        // outlive that report.
        if stat.is_exiting() {
            return Err(AdmitError::Exited);
        }
        if stat.is_kernel_thread() {
            return Err(AdmitError::Gone);
        }
        let comm = Comm::new(stat.comm);
        let (rule, pinned) = rules
            .select(proc, pid, comm.as_bytes(), cmdline_buf)
            .ok_or(AdmitError::Gone)?;
        let (identity, memory_cgroup) = read_cgroups(proc, pid);
        Ok(Standing {
            comm,
            age: age_of(stat.start_time),
            uid: crate::rules::read_uid(proc, pid).ok_or(AdmitError::Gone)?,
            rule,
            pinned,
            limit: rules.limit_of(rule, proc, pid),
            cgroup_print: cgroup_print(proc, pid, rules, rule),
            identity,
            memory_cgroup,
        })
    }
}

/// How long ago a process started `start_time` clock ticks after boot (zero if that cannot be
/// told).
fn age_of(start_time: u64) -> std::time::Duration {
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let started = std::time::Duration::from_millis(start_time.saturating_mul(1000) / ticks);
    let boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let since_boot = std::time::Duration::new(boot.tv_sec as u64, boot.tv_nsec as u32);
    since_boot.saturating_sub(started)
}

/// The fingerprint of process `pid`'s cgroups, when rule `rule` of `rules` depends on them
/// (0 when it does not, or they cannot be read).
fn cgroup_print(proc: &ProcRoot, pid: i32, rules: &RuleSet, rule: usize) -> u64 {
    match rules.get(rule).depends_on_cgroups() {
        true => read_cgroup_print(proc, pid),
        false => 0,
    }
}

/// The container and pod of process `pid`, from `/proc/PID/cgroup` (none when unreadable).
pub(crate) fn read_identity(proc: &ProcRoot, pid: i32) -> Identity {
    read_cgroups(proc, pid).0
}

/// The container and pod of process `pid`, and a fingerprint of its memory cgroup (0 when
/// unknown), from one read of `/proc/PID/cgroup`.
fn read_cgroups(proc: &ProcRoot, pid: i32) -> (Identity, u64) {
    let mut buf = [0u8; 4096];
    let Ok(text) = proc.read_file(pid, "cgroup", &mut buf) else {
        return (Identity::default(), 0);
    };
    let memory = crate::system::cgroup::memory_path_of(text, false).map_or(0, memory_cgroup_print);
    (Identity::from_proc_cgroup(text), memory)
}

/// A fingerprint of a memory cgroup's path (never 0).
pub(crate) fn memory_cgroup_print(path: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(path);
    hasher.finish().max(1)
}

/// A hash of `/proc/PID/cgroup` (never 0; 0 when it cannot be read).
fn read_cgroup_print(proc: &ProcRoot, pid: i32) -> u64 {
    use std::hash::Hasher as _;
    let mut buf = [0u8; 4096];
    let Ok(text) = proc.read_file(pid, "cgroup", &mut buf) else {
        return 0;
    };
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(text);
    hasher.finish().max(1)
}

fn io_gone(error: io::Error) -> AdmitError {
    match Errno::from_io_error(&error) {
        Some(errno) => errno.into(),
        None => AdmitError::Io(error),
    }
}

#[cfg(test)]
mod tests {
    //! A watched process may exit at any moment, between any two steps of a cycle: every
    //! handle the monitor holds then says so plainly, and nothing reaches another process.

    use super::*;
    use crate::act::deliver::{Delivery, Dispatch, deliver};
    use crate::matcher::{MatchMode, Matcher};
    use crate::rules::{Pinned, Rule, Selector};
    use crate::signal::Signal;
    use crate::system::procfs::page_size;
    use crate::testing::Sleeper;
    use crate::units::SizeSpec;

    /// One rule selecting with `selector`, at 1 GiB.
    fn rules(selector: Selector) -> RuleSet {
        RuleSet::new(vec![Rule::new("test", selector, SizeSpec::Bytes(1 << 30))]).unwrap()
    }

    fn named(name: &str) -> RuleSet {
        rules(Selector::name(
            Matcher::new(MatchMode::Exact, name).unwrap(),
        ))
    }

    fn pinned(proc: &ProcRoot, pid: i32) -> RuleSet {
        rules(Selector {
            pids: vec![Pinned::now(proc, pid).unwrap()],
            ..Selector::default()
        })
    }

    #[test]
    fn a_rollup_far_under_both_counter_readings_is_torn() {
        const MIB: u64 = 1 << 20;
        let error = 4 * MIB;
        // Seen on 6.1: 9 MiB walked of a process the counters put at 37 and 38 MiB.
        assert!(is_torn(9 * MIB, 37 * MIB, 38 * MIB, error));
        // Within the counters' error, either way: the walk is the truth.
        assert!(!is_torn(34 * MIB, 37 * MIB, 38 * MIB, error));
        assert!(!is_torn(40 * MIB, 37 * MIB, 38 * MIB, error));
        // Freed between the readings: the counters after say so too.
        assert!(!is_torn(9 * MIB, 38 * MIB, 10 * MIB, error));
    }

    #[test]
    fn a_watched_process_that_exits_reads_as_gone_and_is_not_signalled() {
        // With statm held open (poll mode) and read by PID on demand (eBPF mode).
        for hold_statm in [true, false] {
            let mut sleeper = Sleeper::start();
            let proc = ProcRoot::open().unwrap();
            let mut cmdline = vec![0; 4096];
            let watched = WatchedProcess::open(
                &proc,
                sleeper.pid(),
                &named(sleeper.name()),
                &mut cmdline,
                hold_statm,
            )
            .expect("the sleeper is admitted");
            let mut buf = [0u8; 128];
            assert!(
                watched
                    .rss(&proc, &mut buf, page_size())
                    .is_ok_and(|rss| rss > 0)
            );
            assert!(!watched.has_exited());

            sleeper.end(); // exited and reaped: its PID is free for reuse
            assert!(watched.has_exited());
            assert_eq!(watched.rss(&proc, &mut buf, page_size()), Err(Errno::SRCH));
            assert_eq!(
                deliver(&watched, Signal::TERM, Dispatch::Send),
                Delivery::Exited
            );
        }
    }

    #[test]
    fn a_watched_process_looked_at_again_after_it_exited_has_exited_not_stopped_matching() {
        // The kernel side's rename event may be handled after the process is gone.
        let mut sleeper = Sleeper::start();
        let proc = ProcRoot::open().unwrap();
        let mut cmdline = vec![0; 4096];
        let rules = named(sleeper.name());
        let mut watched = WatchedProcess::open(&proc, sleeper.pid(), &rules, &mut cmdline, false)
            .expect("the sleeper is admitted");
        let now = Instant::now();
        assert!(
            watched
                .refresh(&proc, &rules, &mut cmdline, now, &Some)
                .is_ok()
        );
        sleeper.end();
        assert!(matches!(
            watched.refresh(&proc, &rules, &mut cmdline, now, &Some),
            Err(AdmitError::Exited)
        ));
    }

    #[test]
    fn a_process_that_does_not_match_is_not_admitted() {
        let sleeper = Sleeper::start();
        let pid = sleeper.pid();
        let proc = ProcRoot::open().unwrap();
        let mut cmdline = vec![0; 4096];
        let other = named("something-else");
        assert!(WatchedProcess::open(&proc, pid, &other, &mut cmdline, true).is_err());
        let watched =
            WatchedProcess::open(&proc, pid, &pinned(&proc, pid), &mut cmdline, true).unwrap();
        assert!(watched.is_pinned());
        // The same PID with another start time is another process: not the one named.
        let mut elsewhere = Pinned::now(&proc, pid).unwrap();
        elsewhere.start_time += 1;
        let elsewhere = rules(Selector {
            pids: vec![elsewhere],
            ..Selector::default()
        });
        assert!(WatchedProcess::open(&proc, pid, &elsewhere, &mut cmdline, true).is_err());
    }

    #[test]
    fn a_process_that_exited_but_is_not_reaped_reads_as_gone_not_as_empty() {
        let mut sleeper = Sleeper::start();
        let pid = sleeper.pid();
        let proc = ProcRoot::open().unwrap();
        let mut cmdline = vec![0; 4096];
        let watched =
            WatchedProcess::open(&proc, pid, &pinned(&proc, pid), &mut cmdline, true).unwrap();
        let mut buf = [0u8; 128];
        assert!(
            watched
                .rss(&proc, &mut buf, page_size())
                .is_ok_and(|rss| rss > 0)
        );
        // Killed and not yet reaped by this test, its parent: a zombie until waited for.
        sleeper.kill();
        let is_zombie = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, state)| state.starts_with('Z'))
            })
        };
        while !is_zombie() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(watched.rss(&proc, &mut buf, page_size()), Err(Errno::SRCH));
    }
}
