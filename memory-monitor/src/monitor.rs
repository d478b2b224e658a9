//! The monitor: a source says which processes exist and when to look, the policy says what is
//! due, and actions carry it out.
//!
//! In poll mode a timer drives everything. In eBPF mode kernel events do: a crossing report is
//! confirmed against the exact RSS, discovery events admit or drop processes, and a timer runs
//! only while a repeat or a kill is pending, so an idle monitor never wakes up. SIGHUP reads the
//! rules again.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memory_monitor_ebpf::{Event, event_kind};
use rustix::io::Errno;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;

use crate::Error;
use rustix::thread::CapabilitySet;

use crate::accounting::Accounting;
use crate::action::{self, Delivery, Dispatch};
use crate::changes::Changes;
use crate::config::{Config, Mode};
use crate::hook::{Breach, ExecHook};
use crate::metrics::{Metrics, RuleMetrics};
use crate::policy::{Policy, Verdict};
use crate::procfs::{ProcRoot, page_size};
use crate::profile::{ProfileCounts, Profiler};
use crate::rules::{Rule, RuleSet};
use crate::service::Service;
use crate::signal::Signal;
use crate::sink;
use crate::source::ebpf::{KernelSettings, KernelWatch, Target};
use crate::source::poll::{Exclusions, Scanner, SkipReason};
use crate::timer::DeadlineTimer;
use crate::units::{Bytes, Period};
use crate::watch::{AdmitError, Watched, Watchlist};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by SIGINT or SIGTERM.
    Stopped,
    /// Only `--pid` processes were watched and all of them exited.
    NothingLeft,
    /// `--once` finished its pass.
    Checked {
        /// Whether a process was over its limit.
        any_over: bool,
    },
}

/// Counts from one look at every watched process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// Processes watched after the look.
    pub watched: usize,
    /// Processes over the limit.
    pub over: usize,
    /// Signals due (sent, or not sent in a dry run).
    pub signals: usize,
    /// Matching processes that could not be watched.
    pub skipped: usize,
}

/// Events taken from the ring buffer per batch; records are reused, never allocated.
const EVENT_BATCH: usize = 256;

/// Batches handled before the loop serves its timers, watchdog and signals again.
const EVENT_BATCHES_PER_TURN: usize = 16;

/// How often a sustained loss of kernel events is logged (each loss is counted in metrics).
const LOST_EVENTS_SAID_EVERY: Duration = Duration::from_secs(60);

/// While kernel events keep coming faster than they are handled, the re-check that a loss
/// calls for is made at most this often.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// A changed rules file is read once it has not changed for this long (`--watch-config`): a
/// file written in several steps is read once, whole.
const RULES_FILE_SETTLE: Duration = Duration::from_millis(300);

/// eBPF mode: after a report whose exact figure is still under the limit, the kernel side
/// holds back the next report about that process this long, and userspace looks again itself
/// when it ends. A process moving through the counters' margin of error is then reported about
/// once per gap, not on every page it touches, and still never missed.
const REPORT_GAP: Duration = Duration::from_micros(250);

/// A memory monitor built from a [`Config`].
#[derive(Debug)]
pub struct Monitor {
    config: Config,
    list: Watchlist,
    scanner: Scanner,
    page_size: u64,
    /// The eBPF source, when in use.
    kernel: Option<KernelWatch>,
    /// Why the poll source is in use, when it is.
    poll_reason: Option<String>,
    batch: Box<[Event]>,
    /// No repeat or kill falls due before this (eBPF mode); may be early, never late.
    next_deadline: Option<Instant>,
    /// Whether the one warning about skipped processes has been given.
    warned_skip: bool,
    /// Kernel events handled so far.
    events: u64,
    /// Kernel events lost so far.
    lost: u64,
    /// When lost events were last logged.
    lost_said: Option<Instant>,
    /// Whether lost events call for a re-check of every process, and when the last was made.
    resync_due: bool,
    resynced: Option<Instant>,
    /// When to read the changed rules file (`--watch-config`), once it has settled.
    reload_at: Option<Instant>,
    /// What each rule needs besides itself: its profiler and metrics (indexed like the rules).
    actions: RuleActions,
    /// Runs hooks (`exec`) on breaches; started when a rule has one.
    hook: Option<ExecHook>,
    /// Follows cgroup limits, rules' cgroups and the rules file (see [`crate::changes`]).
    changes: Option<Changes>,
    /// Hardening the host did not allow, said after the start line.
    hardening: Vec<Note>,
    metrics: Arc<Metrics>,
}

/// Per rule, in the rules' order: the profiler (when the rule profiles) and the metrics.
#[derive(Debug, Default)]
struct RuleActions {
    profilers: Vec<Option<Profiler>>,
    metrics: Vec<RuleMetrics>,
}

