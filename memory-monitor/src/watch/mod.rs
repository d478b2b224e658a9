//! The watch state, and its one owner: which processes are watched, under which rule and at
//! which limit, in userspace's list and on the kernel side alike. Every process is admitted,
//! looked at again and forgotten here, on both sides at once, so the two can never drift: a
//! process the list no longer holds is never counted by the kernel side's pre-filter, and
//! one the kernel side follows is always in the list.

pub mod process;
pub mod scan;

use std::io;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::act::profile::growth::RawStacks;
use crate::kernel::load::{KernelWatch, Target};
use crate::rules::RuleSet;
use crate::system::inotify::Changes;
use crate::system::procfs::{ProcRoot, ResidentParts};
use crate::watch::process::{AdmitError, Watched, Watchlist};
use crate::watch::scan::{ScanReport, Scanner, SkipReason};

/// What a check asks of the kernel side about one process (eBPF mode).
pub trait KernelLink {
    /// Asks for its next report, not before `after` from now (call before the deciding read).
    fn rearm(&mut self, pid: i32, after: Duration);
    /// Withdraws that request (it turned out to be over the limit).
    fn cancel_rearm(&mut self, pid: i32);
    /// With `--kernel-signal`, claims its breach's first signal: false when the kernel side
    /// sent it first.
    fn claim_signal(&mut self, pid: i32) -> bool;
    /// Its breach ended: the next one may be signalled again.
    fn release_claim(&mut self, pid: i32);
    /// The growth profile's stacks sampled for it, taken.
    fn take_growth(&mut self, pid: i32) -> RawStacks;
    /// Its exact RSS in bytes, by the kernel side's own reading; `None` when it cannot tell.
    fn exact_rss(&mut self, pid: i32) -> Option<u64>;
}

/// The kernel side as the watch state's owner uses it: what to follow, and under which rules.
pub trait KernelSide: KernelLink {
    /// Follows `pid` from its exact resident split, as `target` says; an error when the
    /// kernel side's table is full.
    fn watch(&mut self, pid: i32, parts: ResidentParts, target: Target) -> io::Result<()>;
    /// Stops following `pid` (nothing if it was not followed).
    fn forget(&mut self, pid: i32);
    /// Applies `rules` to processes that exec or are renamed from now on.
    fn set_rules(&mut self, rules: &RuleSet) -> io::Result<()>;
    /// Whether growth profiles can be taken (their maps are made at start-up).
    fn can_profile_growth(&self) -> bool;
    /// Whether swap can count (followed when a rule at start-up counted it).
    fn can_count_swap(&self) -> bool;
}

impl KernelLink for KernelWatch {
    fn rearm(&mut self, pid: i32, after: Duration) {
        KernelWatch::rearm(self, pid, after);
    }
    fn cancel_rearm(&mut self, pid: i32) {
        KernelWatch::cancel_rearm(self, pid);
    }
    fn claim_signal(&mut self, pid: i32) -> bool {
        KernelWatch::claim_signal(self, pid)
    }
    fn release_claim(&mut self, pid: i32) {
        KernelWatch::release_claim(self, pid);
    }
    fn take_growth(&mut self, pid: i32) -> RawStacks {
        KernelWatch::take_growth(self, pid)
    }
    fn exact_rss(&mut self, pid: i32) -> Option<u64> {
        KernelWatch::exact_rss(self, pid)
    }
}

impl KernelSide for KernelWatch {
    fn watch(&mut self, pid: i32, parts: ResidentParts, target: Target) -> io::Result<()> {
        KernelWatch::watch(self, pid, parts, target)
    }
    fn forget(&mut self, pid: i32) {
        KernelWatch::forget(self, pid);
    }
    fn set_rules(&mut self, rules: &RuleSet) -> io::Result<()> {
        KernelWatch::set_rules(self, rules)
    }
    fn can_profile_growth(&self) -> bool {
        KernelWatch::can_profile_growth(self)
    }
    fn can_count_swap(&self) -> bool {
        KernelWatch::can_count_swap(self)
    }
}

/// What came of looking at a process the kernel side reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovered {
    /// It is watched (admitted, or looked at again), and followed on the kernel side.
    Watched,
    /// It is not one to watch (any more); forgotten if it was.
    NotWatched,
    /// It is one to watch but cannot be: no room, or no descriptor.
    Skipped(SkipReason),
}

