//! The watch state, and its one owner: which processes are watched, under which rule and at
//! which limit, in userspace's list and on the kernel side alike. Every process is admitted,
//! looked at again and forgotten here, on both sides at once, so the two can never drift: a
//! process the list no longer holds is never counted by the kernel side's pre-filter, and
//! one the kernel side follows is always in the list.

pub(crate) mod process;
pub(crate) mod scan;
pub(crate) mod table;

use std::io;
use std::time::Instant;

use rustix::io::Errno;

use crate::kernel::{KernelLink, KernelSide, Target};
use crate::rules::RuleSet;
use crate::system::inotify::Changes;
use crate::system::procfs::ProcRoot;
use crate::watch::process::{AdmitError, WatchedProcess};
use crate::watch::scan::{ScanReport, Scanner, SkipReason};
use crate::watch::table::ProcessTable;

/// What came of looking at a process the kernel side reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discovered {
    /// It is watched (admitted, or looked at again), and followed on the kernel side.
    Watched,
    /// It is not one to watch (any more); forgotten if it was.
    NotWatched,
    /// It is one to watch but cannot be: no room, or no descriptor.
    Skipped(SkipReason),
}

/// The watched processes, on both sides. The rules they are watched under are the monitor's
/// (see `monitor::in_force`), handed to each call that judges by them.
pub(crate) struct Watch {
    scanner: Scanner,
    list: ProcessTable,
    /// The kernel side ([`crate::kernel::Unloaded`] in poll mode).
    kernel: Box<dyn KernelSide>,
    /// `--max-processes`, for the kernel side's table being full.
    capacity: usize,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("watched", &self.list.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// Nothing watched yet, with room for `capacity` processes, followed on `kernel`. With `hold_statm`, each watched process's `statm` stays open: poll mode reads
    /// every process every cycle; eBPF mode reads one on a kernel report, and holding one
    /// descriptor per process instead of two doubles how many it can watch under the same
    /// open-files limit.
    pub(crate) fn new(
        capacity: usize,
        kernel: Box<dyn KernelSide>,
        hold_statm: bool,
    ) -> io::Result<Watch> {
        Ok(Watch {
            scanner: Scanner::new(hold_statm)?,
            list: ProcessTable::with_capacity(capacity),
            kernel,
            capacity,
        })
    }

    /// The processes watched.
    pub(crate) fn list(&self) -> &ProcessTable {
        &self.list
    }

    /// Whether growth profiles can be taken (eBPF mode, maps made at start-up).
    pub(crate) fn can_profile_growth(&self) -> bool {
        self.kernel.can_profile_growth()
    }

    /// Whether the kernel side follows swap (eBPF mode: when a rule at start-up counted it).
    pub(crate) fn can_count_swap(&self) -> bool {
        self.kernel.can_count_swap()
    }

    /// Brings the watch up to date with `/proc` at `now` under `rules`: admits new matches,
    /// looks again at those renamed or moved, forgets the ones gone; and (eBPF mode) follows
    /// every watched process on the kernel side afresh from its exact sizes.
    pub(crate) fn scan(&mut self, rules: &RuleSet, now: Instant) -> io::Result<ScanReport> {
        let report = self.scanner.scan(rules, &mut self.list, now, |gone| {
            tracing::debug!(pid = gone.pid(), name = %gone.comm(), "no longer watched (exited or renamed)");
            self.kernel.forget(gone.pid());
        })?;
        for watched in self.list.iter() {
            let target = target_of(rules, watched);
            let _ = self
                .kernel
                .follow(watched.pid(), target, self.scanner.proc());
        }
        Ok(report)
    }

    /// A process the kernel side found or asks about (it exec'd, forked, renamed itself or
    /// moved to another cgroup): decides under `rules` (those in force) whether and how to
    /// watch it, and has the kernel side follow it from its exact sizes. A process already
    /// watched is looked at again and keeps its breach episode (see [`WatchedProcess::refresh`]).
    pub(crate) fn discover(&mut self, rules: &RuleSet, pid: i32, now: Instant) -> Discovered {
        let alive = self.list.get(pid).is_some_and(|w| !w.has_exited());
        if alive {
            let scanner = &mut self.scanner;
            let refreshed = self
                .list
                .update(pid, |watched| scanner.refresh(rules, watched, now, &Some));
            return match refreshed {
                Some(Ok(())) => self.follow(rules, pid),
                Some(Err(AdmitError::Exited)) => {
                    self.forget(pid);
                    tracing::debug!(pid, "exited");
                    Discovered::NotWatched
                }
                _ => self.unwatch(pid),
            };
        }
        // A record left by a process that has exited: it ended before this event was read
        // (renamed, then gone), so its end is said here, as its exit event will find no
        // record; its PID may now name another process.
        if self.list.get(pid).is_some() {
            tracing::debug!(pid, "exited");
        }
        self.forget(pid);
        let watched = match self.scanner.open(rules, pid) {
            Ok(watched) => watched,
            Err(AdmitError::Io(error)) => {
                self.forget(pid);
                let errno = Errno::from_io_error(&error).unwrap_or(Errno::IO);
                return Discovered::Skipped(SkipReason::Open(errno));
            }
            Err(_) => return self.unwatch(pid),
        };
        tracing::debug!(pid, name = %watched.comm(), "watching");
        if let Err(full) = self.list.insert(watched) {
            self.forget(pid);
            return Discovered::Skipped(SkipReason::Full(full.0));
        }
        self.follow(rules, pid)
    }

    /// Has the kernel side follow watched process `pid` as its rule in `rules` says, from its
    /// exact sizes.
    fn follow(&mut self, rules: &RuleSet, pid: i32) -> Discovered {
        let Some(watched) = self.list.get(pid) else {
            return Discovered::Watched;
        };
        let target = target_of(rules, watched);
        if self
            .kernel
            .follow(pid, target, self.scanner.proc())
            .is_err()
        {
            // The kernel side's table is full: a process it cannot follow is not watched.
            self.forget(pid);
            return Discovered::Skipped(SkipReason::Full(self.capacity));
        }
        Discovered::Watched
    }

    /// Stops watching `pid`, saying so when it was watched.
    fn unwatch(&mut self, pid: i32) -> Discovered {
        if let Some(gone) = self.list.get(pid) {
            tracing::debug!(pid, name = %gone.comm(), "no longer watched");
        }
        self.forget(pid);
        Discovered::NotWatched
    }

    /// The kernel side reported that process `pid` ended at `time_ns`: forgotten, unless the
    /// record under its PID was made after that (a newcomer given the PID).
    pub(crate) fn exited(&mut self, pid: i32, time_ns: u64) {
        if self
            .list
            .get(pid)
            .is_some_and(|watched| watched.was_watched_at(time_ns))
        {
            self.forget(pid);
            tracing::debug!(pid, "exited");
        }
    }

    /// Process `pid` exec'd a new program at `time_ns` (`now`): its growth trend starts
    /// afresh, unless the record under its PID was made after that.
    pub(crate) fn restart_trend(&mut self, pid: i32, time_ns: u64, now: Instant) {
        if let Some(watched) = self.list.get_mut(pid)
            && watched.was_watched_at(time_ns)
        {
            watched.trend.restart(now);
        }
    }

    /// Forgets `pid` on both sides.
    pub(crate) fn forget(&mut self, pid: i32) {
        self.list.remove(pid);
        self.kernel.forget(pid);
    }

    /// Keeps `pid`'s `statm` open from now on: near its limit, it will be read again soon.
    pub(crate) fn hold_statm(&mut self, pid: i32) {
        if let Some(watched) = self.list.get_mut(pid) {
            watched.hold_statm(self.scanner.proc());
        }
    }

    /// Back under its limit: `pid`'s `statm` is opened for each read again, and no report of
    /// it is held back any more.
    pub(crate) fn release_statm(&mut self, pid: i32) {
        if let Some(watched) = self.list.get_mut(pid) {
            watched.release_statm();
            watched.recheck = None;
        }
    }

    /// Visits the watched processes for `check` (which gets `/proc` and the kernel side too),
    /// forgetting on both sides those for which it returns false.
    pub(crate) fn retain(
        &mut self,
        mut check: impl FnMut(&mut WatchedProcess, &ProcRoot, &mut dyn KernelLink) -> bool,
    ) {
        self.retain_with(|watched, scanner, kernel| check(watched, scanner.proc(), kernel));
    }

    /// Visits every record with what looking at it needs (the scanner, the kernel side),
    /// forgetting on both sides those for which `keep` returns false.
    fn retain_with(
        &mut self,
        mut keep: impl FnMut(&mut WatchedProcess, &mut Scanner, &mut dyn KernelSide) -> bool,
    ) {
        self.list.retain_mut(|watched| {
            if keep(watched, &mut self.scanner, self.kernel.as_mut()) {
                return true;
            }
            self.kernel.forget(watched.pid());
            false
        });
    }

    /// [`Watch::retain`] for the one process `pid`; whether it is still watched after.
    pub(crate) fn retain_one(
        &mut self,
        pid: i32,
        check: impl FnOnce(&mut WatchedProcess, &ProcRoot, &mut dyn KernelLink) -> bool,
    ) -> bool {
        let Some(watched) = self.list.get_mut(pid) else {
            return false;
        };
        if check(watched, self.scanner.proc(), self.kernel.as_mut()) {
            return true;
        }
        self.forget(pid);
        false
    }

    /// Applies `rules` from now on: the kernel side takes them, then every watched process
    /// falls under the rule that selects it now, with the limit it gives (its breach episode
    /// carries on; `renumbered` says where each rule it was under is among the new ones);
    /// those no rule selects are forgotten. Refused by the kernel side, nothing changes.
    pub(crate) fn apply_rules(
        &mut self,
        rules: &RuleSet,
        now: Instant,
        renumbered: &dyn Fn(usize) -> Option<usize>,
    ) -> io::Result<()> {
        self.kernel.set_rules(rules)?;
        self.retain_with(|watched, scanner, _| {
            scanner.refresh(rules, watched, now, renumbered).is_ok()
        });
        self.list.recount();
        Ok(())
    }

    /// Follows the cgroups of `rules`, then looks whether they exist (in this order, so that
    /// one made in between is seen either way), until what is followed is what exists; returns
    /// the rules whose cgroup appeared (`true`) or went (`false`). The kernel side opens them
    /// again (one made again under the same name is another cgroup).
    pub(crate) fn recheck_cgroups(
        &mut self,
        rules: &mut RuleSet,
        changes: &mut Changes,
    ) -> io::Result<Vec<(usize, bool)>> {
        let mut all = Vec::new();
        // Each round follows one level deeper (a cgroup's parent made, then the cgroup).
        for _ in 0..16 {
            changes.follow_cgroups(rules.cgroups());
            let changed = rules.recheck_cgroups();
            if changed.is_empty() {
                break;
            }
            all.extend(changed);
        }
        self.kernel.set_rules(rules)?;
        Ok(all)
    }

    /// Follows the cgroup limit files of watched processes (`only` one, or all) whose limit
    /// under `rules` is a share of their cgroup's and whose files are not followed yet.
    pub(crate) fn follow_limits(
        &mut self,
        rules: &RuleSet,
        changes: &mut Changes,
        only: Option<i32>,
    ) {
        let proc = self.scanner.proc();
        if !rules.limits_per_process() {
            return;
        }
        let mut follow = |watched: &mut WatchedProcess| {
            if watched.limit_followed || !rules.get(watched.rule()).limit.is_per_process() {
                return;
            }
            let mut buf = [0u8; 4096];
            if let Ok(text) = proc.read_file(watched.pid(), "cgroup", &mut buf) {
                crate::system::cgroup::memory_limit(text, |file| changes.follow_limit(file));
            }
            watched.limit_followed = true;
        };
        match only {
            Some(pid) => {
                if let Some(watched) = self.list.get_mut(pid) {
                    follow(watched);
                }
            }
            None => self.list.retain_mut(|watched| {
                follow(watched);
                true
            }),
        }
    }

    /// A followed cgroup limit was written: works out again the limits `rules` give as a share
    /// of one, has the kernel side follow the processes whose limit changed at their new one,
    /// and marks them to be judged at `now`.
    pub(crate) fn limits_changed(&mut self, rules: &RuleSet, now: Instant) {
        self.retain_with(|watched, scanner, kernel| {
            let rule = watched.rule();
            if !rules.get(rule).limit.is_per_process() {
                return true;
            }
            let limit = rules.limit_of(rule, scanner.proc(), watched.pid());
            if limit != watched.limit() {
                tracing::debug!(event = "limit_changed", pid = watched.pid(), name = %watched.comm(), limit = %crate::units::Bytes(limit), "limit changed");
                watched.set_limit(limit);
                watched.recheck = Some(now);
                let target = target_of(rules, watched);
                let _ = kernel.follow(watched.pid(), target, scanner.proc());
            }
            true
        });
    }

    /// Whether it can never watch anything again: only `--pid` processes were selected by
    /// `rules`, and they are gone.
    pub(crate) fn nothing_left(&self, rules: &RuleSet) -> bool {
        !rules.selects_by_kind() && self.list.is_empty()
    }
}

/// How the kernel side is to follow `watched`.
fn target_of(rules: &RuleSet, watched: &WatchedProcess) -> Target {
    let rule = rules.get(watched.rule());
    Target {
        rule: watched.rule(),
        limit: watched.limit(),
        warn: rule.warn_level(watched.limit()),
        signal: rule.signal.number() as u32,
        profile_from: rule.growth_from(watched.limit()),
        by_name: !watched.is_pinned(),
        count_swap: rule.count.swap(),
        grouped: rule.group.is_some(),
        waypoints: rule.leak.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::FakeKernel;
    use crate::matcher::{MatchMode, Matcher};
    use crate::rules::{Rule, Selector};
    use crate::system::procfs::monotonic_ns;
    use crate::testing::Sleeper;
    use crate::units::SizeSpec;

    /// Rules watching processes named `name`.
    fn rules(name: &str) -> RuleSet {
        let matcher = Matcher::new(MatchMode::Exact, name).unwrap();
        let rule = Rule::new("test", Selector::name(matcher), SizeSpec::Bytes(1 << 40));
        RuleSet::new(vec![rule]).unwrap()
    }

    /// Nothing watched yet, followed on `kernel`.
    fn watching(kernel: &FakeKernel) -> Watch {
        Watch::new(16, Box::new(kernel.clone()), false).unwrap()
    }

    #[test]
    fn a_process_admitted_is_followed_and_its_end_forgets_it_on_both_sides() {
        let kernel = FakeKernel::default();
        let sleeper = Sleeper::start();
        let rules = rules(sleeper.name());
        let mut watching = watching(&kernel);
        let pid = sleeper.pid();
        let before_admission = monotonic_ns();
        assert_eq!(
            watching.discover(&rules, pid, Instant::now()),
            Discovered::Watched
        );
        assert!(watching.list().get(pid).is_some());
        assert_eq!(kernel.told().last().unwrap(), &format!("follow {pid}"));
        // An end reported from before it was admitted is another process's, with its PID.
        watching.exited(pid, before_admission);
        assert!(watching.list().get(pid).is_some());
        watching.exited(pid, monotonic_ns());
        assert!(watching.list().get(pid).is_none());
        assert_eq!(kernel.told().last().unwrap(), &format!("forget {pid}"));
    }

    #[test]
    fn a_process_no_rule_selects_is_never_followed() {
        let kernel = FakeKernel::default();
        let rules = rules("not-sleep");
        let mut watching = watching(&kernel);
        let sleeper = Sleeper::start();
        let pid = sleeper.pid();
        assert_eq!(
            watching.discover(&rules, pid, Instant::now()),
            Discovered::NotWatched
        );
        assert!(watching.list().is_empty());
        assert!(!kernel.told().iter().any(|t| t.starts_with("follow")));
    }

    #[test]
    fn a_process_the_kernel_side_has_no_room_for_is_not_watched_either() {
        let kernel = FakeKernel::full();
        let sleeper = Sleeper::start();
        let rules = rules(sleeper.name());
        let mut watching = watching(&kernel);
        assert_eq!(
            watching.discover(&rules, sleeper.pid(), Instant::now()),
            Discovered::Skipped(SkipReason::Full(16))
        );
        assert!(
            watching.list().is_empty(),
            "no record the kernel side lacks"
        );
    }

    #[test]
    fn a_scan_forgets_on_both_sides_what_has_gone() {
        let kernel = FakeKernel::default();
        let mut sleeper = Sleeper::start();
        let rules = rules(sleeper.name());
        let mut watching = watching(&kernel);
        let pid = sleeper.pid();
        watching.scan(&rules, Instant::now()).unwrap();
        assert!(watching.list().get(pid).is_some());
        assert!(kernel.told().contains(&format!("follow {pid}")));
        sleeper.end();
        watching.scan(&rules, Instant::now()).unwrap();
        assert!(watching.list().get(pid).is_none());
        assert_eq!(kernel.told().last().unwrap(), &format!("forget {pid}"));
    }
}