impl RuleActions {
    /// Starts what `rules` need: a profiler per profiling rule, and their metrics (to be put
    /// in force, or retired, by the caller). The profile destinations are opened first: one
    /// that cannot be used refuses the rules before anything else is made for them.
    fn start(rules: &RuleSet, metrics: &Metrics) -> Result<RuleActions, Error> {
        let writers = rules
            .rules()
            .iter()
            .map(|rule| {
                rule.profile
                    .as_ref()
                    .map(|settings| {
                        sink::open(&settings.sink).map(|writer| (writer, settings.budget))
                    })
                    .transpose()
                    .map_err(Error::ProfileWriter)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let rule_metrics = metrics.for_rules(rules);
        let profilers = writers
            .into_iter()
            .zip(&rule_metrics)
            .map(|(writer, counts)| {
                let Some((writer, budget)) = writer else {
                    return Ok(None);
                };
                let counts = ProfileCounts {
                    written: counts.profiles_written.clone(),
                    failed: counts.profiles_failed.clone(),
                };
                Profiler::start(writer, budget, counts)
                    .map(Some)
                    .map_err(|e| Error::ProfileWriter(e.into()))
            })
            .collect::<Result<_, Error>>()?;
        Ok(RuleActions {
            profilers,
            metrics: rule_metrics,
        })
    }
}

impl Monitor {
    /// Prepares a monitor: chooses the source (loading the BPF programs when it can), opens
    /// `/proc` and allocates everything the loop will need. Outside `--mode poll` and
    /// `--once` it must be called inside a tokio runtime.
    pub fn new(config: Config) -> Result<Monitor, Error> {
        crate::footprint::reserve_descriptors(config.max_processes);
        let (kernel, poll_reason) = choose_source(&config)?;
        crate::accounting::count_cpus();
        // With the programs attached and before any thread starts (threads inherit them).
        // Some kernels check CAP_BPF on every map access, not only when programs load.
        let keep_for_maps = kernel
            .as_ref()
            .map_or(CapabilitySet::empty(), KernelWatch::capabilities_for_maps);
        let hardening = config
            .harden
            .map(|hardening| harden_start(hardening, keep_for_maps))
            .unwrap_or_default();
        let metrics = Metrics::new();
        metrics.set_mode(kernel.is_some());
        let actions = RuleActions::start(&config.rules, &metrics)?;
        metrics.put_in_force(&config.rules, &[]);
        let hook = start_hook(&config.rules)?;
        if let Some(address) = config.metrics_addr {
            let bound = crate::metrics::serve(address, Arc::clone(&metrics))
                .map_err(|e| Error::Metrics(address, e))?;
            tracing::info!(event = "metrics", address = %bound, "serving metrics on http://{bound}/metrics");
        }
        // Poll mode reads every process every cycle and keeps `statm` open; eBPF mode reads one
        // on a kernel report, and holding one descriptor per process instead of two doubles
        // how many it can watch under the same open-files limit.
        let hold_statm = kernel.is_none();
        let scanner = Scanner::new(config.rules.clone(), hold_statm).map_err(Error::Proc)?;
        let changes = follow_changes(&config);
        Ok(Monitor {
            list: Watchlist::with_capacity(config.max_processes),
            scanner,
            page_size: page_size(),
            kernel,
            poll_reason,
            batch: vec![Event::default(); EVENT_BATCH].into_boxed_slice(),
            next_deadline: None,
            warned_skip: false,
            events: 0,
            lost: 0,
            lost_said: None,
            resync_due: false,
            resynced: None,
            reload_at: None,
            actions,
            hook,
            changes,
            hardening,
            metrics,
            config,
        })
    }

    /// The metrics (what `--metrics-addr` serves).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the eBPF source is in use.
    pub fn is_event_driven(&self) -> bool {
        self.kernel.is_some()
    }

    /// Kernel events handled so far (eBPF mode).
    pub fn events_handled(&self) -> u64 {
        self.events
    }

    /// The processes watched now.
    pub fn watched(&self) -> &Watchlist {
        &self.list
    }

    /// How this kernel counts RSS, as the kernel side found from BTF; not known when polling.
    fn accounting(&self) -> Accounting {
        self.kernel
            .as_ref()
            .map_or(Accounting::Unknown, KernelWatch::accounting)
    }

    fn dispatch(&self) -> Dispatch {
        if self.config.dry_run {
            Dispatch::DryRun
        } else {
            Dispatch::Send
        }
    }

    /// One poll cycle at time `now`: refresh the watch list from `/proc`, then measure every
    /// watched process and act on what is due. Allocates nothing once warmed up. In eBPF mode
    /// the same pass re-synchronises the kernel side (at start-up, and after lost events).
    pub fn cycle(&mut self, now: Instant) -> Result<CycleReport, Error> {
        let started = Instant::now();
        let Monitor {
            scanner,
            list,
            kernel,
            ..
        } = self;
        let scan = scanner
            .scan(list, now, |gone| {
                tracing::debug!(pid = gone.pid(), name = %gone.comm(), "no longer watched (exited or renamed)");
                if let Some(kernel) = kernel.as_mut() {
                    kernel.forget(gone.pid());
                }
            })
            .map_err(Error::Proc)?;
        if let Some(reason) = scan.skip_reason {
            self.warn_skipped_once(reason, scan.skipped);
        }
        self.metrics.skipped.set(scan.skipped as i64);
        if let Some(kernel) = self.kernel.as_mut() {
            for watched in self.list.iter() {
                let parts = self.scanner.resident_parts(watched.pid());
                let target = target_of(self.scanner.rules(), watched);
                let _ = kernel.watch(watched.pid(), parts, target);
            }
        }
        self.follow_limits(None);
        // Freshly seeded, the kernel side is armed: nothing to re-arm.
        let report = CycleReport {
            skipped: scan.skipped,
            ..self.check_watched(now, None, |_, _| true)
        };
        tracing::debug!(
            watched = report.watched,
            over = report.over,
            signals = report.signals,
            skipped = report.skipped,
            "checked"
        );
        self.metrics
            .poll_cycle
            .observe(started.elapsed().as_secs_f64());
        self.publish();
        Ok(report)
    }

    /// Brings the per-rule watched gauges up to date (a few atomic stores).
    fn publish(&self) {
        for (metrics, count) in self.actions.metrics.iter().zip(self.list.per_rule()) {
            metrics.watched.set(i64::from(*count));
        }
    }

    /// Checks the watched processes `due` selects, at `now`, and drops those gone (on the
    /// kernel side too). With `rearm`, the kernel side may wait to be re-armed for them.
    fn check_watched(
        &mut self,
        now: Instant,
        rearm: Option<Duration>,
        due: impl Fn(&Policy, &Watched) -> bool,
    ) -> CycleReport {
        let (dispatch, page_size) = (self.dispatch(), self.page_size);
        let accounting = self.accounting();
        let (proc, rules, actions, hook) = (
            self.scanner.proc(),
            self.scanner.rules(),
            &self.actions,
            self.hook.as_ref(),
        );
        let mut kernel = self.kernel.as_mut();
        let mut report = CycleReport::default();
        let mut next_deadline = None;
        self.list.retain_mut(|watched| {
            let policy = &policy_of(rules, watched);
            if due(policy, watched) {
                let link = kernel
                    .as_deref_mut()
                    .map(|kernel| KernelLink { kernel, rearm });
                let measure = Measure {
                    proc,
                    page_size,
                    accounting,
                    now,
                    dispatch,
                    rules,
                    actions,
                    hook,
                };
                let Some((verdict, _)) = check(policy, watched, measure, link) else {
                    if let Some(kernel) = kernel.as_deref_mut() {
                        kernel.forget(watched.pid());
                    }
                    return false;
                };
                report.signals += usize::from(verdict.signals());
            }
            report.over += usize::from(watched.episode.is_over());
            next_deadline = earliest(next_deadline, due_at(policy, watched));
            true
        });
        self.next_deadline = next_deadline;
        report.watched = self.list.len();
        report
    }

    fn warn_skipped_once(&mut self, reason: SkipReason, skipped: usize) {
        if std::mem::replace(&mut self.warned_skip, true) {
            return;
        }
        match reason {
            SkipReason::Full(capacity) => tracing::warn!(
                event = "skipped",
                skipped,
                "watching the maximum of {capacity} processes; further matches are skipped (raise --max-processes)"
            ),
            SkipReason::Open(errno) => tracing::warn!(
                event = "skipped",
                skipped,
                "cannot open matching processes ({errno}); they are skipped (raise the open-files limit?)"
            ),
        }
    }

    /// eBPF mode: takes waiting events from the kernel side, at most `EVENT_BATCHES_PER_TURN` (16)
    /// batches, and acts on them; after lost events, re-checks every process. Returns whether
    /// events may be left: then call it again once timers, the watchdog and signals have had
    /// their turn (a flood of events must not hold them up). Allocates nothing once warmed up.
    pub fn handle_events(&mut self) -> bool {
        let mut more = true;
        for _ in 0..EVENT_BATCHES_PER_TURN {
            let Some(kernel) = self.kernel.as_mut() else {
                return false;
            };
            let count = kernel.drain(&mut self.batch);
            if count == 0 {
                more = false;
                break;
            }
            for index in 0..count {
                let event = self.batch[index];
                self.on_event(&event, Instant::now());
            }
            self.events += count as u64;
            self.metrics.events.inc_by(count as u64);
        }
        if let Some(lost) = self.kernel.as_mut().and_then(KernelWatch::take_lost) {
            self.metrics
                .lost_events
                .inc_by(lost.saturating_sub(self.lost));
            self.lost = lost;
            let now = Instant::now();
            // A sustained overflow is said once a minute, with the total, not once per drain.
            if self
                .lost_said
                .is_none_or(|said| now.duration_since(said) >= LOST_EVENTS_SAID_EVERY)
            {
                self.lost_said = Some(now);
                tracing::warn!(
                    event = "lost_events",
                    lost,
                    "kernel events were lost (ring buffer full; {lost} so far); re-checking every process"
                );
            }
            self.resync_due = true;
        }
        // The re-check after a loss waits until the ring buffer is drained (what is left in
        // it is handled anyway), or comes once a second while it never is: a full look at
        // every process per turn would fall ever further behind.
        let now = Instant::now();
        if self.resync_due
            && (!more
                || self
                    .resynced
                    .is_none_or(|at| now.duration_since(at) >= RESYNC_EVERY))
        {
            self.resync_due = false;
            self.resynced = Some(now);
            let _ = self.cycle(now);
        }
        self.publish();
        more
    }

    fn on_event(&mut self, event: &Event, now: Instant) {
        let pid = event.tgid as i32;
        let kind = event_kind::name(event.kind);
        tracing::trace!(pid, kind = %kind, rss = %Bytes(event.rss), "kernel event");
        match event.kind {
            event_kind::NEAR => {
                // Near its limit it will be read again soon: keep its statm open meanwhile.
                if let Some(watched) = self.list.get_mut(pid) {
                    watched.hold_statm(self.scanner.proc());
                }
                self.confirm(pid, now, Some(REPORT_GAP));
            }
            event_kind::UNDER => {
                self.confirm(pid, now, None);
                if let Some(watched) = self.list.get_mut(pid) {
                    watched.release_statm();
                    watched.recheck = None;
                }
            }
            event_kind::KERNEL_SIGNAL => {
                let rss = self.confirm(pid, now, Some(REPORT_GAP));
                let limit = self.list.get(pid).map(Watched::limit);
                if let (Some(rss), Some(limit)) = (rss, limit)
                    && rss <= limit
                {
                    tracing::warn!(event = "kernel_signal_under_limit",
                        pid,
                        rss = %Bytes(rss),
                        limit = %Bytes(limit),
                        "the kernel signalled on its approximate count; the exact RSS is under the limit"
                    );
                }
            }
            // Whatever the kernel side concluded (under the rules it had then, which a reload
            // may have replaced since), userspace decides under the rules in force now.
            event_kind::EXEC | event_kind::RENAME | event_kind::FORK | event_kind::MIGRATE => {
                self.discover(pid, now)
            }
            // Only if it is the process that exited: a re-check since may have admitted a
            // newcomer given its PID.
            event_kind::EXIT
                if self
                    .list
                    .get(pid)
                    .is_some_and(|watched| watched.was_watched_at(event.time_ns)) =>
            {
                self.list.remove(pid);
                tracing::debug!(pid, "exited");
            }
            _ => {}
        }
    }

    /// A process the kernel side found or asks about (it exec'd, forked, renamed itself or
    /// moved to another cgroup): decide under the rules in force whether and how to watch it,
    /// (re)start the kernel side from its exact sizes, and judge it at once. A process already
    /// watched is looked at again and keeps its breach episode (see [`Watched::refresh`]).
    fn discover(&mut self, pid: i32, now: Instant) {
        if self
            .list
            .get(pid)
            .is_some_and(|watched| !watched.has_exited())
        {
            let scanner = &mut self.scanner;
            match self
                .list
                .update(pid, |watched| scanner.refresh(watched, now, &Some))
            {
                Some(Ok(())) => self.follow(pid, now),
                _ => self.unwatch(pid),
            }
            return;
        }
        // A record left by a process that has exited: its PID now names another.
        self.list.remove(pid);
        let watched = match self.scanner.open(pid) {
            Ok(watched) => watched,
            Err(error) => {
                if let AdmitError::Io(error) = error {
                    let errno = Errno::from_io_error(&error).unwrap_or(Errno::IO);
                    self.warn_skipped_once(SkipReason::Open(errno), 1);
                }
                self.unwatch(pid);
                return;
            }
        };
        tracing::debug!(pid, name = %watched.comm(), "watching");
        if let Err(full) = self.list.insert(watched) {
            self.warn_skipped_once(SkipReason::Full(full.0), 1);
            self.unwatch(pid);
            return;
        }
        self.follow(pid, now);
    }

    /// Has the kernel side follow watched process `pid` as its rule says, from its exact
    /// sizes, and judges it at once.
    fn follow(&mut self, pid: i32, now: Instant) {
        self.follow_limits(Some(pid));
        let target = self
            .list
            .get(pid)
            .map(|watched| target_of(self.scanner.rules(), watched));
        if let (Some(kernel), Some(target)) = (self.kernel.as_mut(), target)
            && kernel
                .watch(pid, self.scanner.resident_parts(pid), target)
                .is_err()
        {
            // The kernel side's table is full: a process it cannot follow is not watched.
            self.warn_skipped_once(SkipReason::Full(self.config.max_processes), 1);
            self.unwatch(pid);
            return;
        }
        self.confirm(pid, now, None);
    }

    fn unwatch(&mut self, pid: i32) {
        if let Some(gone) = self.list.remove(pid) {
            tracing::debug!(pid, name = %gone.comm(), "no longer watched");
        }
        if let Some(kernel) = self.kernel.as_mut() {
            kernel.forget(pid);
        }
    }

    /// Judges `pid` on its exact RSS after a kernel report; returns that RSS. With `rearm`,
    /// the kernel side is waiting to be told to report again (after that gap), which it is
    /// when the process is under the limit.
    fn confirm(&mut self, pid: i32, now: Instant, rearm: Option<Duration>) -> Option<u64> {
        let (dispatch, accounting) = (self.dispatch(), self.accounting());
        let Some(watched) = self.list.get_mut(pid) else {
            // Its discovery event is still on its way (or was lost): admit it now.
            self.discover(pid, now);
            return None;
        };
        let kernel = self
            .kernel
            .as_mut()
            .map(|kernel| KernelLink { kernel, rearm });
        let rules = self.scanner.rules();
        let measure = Measure {
            proc: self.scanner.proc(),
            page_size: self.page_size,
            accounting,
            now,
            dispatch,
            rules,
            actions: &self.actions,
            hook: self.hook.as_ref(),
        };
        let policy = policy_of(rules, watched);
        match check(&policy, watched, measure, kernel) {
            Some((_, rss)) => {
                self.next_deadline = earliest(self.next_deadline, due_at(&policy, watched));
                Some(rss)
            }
            None => {
                self.unwatch(pid);
                None
            }
        }
    }

    /// Follows the cgroup limit files of watched processes (`only` one, or all) whose limit is
    /// a share of their cgroup's and whose files are not followed yet.
    fn follow_limits(&mut self, only: Option<i32>) {
        let Monitor {
            changes: Some(changes),
            scanner,
            list,
            ..
        } = self
        else {
            return;
        };
        let (rules, proc) = (scanner.rules(), scanner.proc());
        if !rules.limits_per_process() {
            return;
        }
        let mut follow = |watched: &mut Watched| {
            if watched.limit_followed || !rules.get(watched.rule()).limit.is_per_process() {
                return;
            }
            let mut buf = [0u8; 4096];
            if let Ok(text) = proc.read_file(watched.pid(), "cgroup", &mut buf) {
                crate::cgroup::memory_limit(text, |file| changes.follow_limit(file));
            }
            watched.limit_followed = true;
        };
        match only {
            Some(pid) => {
                if let Some(watched) = list.get_mut(pid) {
                    follow(watched);
                }
            }
            None => list.retain_mut(|watched| {
                follow(watched);
                true
            }),
        }
    }

    /// Acts on what changed under the monitor since the last look (see [`crate::changes`]).
    fn on_changes(&mut self, now: Instant) {
        let Some(changed) = self.changes.as_mut().map(Changes::take) else {
            return;
        };
        if changed.rules_file {
            self.reload_at = Some(now + RULES_FILE_SETTLE);
        }
        if changed.cgroups {
            self.cgroups_changed(now);
        }
        if changed.limits {
            self.limits_changed(now);
        }
    }

    /// A rule's cgroup (or a directory on the way to it) was made or removed: the rules match
    /// it again, or no longer, in the kernel side too (which holds each rule's cgroup open, so a
    /// cgroup made again under the same name must be opened again).
    fn cgroups_changed(&mut self, now: Instant) {
        self.follow_cgroups();
        let _ = self.cycle(now);
    }

    /// Follows the rules' cgroups, then looks whether they exist (in this order, so that one
    /// made in between is seen either way), until what is followed is what exists; says which
    /// appeared or went, and has the kernel side open them again (one made again under the
    /// same name is another cgroup).
    fn follow_cgroups(&mut self) {
        let Some(changes) = self.changes.as_mut() else {
            return;
        };
        // Each round follows one level deeper (a cgroup's parent made, then the cgroup).
        for _ in 0..16 {
            changes.follow_cgroups(self.scanner.rules().cgroups());
            let changed = self.scanner.rules_mut().recheck_cgroups();
            if changed.is_empty() {
                break;
            }
            let rules = self.scanner.rules();
            for (index, present) in changed {
                let rule = rules.get(index);
                let cgroup = rule
                    .selector
                    .cgroup
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                match present {
                    true => {
                        tracing::info!(event = "cgroup_appeared", rule = %rule.name, "cgroup {cgroup} exists now; its processes are watched")
                    }
                    false => {
                        tracing::warn!(event = "cgroup_missing", rule = %rule.name, "cgroup {cgroup} was removed; the rule matches nothing until it exists again")
                    }
                }
            }
        }
        if let Some(kernel) = self.kernel.as_mut()
            && let Err(error) = kernel.set_rules(self.scanner.rules())
        {
            tracing::warn!(
                event = "cgroup_missing",
                "the kernel side cannot follow the rules' cgroups: {error}"
            );
        }
    }

    /// A followed cgroup limit was written: limits given as a share of one are worked out
    /// again, and the processes whose limit changed are followed (on the kernel side) and
    /// judged under their new one at once.
    fn limits_changed(&mut self, now: Instant) {
        let Monitor {
            scanner,
            list,
            kernel,
            ..
        } = self;
        let (rules, proc) = (scanner.rules(), scanner.proc());
        list.retain_mut(|watched| {
            let rule = watched.rule();
            if !rules.get(rule).limit.is_per_process() {
                return true;
            }
            let limit = rules.limit_of(rule, proc, watched.pid());
            if limit != watched.limit() {
                tracing::debug!(event = "limit_changed", pid = watched.pid(), name = %watched.comm(), limit = %Bytes(limit), "limit changed");
                watched.set_limit(limit);
                watched.recheck = Some(now);
                if let Some(kernel) = kernel.as_mut() {
                    let parts = scanner.resident_parts(watched.pid());
                    let _ = kernel.watch(watched.pid(), parts, target_of(rules, watched));
                }
            }
            true
        });
        self.check_watched(now, None, |_, watched| {
            watched.recheck.is_some_and(|due| due <= now)
        });
    }

    /// eBPF mode: checks the processes whose repeat, kill or held-back report is due at `now`.
    pub fn handle_due(&mut self, now: Instant) {
        self.check_watched(now, Some(Duration::ZERO), |policy, watched| {
            due_at(policy, watched).is_some_and(|due| due <= now)
        });
    }

    /// When the next repeat or kill may fall due (eBPF mode); `None`: nothing pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// A rule's limit and what it does on breach, for the log.
    fn summary(&self, index: usize) -> (String, String) {
        let rules = self.scanner.rules();
        let rule = rules.get(index);
        let limit = match rules.fixed_limit(index) {
            Some(limit) => Bytes(limit).to_string(),
            None => rule.limit.to_string(),
        };
        let policy = Policy {
            limit: 0,
            signal: rule.signal,
            repeat: rule.repeat,
            kill_after: rule.kill_after,
        };
        let mut action =
            action::describe(&policy, self.config.kernel_signal && self.is_event_driven());
        if let Some(profile) = &rule.profile {
            action = format!("profile to {}, then {action}", profile.sink);
        }
        if let Some(exec) = &rule.exec {
            action = format!("{action}; on breach run '{}'", exec.command);
        }
        (limit, action)
    }

    fn log_start(&self) {
        let rules = self.scanner.rules();
        let target = match rules.rules() {
            [only] => only.selector.to_string(),
            all => format!("with {} rules", all.len()),
        };
        let dry_run = if self.config.dry_run {
            " (dry run: nothing will be sent)"
        } else {
            ""
        };
        let (limit, action) = match rules.rules().len() {
            1 => self.summary(0),
            _ => (String::new(), String::new()),
        };
        match (&self.kernel, &self.poll_reason) {
            (Some(kernel), _) => tracing::info!(event = "start",
                limit = %limit,
                action = %action,
                mode = %"ebpf",
                attach = %kernel.attach(),
                decides = %kernel.accounting().deciding_figure(),
                margin = %kernel.margin(),
                "watching {target}{dry_run}"
            ),
            (None, reason) => tracing::info!(event = "start",
                limit = %limit,
                action = %action,
                mode = %"poll",
                interval = %Period(self.config.interval),
                decides = %self.accounting().deciding_figure(),
                why = reason.as_deref().unwrap_or_default(),
                "watching {target}{dry_run}"
            ),
        }
        for note in &self.hardening {
            note.say();
        }
        self.log_rules();
    }

    /// One line per rule when there are several, and a warning for each rule whose cgroup
    /// does not exist.
    fn log_rules(&self) {
        let rules = self.scanner.rules();
        if rules.rules().len() > 1 {
            for (index, rule) in rules.rules().iter().enumerate() {
                let (limit, action) = self.summary(index);
                tracing::info!(event = "rule", rule = %rule.name, limit = %limit, action = %action, "rule: {}", rule.selector);
            }
        }
        for rule in rules.missing_cgroups() {
            tracing::warn!(event = "cgroup_missing",
                rule = %rule.name,
                "cgroup {} does not exist (yet); the rule matches nothing until it does",
                rule.selector.cgroup.as_ref().map(ToString::to_string).unwrap_or_default()
            );
        }
    }

    /// SIGHUP (or, with `--watch-config`, a changed rules file): tells systemd a reload is
    /// under way, reloads, and says it is ready again (with what is watched now) whatever came
    /// of it.
    fn reload(&mut self, now: Instant, service: &Service) {
        service.reloading();
        self.reload_rules(now);
        service.ready(self.list.len(), self.is_event_driven());
    }

    /// Reads the rules again and applies them to every watched process, atomically: a rules
    /// file that cannot be used leaves the rules in force as they are.
    fn reload_rules(&mut self, now: Instant) {
        let Some(file) = self.config.source.file.clone() else {
            tracing::warn!(
                event = "reload_failed",
                "SIGHUP: there is no rules file (--config) to read again"
            );
            return;
        };
        let prepared = self
            .config
            .source
            .load()
            .map_err(|e| e.to_string())
            .and_then(|rules| {
                RuleActions::start(&rules, &self.metrics)
                    .map(|actions| (rules, actions))
                    .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
            });
        let (rules, actions) = match prepared {
            Ok(prepared) => prepared,
            Err(why) => {
                self.metrics.reloaded(false);
                tracing::error!(event = "reload_failed", file = %file.display(), "rules not reloaded (the rules in force stay): {why}");
                return;
            }
        };
        if let Some(kernel) = self.kernel.as_mut() {
            if let Err(error) = kernel.set_rules(&rules) {
                self.metrics.retire(&actions.metrics, &self.config.rules);
                self.metrics.reloaded(false);
                tracing::error!(
                    event = "reload_failed",
                    "rules not reloaded: the kernel side refused them: {error}"
                );
                return;
            }
            if !kernel.can_profile_growth() && rules.rules().iter().any(|r| r.profile.is_some()) {
                tracing::warn!(
                    event = "growth_profile_needs_restart",
                    "growth profiles need a restart (their kernel maps are made at start-up); mapping profiles are taken meanwhile"
                );
            }
        }
        if self.hook.is_none() {
            match start_hook(&rules) {
                Ok(hook) => self.hook = hook,
                Err(error) => {
                    tracing::error!(
                        event = "exec_failed",
                        "exec hooks cannot run: {:#}",
                        anyhow::Error::new(error)
                    )
                }
            }
        }
        self.metrics.put_in_force(&rules, &self.actions.metrics);
        // Where each rule in force is among the new ones, by name.
        let moved: Vec<Option<usize>> = self
            .scanner
            .rules()
            .rules()
            .iter()
            .map(|old| rules.rules().iter().position(|new| new.name == old.name))
            .collect();
        self.config.rules = rules.clone();
        self.scanner.set_rules(rules);
        self.actions = actions;
        // Every watched process falls under the rule that selects it now (by its name now),
        // with the limit it gives; its breach episode carries on. A rule is the same rule by
        // its name, wherever it is in the file now.
        let (scanner, kernel) = (&mut self.scanner, &mut self.kernel);
        let renumbered = |old: usize| moved.get(old).copied().flatten();
        self.list.retain_mut(|watched| {
            if scanner.refresh(watched, now, &renumbered).is_ok() {
                return true;
            }
            if let Some(kernel) = kernel.as_mut() {
                kernel.forget(watched.pid());
            }
            false
        });
        self.list.recount();
        self.follow_cgroups();
        self.metrics.reloaded(true);
        tracing::info!(event = "reload", file = %file.display(), rules = self.config.rules.rules().len(), "rules reloaded");
        self.log_rules();
        // Admits what the new rules select, and (eBPF mode) re-seeds the kernel side.
        if let Err(error) = self.cycle(now) {
            tracing::error!(
                event = "reload_failed",
                "after reloading the rules: {:#}",
                anyhow::Error::new(error)
            );
        }
    }

    /// Runs until `shutdown` fires (or, with `--once`, for one cycle).
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<Outcome, Error> {
        self.log_start();
        if self.config.once {
            let report = self.cycle(Instant::now())?;
            return Ok(Outcome::Checked {
                any_over: report.over > 0,
            });
        }
        // The rules' cgroups, followed from now on (one made while the programs loaded is
        // seen here).
        self.follow_cgroups();
        // The first look at /proc (which also seeds the kernel side: from now on it reports
        // whatever starts) ends start-up.
        let first = tokio::time::Instant::now();
        self.cycle(first.into_std())?;
        // Poll mode's ticks, or eBPF mode's deadlines (made before trimming and counting:
        // registering a timer with the runtime allocates).
        enum Clock {
            Ticks(tokio::time::Interval),
            Deadlines(DeadlineTimer),
        }
        let clock = if self.kernel.is_some() {
            Clock::Deadlines(DeadlineTimer::new().map_err(Error::Events)?)
        } else {
            let interval = self.config.interval;
            let mut ticker = tokio::time::interval_at(first + interval, interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Clock::Ticks(ticker)
        };
        // Readiness of the changes followed (registering it allocates: before counting).
        let changes = self
            .changes
            .as_ref()
            .map(|changes| {
                let fd = changes.waitable()?;
                // SAFETY: the AsyncFd owns the descriptor, which stays open and the same for
                // as long as it lives.
                unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                    .map_err(std::io::Error::from)
            })
            .transpose()
            .map_err(Error::Events)?;
        let mut service = Service::connect();
        service.ready(self.list.len(), self.is_event_driven());
        crate::footprint::trim();
        // After trimming: freed heap pages cannot be given back once locked.
        if self.config.harden.is_some() {
            lock_memory();
        }
        tracing::debug!(event = "ready", "start-up done");
        let allocations = crate::footprint::allocations();
        let mut waits = Waits {
            service: &mut service,
            shutdown: &mut shutdown,
            changes,
            metrics: Arc::clone(&self.metrics),
        };
        let outcome = match clock {
            Clock::Ticks(ticker) => self.run_poll(ticker, &mut waits).await?,
            Clock::Deadlines(timer) => self.run_events(timer, &mut waits).await?,
        };
        service.stopping();
        let allocations = crate::footprint::allocations() - allocations;
        let events = self.events;
        match outcome {
            Outcome::Stopped => {
                tracing::info!(event = "stop", allocations, events, "stopping on signal")
            }
            _ => tracing::info!(
                event = "stop",
                allocations,
                events,
                "every watched process has exited; stopping"
            ),
        }
        Ok(outcome)
    }

    async fn run_poll(
        &mut self,
        mut ticker: tokio::time::Interval,
        waits: &mut Waits<'_>,
    ) -> Result<Outcome, Error> {
        loop {
            tokio::select! {
                // The tick's scheduled time, not the time it ran: repeats due every interval
                // then fall due on every tick instead of drifting past one.
                tick = ticker.tick() => {
                    self.cycle(tick.into_std())?;
                    if self.nothing_left() {
                        return Ok(Outcome::NothingLeft);
                    }
                }
                wake = waits.next(self.reload_at) => {
                    if let Some(outcome) = self.on_wake(wake, waits)? {
                        return Ok(outcome);
                    }
                }
            }
        }
    }

    async fn run_events(
        &mut self,
        mut timer: DeadlineTimer,
        waits: &mut Waits<'_>,
    ) -> Result<Outcome, Error> {
        // Events left in the ring buffer after a turn (see `handle_events`).
        let mut pending = false;
        loop {
            if self.nothing_left() {
                return Ok(Outcome::NothingLeft);
            }
            timer.set(self.next_deadline).map_err(Error::Events)?;
            let Some(kernel) = self.kernel.as_ref() else {
                return Ok(Outcome::Stopped);
            };
            tokio::select! {
                ready = kernel.readable() => {
                    ready.map_err(Error::Events)?;
                    pending = self.handle_events();
                }
                () = std::future::ready(()), if pending => pending = self.handle_events(),
                expired = timer.expired() => {
                    expired.map_err(Error::Events)?;
                    self.handle_due(Instant::now());
                }
                wake = waits.next(self.reload_at) => {
                    if let Some(outcome) = self.on_wake(wake, waits)? {
                        return Ok(outcome);
                    }
                }
            }
        }
    }

    /// Acts on what woke either loop besides its own source; `Some` when the run ends.
    fn on_wake(&mut self, wake: Wake, waits: &mut Waits<'_>) -> Result<Option<Outcome>, Error> {
        match wake {
            Wake::Changed(ready) => {
                ready.map_err(Error::Events)?;
                self.on_changes(Instant::now());
            }
            Wake::RulesFileSettled => {
                self.reload_at = None;
                tracing::info!(
                    event = "rules_file_changed",
                    "the rules file changed; reading it again"
                );
                self.reload(Instant::now(), waits.service);
            }
            Wake::Watchdog => waits.service.ping(),
            Wake::Liveness => waits.metrics.liveness.answer(),
            Wake::Request(Request::Stop) => return Ok(Some(Outcome::Stopped)),
            Wake::Request(Request::Reload) => self.reload(Instant::now(), waits.service),
        }
        Ok(None)
    }

    fn nothing_left(&self) -> bool {
        !self.scanner.rules().selects_by_kind() && self.list.is_empty()
    }
}

/// What the loops wait on besides their own source: the service manager's watchdog, the
/// signals asking to stop or reload, the changes followed, and liveness questions.
struct Waits<'a> {
    service: &'a mut Service,
    shutdown: &'a mut Shutdown,
    changes: Option<AsyncFd<OwnedFd>>,
    /// `/healthz` asks the loop itself whether it runs.
    metrics: Arc<Metrics>,
}

/// What woke a loop besides its own source (see [`Waits::next`]).
enum Wake {
    /// Something followed changed.
    Changed(std::io::Result<()>),
    /// The changed rules file has settled: time to read it.
    RulesFileSettled,
    /// The service manager's watchdog wants its ping.
    Watchdog,
    /// `/healthz` asks whether the loop runs.
    Liveness,
    /// A signal asks to stop or reload.
    Request(Request),
}

impl Waits<'_> {
    /// Until one of them wakes the loop (`reload_at`: when a changed rules file is read).
    async fn next(&mut self, reload_at: Option<Instant>) -> Wake {
        tokio::select! {
            ready = changed(&self.changes) => Wake::Changed(ready),
            () = at(reload_at) => Wake::RulesFileSettled,
            () = self.service.watchdog_due() => Wake::Watchdog,
            () = self.metrics.liveness.asked() => Wake::Liveness,
            request = self.shutdown.next() => Wake::Request(request),
        }
    }
}

/// Until `deadline` (never, without one).
async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Until something followed changed (never, when nothing is followed).
async fn changed(changes: &Option<AsyncFd<OwnedFd>>) -> std::io::Result<()> {
    match changes {
        Some(fd) => fd.readable().await.map(|mut guard| guard.clear_ready()),
        None => std::future::pending().await,
    }
}

/// What a signal to the monitor asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop (SIGINT, SIGTERM).
    Stop,
    /// Read the rules again (SIGHUP).
    Reload,
}