/// The watched processes and the rules in force, on both sides.
pub struct Watching {
    rules: RuleSet,
    scanner: Scanner,
    list: Watchlist,
    kernel: Option<Box<dyn KernelSide>>,
    /// `--max-processes`, for the kernel side's table being full.
    capacity: usize,
}

impl std::fmt::Debug for Watching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watching")
            .field("watched", &self.list.len())
            .field("kernel_side", &self.kernel.is_some())
            .finish_non_exhaustive()
    }
}

impl Watching {
    /// Nothing watched yet under `rules`, with room for `capacity` processes; followed on
    /// `kernel` too when there is one.
    pub fn new(
        rules: RuleSet,
        capacity: usize,
        kernel: Option<Box<dyn KernelSide>>,
    ) -> io::Result<Watching> {
        // Poll mode reads every process every cycle and keeps `statm` open; eBPF mode reads one
        // on a kernel report, and holding one descriptor per process instead of two doubles
        // how many it can watch under the same open-files limit.
        let hold_statm = kernel.is_none();
        Ok(Watching {
            rules,
            scanner: Scanner::new(hold_statm)?,
            list: Watchlist::with_capacity(capacity),
            kernel,
            capacity,
        })
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The processes watched.
    pub fn list(&self) -> &Watchlist {
        &self.list
    }

    /// Whether a kernel side follows them.
    pub fn is_event_driven(&self) -> bool {
        self.kernel.is_some()
    }

    /// Whether growth profiles can be taken (eBPF mode, maps made at start-up).
    pub fn can_profile_growth(&self) -> bool {
        self.kernel.as_ref().is_some_and(|k| k.can_profile_growth())
    }

    /// Whether the kernel side follows swap (eBPF mode: when a rule at start-up counted it).
    pub fn can_count_swap(&self) -> bool {
        self.kernel.as_ref().is_some_and(|k| k.can_count_swap())
    }

    /// Brings the watch up to date with `/proc` at `now`: admits new matches, looks again at
    /// those renamed or moved, forgets the ones gone; and (eBPF mode) follows every watched
    /// process on the kernel side afresh from its exact sizes.
    pub fn scan(&mut self, now: Instant) -> io::Result<ScanReport> {
        let Watching {
            rules,
            scanner,
            list,
            kernel,
            ..
        } = self;
        let report = scanner.scan(rules, list, now, |gone| {
            tracing::debug!(pid = gone.pid(), name = %gone.comm(), "no longer watched (exited or renamed)");
            if let Some(kernel) = kernel.as_mut() {
                kernel.forget(gone.pid());
            }
        })?;
        if let Some(kernel) = self.kernel.as_mut() {
            for watched in self.list.iter() {
                let parts = self.scanner.resident_parts(watched.pid());
                let _ = kernel.watch(watched.pid(), parts, target_of(&self.rules, watched));
            }
        }
        Ok(report)
    }

    /// A process the kernel side found or asks about (it exec'd, forked, renamed itself or
    /// moved to another cgroup): decides under the rules in force whether and how to watch
    /// it, and has the kernel side follow it from its exact sizes. A process already watched
    /// is looked at again and keeps its breach episode (see [`Watched::refresh`]).
    pub fn discover(&mut self, pid: i32, now: Instant) -> Discovered {
        let alive = self.list.get(pid).is_some_and(|w| !w.has_exited());
        if alive {
            let (scanner, rules) = (&mut self.scanner, &self.rules);
            let refreshed = self
                .list
                .update(pid, |watched| scanner.refresh(rules, watched, now, &Some));
            return match refreshed {
                Some(Ok(())) => self.follow(pid),
                Some(Err(AdmitError::Exited)) => {
                    self.forget(pid);
                    tracing::debug!(pid, "exited");
                    Discovered::NotWatched
                }
                _ => self.unwatch(pid),
            };
        }
        // A record left by a process that has exited: its PID now names another.
        self.forget(pid);
        let watched = match self.scanner.open(&self.rules, pid) {
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
        self.follow(pid)
    }

    /// Has the kernel side follow watched process `pid` as its rule says, from its exact sizes.
    fn follow(&mut self, pid: i32) -> Discovered {
        let (Some(kernel), Some(watched)) = (self.kernel.as_mut(), self.list.get(pid)) else {
            return Discovered::Watched;
        };
        let parts = self.scanner.resident_parts(pid);
        if kernel
            .watch(pid, parts, target_of(&self.rules, watched))
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
    pub fn exited(&mut self, pid: i32, time_ns: u64) {
        if self
            .list
            .get(pid)
            .is_some_and(|watched| watched.was_watched_at(time_ns))
        {
            self.forget(pid);
            tracing::debug!(pid, "exited");
        }
    }

    /// Forgets `pid` on both sides.
    pub fn forget(&mut self, pid: i32) {
        self.list.remove(pid);
        if let Some(kernel) = self.kernel.as_mut() {
            kernel.forget(pid);
        }
    }

    /// Keeps `pid`'s `statm` open from now on: near its limit, it will be read again soon.
    pub fn hold_statm(&mut self, pid: i32) {
        if let Some(watched) = self.list.get_mut(pid) {
            watched.hold_statm(self.scanner.proc());
        }
    }

    /// Back under its limit: `pid`'s `statm` is opened for each read again, and no report of
    /// it is held back any more.
    pub fn release_statm(&mut self, pid: i32) {
        if let Some(watched) = self.list.get_mut(pid) {
            watched.release_statm();
            watched.recheck = None;
        }
    }

    /// Visits the watched processes for `check` (which gets the rules, `/proc` and the kernel
    /// side too), forgetting on both sides those for which it returns false.
    pub fn retain(
        &mut self,
        mut check: impl FnMut(&mut Watched, &RuleSet, &ProcRoot, Option<&mut dyn KernelLink>) -> bool,
    ) {
        self.retain_with(|watched, rules, scanner, kernel| {
            let link = kernel.map(|k| k as &mut dyn KernelLink);
            check(watched, rules, scanner.proc(), link)
        });
    }

    /// Visits every record with what looking at it needs (the rules, the scanner, the kernel
    /// side), forgetting on both sides those for which `keep` returns false.
    fn retain_with(
        &mut self,
        mut keep: impl FnMut(
            &mut Watched,
            &RuleSet,
            &mut Scanner,
            Option<&mut (dyn KernelSide + 'static)>,
        ) -> bool,
    ) {
        let Watching {
            rules,
            scanner,
            list,
            kernel,
            ..
        } = self;
        list.retain_mut(|watched| {
            if keep(watched, rules, scanner, kernel.as_deref_mut()) {
                return true;
            }
            if let Some(kernel) = kernel.as_mut() {
                kernel.forget(watched.pid());
            }
            false
        });
    }

    /// [`Watching::retain`] for the one process `pid`; whether it is still watched after.
    pub fn retain_one(
        &mut self,
        pid: i32,
        check: impl FnOnce(&mut Watched, &RuleSet, &ProcRoot, Option<&mut dyn KernelLink>) -> bool,
    ) -> bool {
        let Watching {
            rules,
            scanner,
            list,
            kernel,
            ..
        } = self;
        let Some(watched) = list.get_mut(pid) else {
            return false;
        };
        let link = kernel.as_deref_mut().map(|k| k as &mut dyn KernelLink);
        if check(watched, rules, scanner.proc(), link) {
            return true;
        }
        self.forget(pid);
        false
    }

    /// Applies `rules` from now on: every watched process falls under the rule that selects
    /// it now, with the limit it gives (its breach episode carries on; `renumbered` says where
    /// each rule it was under is among the new ones); those no rule selects are forgotten.
    /// Refused by the kernel side, nothing changes.
    pub fn set_rules(
        &mut self,
        rules: RuleSet,
        now: Instant,
        renumbered: &dyn Fn(usize) -> Option<usize>,
    ) -> io::Result<()> {
        if let Some(kernel) = self.kernel.as_mut() {
            kernel.set_rules(&rules)?;
        }
        self.rules = rules;
        self.retain_with(|watched, rules, scanner, _| {
            scanner.refresh(rules, watched, now, renumbered).is_ok()
        });
        self.list.recount();
        Ok(())
    }

    /// Follows the rules' cgroups, then looks whether they exist (in this order, so that one
    /// made in between is seen either way), until what is followed is what exists; returns
    /// the rules whose cgroup appeared (`true`) or went (`false`). The kernel side opens them
    /// again (one made again under the same name is another cgroup).
    pub fn recheck_cgroups(&mut self, changes: &mut Changes) -> io::Result<Vec<(usize, bool)>> {
        let mut all = Vec::new();
        // Each round follows one level deeper (a cgroup's parent made, then the cgroup).
        for _ in 0..16 {
            changes.follow_cgroups(self.rules.cgroups());
            let changed = self.rules.recheck_cgroups();
            if changed.is_empty() {
                break;
            }
            all.extend(changed);
        }
        if let Some(kernel) = self.kernel.as_mut() {
            kernel.set_rules(&self.rules)?;
        }
        Ok(all)
    }

    /// Follows the cgroup limit files of watched processes (`only` one, or all) whose limit is
    /// a share of their cgroup's and whose files are not followed yet.
    pub fn follow_limits(&mut self, changes: &mut Changes, only: Option<i32>) {
        let (rules, proc) = (&self.rules, self.scanner.proc());
        if !rules.limits_per_process() {
            return;
        }
        let mut follow = |watched: &mut Watched| {
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

    /// A followed cgroup limit was written: works out again the limits given as a share of
    /// one, has the kernel side follow the processes whose limit changed at their new one,
    /// and marks them to be judged at `now`.
    pub fn limits_changed(&mut self, now: Instant) {
        self.retain_with(|watched, rules, scanner, kernel| {
            let rule = watched.rule();
            if !rules.get(rule).limit.is_per_process() {
                return true;
            }
            let limit = rules.limit_of(rule, scanner.proc(), watched.pid());
            if limit != watched.limit() {
                tracing::debug!(event = "limit_changed", pid = watched.pid(), name = %watched.comm(), limit = %crate::units::Bytes(limit), "limit changed");
                watched.set_limit(limit);
                watched.recheck = Some(now);
                if let Some(kernel) = kernel {
                    let parts = scanner.resident_parts(watched.pid());
                    let _ = kernel.watch(watched.pid(), parts, target_of(rules, watched));
                }
            }
            true
        });
    }

    /// Whether it can never watch anything again: only `--pid` processes were selected, and
    /// they are gone.
    pub fn nothing_left(&self) -> bool {
        !self.rules.selects_by_kind() && self.list.is_empty()
    }
}

/// How the kernel side is to follow `watched`.
fn target_of(rules: &RuleSet, watched: &Watched) -> Target {
    let rule = rules.get(watched.rule());
    Target {
        rule: watched.rule(),
        limit: watched.limit(),
        signal: rule.signal.number() as u32,
        profile_from: rule
            .profile
            .as_ref()
            .map(|profile| profile.growth_from(watched.limit())),
        by_name: !watched.is_pinned(),
        count_swap: rule.count.swap(),
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

    /// Watching processes named `name`, followed on `kernel`.
    fn watching(name: &str, kernel: &FakeKernel) -> Watching {
        let matcher = Matcher::new(MatchMode::Exact, name).unwrap();
        let rule = Rule::new("test", Selector::name(matcher), SizeSpec::Bytes(1 << 40));
        let rules = RuleSet::new(vec![rule]).unwrap();
        Watching::new(rules, 16, Some(Box::new(kernel.clone()))).unwrap()
    }

    #[test]
    fn a_process_admitted_is_followed_and_its_end_forgets_it_on_both_sides() {
        let kernel = FakeKernel::default();
        let sleeper = Sleeper::start();
        let mut watching = watching(sleeper.name(), &kernel);
        let pid = sleeper.pid();
        let before_admission = monotonic_ns();
        assert_eq!(watching.discover(pid, Instant::now()), Discovered::Watched);
        assert!(watching.list().get(pid).is_some());
        assert_eq!(kernel.told().last().unwrap(), &format!("watch {pid}"));
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
        let mut watching = watching("not-sleep", &kernel);
        let sleeper = Sleeper::start();
        let pid = sleeper.pid();
        assert_eq!(
            watching.discover(pid, Instant::now()),
            Discovered::NotWatched
        );
        assert!(watching.list().is_empty());
        assert!(!kernel.told().iter().any(|t| t.starts_with("watch")));
    }

    #[test]
    fn a_process_the_kernel_side_has_no_room_for_is_not_watched_either() {
        let kernel = FakeKernel::full();
        let sleeper = Sleeper::start();
        let mut watching = watching(sleeper.name(), &kernel);
        assert_eq!(
            watching.discover(sleeper.pid(), Instant::now()),
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
        let mut watching = watching(sleeper.name(), &kernel);
        let pid = sleeper.pid();
        watching.scan(Instant::now()).unwrap();
        assert!(watching.list().get(pid).is_some());
        assert!(kernel.told().contains(&format!("watch {pid}")));
        sleeper.end();
        watching.scan(Instant::now()).unwrap();
        assert!(watching.list().get(pid).is_none());
        assert_eq!(kernel.told().last().unwrap(), &format!("forget {pid}"));
    }
}