/// SIGINT and SIGTERM (stop) and SIGHUP (read the rules again), caught from the moment this
/// is made: a stop asked for while the monitor is still starting is a clean stop too, and a
/// SIGHUP then does not kill it.
#[derive(Debug)]
pub struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Starts catching SIGINT, SIGTERM and SIGHUP (inside a tokio runtime).
    pub fn listen() -> Result<Shutdown, Error> {
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt()).map_err(Error::Signals)?,
            terminate: signal(SignalKind::terminate()).map_err(Error::Signals)?,
            hangup: signal(SignalKind::hangup()).map_err(Error::Signals)?,
        })
    }

    /// The next request: a stop (SIGINT, SIGTERM) or a reload (SIGHUP).
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.interrupt.recv() => Request::Stop,
            _ = self.terminate.recv() => Request::Stop,
            _ = self.hangup.recv() => Request::Reload,
        }
    }
}

/// The source for `config`: the kernel side, or polling and why.
fn choose_source(config: &Config) -> Result<(Option<KernelWatch>, Option<String>), Error> {
    let settings = KernelSettings {
        rules: &config.rules,
        max_processes: config.max_processes,
        kernel_signal: config.kernel_signal,
        attach: config.attach,
        debug_log: tracing::enabled!(tracing::Level::DEBUG),
    };
    match config.mode {
        Mode::Poll => Ok((None, Some("--mode poll".to_string()))),
        _ if config.once => Ok((None, Some("--once".to_string()))),
        Mode::Ebpf => KernelWatch::load(&settings)
            .map(|kernel| (Some(kernel), None))
            .map_err(Error::Ebpf),
        Mode::Auto => match KernelWatch::load(&settings) {
            Ok(kernel) => Ok((Some(kernel), None)),
            Err(reason) => Ok((None, Some(format!("eBPF unavailable: {reason}")))),
        },
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a check does on the kernel side (eBPF mode).
struct KernelLink<'a> {
    kernel: &'a mut KernelWatch,
    /// The kernel side waits to be re-armed for this process: after this gap.
    rearm: Option<Duration>,
}

/// When `watched` next needs a look: a repeat or kill falling due, or a held-back report.
fn due_at(policy: &Policy, watched: &Watched) -> Option<Instant> {
    earliest(policy.deadline(&watched.episode), watched.recheck)
}

/// The policy `watched` is judged by: its rule's, at its own limit.
fn policy_of(rules: &RuleSet, watched: &Watched) -> Policy {
    let rule = rules.get(watched.rule());
    Policy {
        limit: watched.limit(),
        signal: rule.signal,
        repeat: rule.repeat,
        kill_after: rule.kill_after,
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
    }
}

/// What to follow of the file system's changes for `config` (see [`crate::changes`]): the
/// rules' cgroups and limits, and with `--watch-config` the rules file. A rules file may name
/// cgroups after a reload, so with one there is always something to follow.
fn follow_changes(config: &Config) -> Option<Changes> {
    let rules = &config.rules;
    let wanted = rules.rules().iter().any(Rule::depends_on_cgroups) || config.source.file.is_some();
    if !wanted || config.once {
        return None;
    }
    let mut changes = match Changes::new() {
        Ok(changes) => changes,
        Err(error) => {
            tracing::warn!(
                event = "changes_unfollowed",
                "cannot follow changes of cgroups and the rules file ({error}); they are seen on reload"
            );
            return None;
        }
    };
    if let (true, Some(file)) = (config.source.watch, &config.source.file)
        && let Err(error) = changes.follow_rules_file(file)
    {
        tracing::warn!(event = "changes_unfollowed", file = %file.display(), "cannot follow changes of the rules file ({error}); SIGHUP reads it again");
    }
    Some(changes)
}

/// Start-up hardening (see [`crate::harden`]): the OOM score, the memlock limit, then the
/// capabilities no longer needed and `no_new_privs`. Each that cannot be done is said once and
/// the monitor goes on.
fn harden_start(hardening: crate::config::Hardening, keep_for_maps: CapabilitySet) -> Vec<Note> {
    use crate::harden;
    let mut notes = Vec::new();
    // Lowering the score needs CAP_SYS_RESOURCE, which roots in containers often lack: said
    // once, not a warning; the score stays what the service manager set.
    if let Err(error) = harden::set_oom_score_adj(hardening.oom_score_adj) {
        notes.push(Note::info(format!(
            "cannot set the OOM score adjustment to {} ({error})",
            hardening.oom_score_adj
        )));
    }
    let _ = harden::lift_memlock_limit();
    if !keep_for_maps.is_empty() {
        notes.push(Note::info(
            "keeping CAP_BPF: this kernel asks for it on every BPF map access, not only at load (kernel.unprivileged_bpf_disabled)".to_string(),
        ));
    }
    match harden::drop_capabilities(keep_for_maps) {
        Ok(true) => {}
        // Said once, like the OOM score: no_new_privs (below) covers what the set still holds.
        Ok(false) => notes.push(Note::info(
            "capability bounding set not reduced (that needs CAP_SETPCAP); no_new_privs keeps execs from gaining what it holds".to_string(),
        )),
        Err(error) => notes.push(Note::warning(format!("cannot drop capabilities ({error})"))),
    }
    if let Err(error) = harden::forbid_new_privileges() {
        notes.push(Note::warning(format!("cannot set no_new_privs ({error})")));
    }
    notes
}

/// A hardening step the host did not allow, said after the start line (which says first what
/// the monitor watches and how).
#[derive(Debug)]
struct Note {
    warning: bool,
    text: String,
}

impl Note {
    fn info(text: String) -> Note {
        Note {
            warning: false,
            text,
        }
    }

    fn warning(text: String) -> Note {
        Note {
            warning: true,
            text,
        }
    }

    fn say(&self) {
        match self.warning {
            true => tracing::warn!(event = "harden", "{}", self.text),
            false => tracing::info!(event = "harden", "{}", self.text),
        }
    }
}

/// Locks the monitor's memory, when that can never make an allocation fail.
fn lock_memory() {
    if !crate::harden::can_lock_memory() {
        // Said once, like the OOM score: the host decides, the monitor goes on.
        tracing::info!(
            event = "harden",
            "memory not locked: RLIMIT_MEMLOCK is limited and CAP_IPC_LOCK is missing (locking could make the monitor's own allocations fail)"
        );
        return;
    }
    if let Err(error) = crate::harden::lock_memory() {
        tracing::warn!(event = "harden", "cannot lock memory ({error})");
    }
}

/// The hook runners, when a rule has a hook.
fn start_hook(rules: &RuleSet) -> Result<Option<ExecHook>, Error> {
    if rules.rules().iter().all(|rule| rule.exec.is_none()) {
        return Ok(None);
    }
    ExecHook::start().map(Some).map_err(Error::Runtime)
}

/// How and when a check measures, and what it does on a breach.
#[derive(Clone, Copy)]
struct Measure<'a> {
    proc: &'a ProcRoot,
    page_size: u64,
    /// How this kernel counts RSS: which figure is exact.
    accounting: Accounting,
    now: Instant,
    dispatch: Dispatch,
    /// The rules in force.
    rules: &'a RuleSet,
    /// Their profilers (which profile a breaching process before its signal) and metrics.
    actions: &'a RuleActions,
    /// Runs a rule's hook after a breach's signal.
    hook: Option<&'a ExecHook>,
}

/// Measures `watched`, judges it and acts; returns the verdict and the exact RSS, or `None`
/// once the process is gone. With a kernel side waiting for it, a process found under the
/// limit is re-armed there before a second, deciding reading, so that no growth between the
/// two can go unreported.
fn check(
    policy: &Policy,
    watched: &mut Watched,
    measure: Measure<'_>,
    mut kernel: Option<KernelLink<'_>>,
) -> Option<(Verdict, u64)> {
    let (proc, page_size) = (measure.proc, measure.page_size);
    let mut statm_buf = [0u8; 128];
    let exact = |watched: &Watched, buf: &mut [u8]| {
        watched.exact_rss(proc, buf, page_size, policy.limit, measure.accounting)
    };
    let mut rss = exact(watched, &mut statm_buf);
    watched.recheck = None;
    if let (Ok(under), Some(link)) = (rss, kernel.as_mut())
        && let Some(gap) = link.rearm
        && under <= policy.limit
    {
        link.kernel.rearm(watched.pid(), gap);
        rss = exact(watched, &mut statm_buf);
        match rss {
            // Still under: the kernel side stays quiet for the gap, so look again after it.
            Ok(rss) if rss <= policy.limit => {
                watched.recheck = (!gap.is_zero()).then(|| measure.now + gap);
            }
            // Over after all: no report is wanted while it stays over.
            _ => link.kernel.cancel_rearm(watched.pid()),
        }
    }
    let rss = match rss {
        Ok(rss) => rss,
        Err(Errno::SRCH) => {
            tracing::debug!(pid = watched.pid(), name = %watched.comm(), "exited");
            return None;
        }
        Err(errno) => {
            tracing::warn!(event = "unreadable", pid = watched.pid(), name = %watched.comm(), "cannot read its memory ({errno}); no longer watched");
            return None;
        }
    };
    let verdict = policy.judge(&mut watched.episode, rss, measure.now);
    // Checked again before a signal: the monitor's parent may have changed since admission
    // (re-parented to a subreaper that a rule matches).
    if verdict.signals() && Exclusions::now().excludes(watched.pid()) {
        return None;
    }
    let rule_index = watched.rule();
    let (rule, metrics) = (
        measure.rules.get(rule_index),
        &measure.actions.metrics[rule_index],
    );
    if verdict == Verdict::Breach {
        metrics.breaches.inc();
        // Its name now, for the breach's line and hook (a rename under the same rule is not
        // reported by the kernel side).
        watched.reread_name(proc);
    }
    // Before the signal: the process may exit on it and take its memory with it.
    let profiler = measure.actions.profilers[rule_index].as_ref();
    let profile = match (verdict, profiler) {
        (Verdict::Breach, Some(profiler)) => {
            let name = watched.comm().to_string();
            let growth = kernel
                .as_mut()
                .map(|link| link.kernel.take_growth(watched.pid()))
                .unwrap_or_default();
            profiler.profile(
                watched.pid(),
                watched.pidfd(),
                &name,
                rss,
                policy.limit,
                growth,
            )
        }
        _ => None,
    };
    tracing::trace!(pid = watched.pid(), name = %watched.comm(), rss = %Bytes(rss), "measured");
    let dispatch = match (verdict, kernel) {
        (Verdict::Breach, Some(link)) => {
            if link.kernel.claim_signal(watched.pid()) {
                measure.dispatch
            } else {
                Dispatch::SentByKernel
            }
        }
        (Verdict::Recovered, Some(link)) => {
            link.kernel.release_claim(watched.pid());
            measure.dispatch
        }
        _ => measure.dispatch,
    };
    let delivery = action::act(&rule.name, policy, verdict, watched, rss, dispatch);
    if let Some(delivery) = delivery {
        let signal = match verdict {
            Verdict::Kill => Signal::KILL,
            _ => policy.signal,
        };
        metrics.signalled(signal, delivery);
    }
    if let (Verdict::Breach, Some(hook), Some(exec), Some(delivery)) =
        (verdict, measure.hook, &rule.exec, delivery)
    {
        hook.fire(Breach {
            exec: exec.clone(),
            rule: rule.name.clone(),
            pid: watched.pid(),
            name: watched.comm().to_string(),
            rss,
            limit: policy.limit,
            signal: match delivery {
                Delivery::Sent | Delivery::SentByKernel => policy.signal.to_string(),
                other => other.to_string(),
            },
            profile: profile.unwrap_or_default(),
        });
    }
    Some((verdict, rss))
}
