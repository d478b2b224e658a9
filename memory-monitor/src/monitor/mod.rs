//! The monitor: a source says when to look and at which processes, a check measures and
//! judges each, and acts on what is due.
//!
//! In poll mode a timer drives everything: every interval, every process is looked at. In eBPF
//! mode kernel events do: a crossing report is confirmed against the exact RSS, discovery
//! events admit or drop processes, and a timer runs only while a repeat or a kill is pending,
//! so an idle monitor never wakes up. SIGHUP reads the rules again.
//!
//! The parts: `in_force` owns the rules in force with what acting on each needs, and the
//! [`crate::watch`] what is watched under them, on both sides; `check` looks at one process
//! and `policy` (at the crate's top, shared with the watch) judges it; `budget` sums a rule's
//! processes against its `group-limit`; `actions` are what
//! acting needs besides each rule's own; `events` is what each kernel event means; `run`
//! drives the loops, `waits` is what else wakes them, `timer` times eBPF mode's deadlines,
//! `pressure` acts on the rules' memory pressure and `memory.high` triggers,
//! `follow` acts on the changes followed and `reload` puts new rules in force; `start` is
//! start-up, and `unmatched` says which rules select nothing.

mod actions;
mod budget;
mod check;
mod episode;
mod events;
mod follow;
mod in_force;
mod leak;
mod oom;
mod oom_counts;
mod pick;
mod pressure;
mod reload;
mod run;
mod start;
pub(crate) mod timer;
mod unmatched;
mod waits;

use std::sync::Arc;
use std::time::{Duration, Instant};

use self::actions::Actions;
use self::check::{Look, check, due_at, earliest};
use self::events::Losses;
use self::in_force::InForce;
use self::oom_counts::OomCounts;
use self::pressure::Pressure;
use self::start::Note;
use crate::Error;
use crate::accounting::{Accounting, Exact};
use crate::act::deliver::Reported;
use crate::act::metrics::Metrics;
use crate::config::{Config, RulesSource};
use crate::kernel::{KernelSide, Loaded, Ring, Setup, Unloaded};
use crate::system::inotify::Changes;
use crate::watch::Watch;
use crate::watch::scan::SkipReason;

pub use self::waits::Shutdown;

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

/// Batches handled before the loop serves its timers, watchdog and signals again.
const EVENT_BATCHES_PER_TURN: usize = 16;

/// A changed rules file is read once it has not changed for this long (`--watch-config`): a
/// file written in several steps is read once, whole.
const RULES_FILE_SETTLE: Duration = Duration::from_millis(300);

/// eBPF mode: after a report whose exact figure is still under the limit, the kernel side
/// holds back the next report about that process this long, and userspace looks again itself
/// when it ends. A process moving through the counters' margin of error is then reported about
/// once per gap, not on every page it touches, and still never missed.
const REPORT_GAP: Duration = Duration::from_micros(250);

/// Where the monitor learns of changes.
#[derive(Debug)]
enum Source {
    /// The kernel side's events (eBPF mode), as loading set it up.
    Events(Setup),
    /// Looking at `/proc` every interval, and why.
    Poll { why: String },
}

/// The settings the loop reads once started (the rules in force are [`InForce`]).
#[derive(Debug)]
struct Settings {
    interval: Duration,
    dry_run: bool,
    once: bool,
    kernel_signal: bool,
    harden: bool,
    /// Where the rules come from, to read them again.
    rules: RulesSource,
}

/// A memory monitor built from a [`Config`].
#[derive(Debug)]
pub struct Monitor {
    settings: Settings,
    source: Source,
    /// What the kernel side reports (nothing, in poll mode).
    ring: Ring,
    /// What lost kernel events call for.
    losses: Losses,
    /// The rules in force, with what acting on each needs.
    in_force: InForce,
    /// The processes watched under them, on both sides.
    watch: Watch,
    actions: Actions,
    /// Where each rule's group stands against its budget (`group-limit`).
    budgets: budget::Budgets,
    /// Follows cgroup limits, rules' cgroups and the rules file (see [`crate::system::inotify`]).
    changes: Option<Changes>,
    /// Poll mode: the kernel's counts of its OOM kills (eBPF mode hears of each one).
    oom_counts: Option<OomCounts>,
    /// The rules' pressure and `memory.high` triggers (none with `--once`).
    pressure: Option<Pressure>,
    /// When to read the changed rules file (`--watch-config`), once it has settled.
    reload_at: Option<Instant>,
    /// When to say which rules still select no process (see [`unmatched`]).
    unmatched_at: Option<Instant>,
    /// No repeat or kill falls due before this (eBPF mode); may be early, never late.
    next_deadline: Option<Instant>,
    /// Whether the one warning about skipped processes has been given.
    warned_skip: bool,
    /// Hardening the host did not allow, and another monitor with the same rules, said after
    /// the start line.
    notes: Vec<Note>,
    /// The lock that tells other monitors with the same rules of this one (see
    /// [`crate::host::peers`]).
    _peer_lock: Option<crate::host::peers::Lock>,
}

impl Monitor {
    /// Prepares a monitor: chooses the source (loading the BPF programs when it can), opens
    /// `/proc` and allocates everything the loop will need. Outside `--mode poll` and
    /// `--once` it must be called inside a tokio runtime.
    pub fn new(config: Config) -> Result<Monitor, Error> {
        crate::footprint::reserve_descriptors(config.max_processes);
        let (source, ring, kernel, program_stats): (_, _, Box<dyn KernelSide>, _) =
            match start::choose_source(&config)? {
                Ok(Loaded {
                    ring,
                    maps,
                    setup,
                    stats,
                }) => (Source::Events(setup), ring, Box::new(maps), stats),
                Err(why) => (Source::Poll { why }, Ring::none(), Box::new(Unloaded), None),
            };
        let event_driven = matches!(source, Source::Events(_));
        // Bound before the capabilities are dropped (below): a port under 1024 needs
        // CAP_NET_BIND_SERVICE, which the monitor does not keep.
        let listener = config
            .metrics_addr
            .map(|address| {
                std::net::TcpListener::bind(address).map_err(|e| Error::Metrics(address, e))
            })
            .transpose()?;
        crate::accounting::count_cpus();
        // Users' names are read now, so that naming a breaching process's user reads nothing.
        crate::system::users::load_names();
        // With the programs attached and before any thread starts (threads inherit them).
        // Some kernels check CAP_BPF on every map access, not only when programs load.
        let keep_for_maps = ring.capabilities_for_maps();
        // A check (`--once`) is a dry run: it reports, and acts on nothing.
        let dry_run = config.dry_run || config.once;
        // Armed while the monitor still holds CAP_SYS_RESOURCE, which some triggers need.
        let pressure = match config.once {
            true => None,
            false => Some(Pressure::new(&config.rules)),
        };
        // Before the capabilities are dropped.
        let (peer_lock, peer_note) = match (config.harden, dry_run) {
            (Some(_), false) => start::notice_peers(&config.rules),
            _ => (None, None),
        };
        let mut notes = config
            .harden
            .map(|hardening| start::harden_start(hardening, keep_for_maps))
            .unwrap_or_default();
        notes.extend(peer_note);
        let Config {
            rules,
            source: rules_source,
            interval,
            once,
            max_processes,
            kernel_signal,
            harden,
            metrics_addr,
            ..
        } = config;
        let metrics = Metrics::new(program_stats);
        metrics.set_mode(event_driven);
        let in_force = InForce::build(rules, &metrics, dry_run)?;
        let actions = Actions::start(&in_force.rules, Arc::clone(&metrics), dry_run)?;
        if let (Some(listener), Some(address)) = (listener, metrics_addr) {
            let bound = crate::act::metrics::serve(listener, Arc::clone(&metrics))
                .map_err(|e| Error::Metrics(address, e))?;
            tracing::info!(event = "metrics", address = %bound, "serving metrics on http://{bound}/metrics");
        }
        let changes = start::follow_changes(&in_force.rules, &rules_source, once);
        let watch = Watch::new(max_processes, kernel, !event_driven).map_err(Error::Proc)?;
        let budgets = budget::Budgets::new(&in_force.rules);
        let oom_counts = match event_driven || once {
            true => None,
            false => Some(OomCounts::new().map_err(Error::Proc)?),
        };
        Ok(Monitor {
            settings: Settings {
                interval,
                dry_run,
                once,
                kernel_signal: kernel_signal && event_driven,
                harden: harden.is_some(),
                rules: rules_source,
            },
            source,
            ring,
            losses: Losses::default(),
            in_force,
            watch,
            actions,
            budgets,
            changes,
            oom_counts,
            pressure,
            reload_at: None,
            unmatched_at: None,
            next_deadline: None,
            warned_skip: false,
            notes,
            _peer_lock: peer_lock,
        })
    }

    /// Whether the eBPF source is in use.
    pub fn is_event_driven(&self) -> bool {
        matches!(self.source, Source::Events(_))
    }

    /// Kernel events handled so far (eBPF mode).
    pub fn events_handled(&self) -> u64 {
        self.ring.handled()
    }

    /// How this kernel counts RSS, as the kernel side found from BTF; not known when polling.
    fn accounting(&self) -> Accounting {
        match &self.source {
            Source::Events(setup) => setup.accounting(),
            Source::Poll { .. } => Accounting::Unknown,
        }
    }

    /// Which exact figure decides, and why `smaps_rollup` when it does.
    fn exact(&self) -> (Exact, Option<&str>) {
        match &self.source {
            Source::Events(setup) => setup.exact(),
            Source::Poll { .. } => match Exact::choose(None) {
                Exact::SmapsRollup => (Exact::SmapsRollup, Some(crate::accounting::POLLING_WALKS)),
                exact => (exact, None),
            },
        }
    }

    /// How a look measures: how the kernel counts, and which figure decides.
    fn reading(&self) -> (Accounting, Exact) {
        (self.accounting(), self.exact().0)
    }

    /// How many processes are watched now.
    pub fn watched(&self) -> usize {
        self.watch.list().len()
    }

    /// One look at every process at time `now`: the watch brought up to date from `/proc`
    /// (in eBPF mode the kernel side is followed afresh: at start-up, after lost events, after
    /// a reload), then every watched process checked. Poll mode's cycle. Allocates nothing
    /// once warmed up.
    pub fn cycle(&mut self, now: Instant) -> Result<CycleReport, Error> {
        let started = Instant::now();
        let skipped = self.find_processes(now)?;
        Ok(self.check_found(now, skipped, started))
    }

    /// A cycle's first half: the watch brought up to date from `/proc`; how many matching
    /// processes could not be watched.
    fn find_processes(&mut self, now: Instant) -> Result<usize, Error> {
        // Before the look that forgets the processes killed since the last.
        self.count_oom_kills();
        let scan = self
            .watch
            .scan(&self.in_force.rules, now)
            .map_err(Error::Proc)?;
        if let Some(reason) = scan.skip_reason {
            self.warn_skipped_once(reason, scan.skipped);
        }
        self.actions.metrics.skipped.set(scan.skipped as i64);
        if let Some(counts) = self.oom_counts.as_mut() {
            counts.follow(self.watch.list());
        }
        if let Some(changes) = self.changes.as_mut() {
            self.watch
                .follow_limits(&self.in_force.rules, changes, None);
        }
        Ok(scan.skipped)
    }

    /// A cycle's second half, begun at `started`: every watched process checked at `now`.
    fn check_found(&mut self, now: Instant, skipped: usize, started: Instant) -> CycleReport {
        let report = CycleReport {
            skipped,
            // Freshly followed, the kernel side is armed: nothing to re-arm.
            ..self.check_watched(now, None, |_, _| true)
        };
        self.check_groups(now);
        tracing::debug!(
            watched = report.watched,
            over = report.over,
            signals = report.signals,
            skipped = report.skipped,
            "checked"
        );
        self.actions
            .metrics
            .poll_cycle
            .observe(started.elapsed().as_secs_f64());
        self.in_force.publish(self.watch.list().per_rule());
        self.publish_leaks();
        report
    }

    /// Checks `pid` at `now` (admitting it first if its discovery event is still on its way,
    /// or was lost); returns its exact RSS. With `rearm`, the kernel side is waiting to be
    /// told to report again (after that gap), which it is when the process is under the limit.
    /// `reported` is the kernel report that asks for the look.
    fn look_at(
        &mut self,
        pid: i32,
        now: Instant,
        rearm: Option<Duration>,
        reported: Reported,
    ) -> Option<u64> {
        if self.watch.list().get(pid).is_none() && !self.discover(pid) {
            return None;
        }
        let (in_force, actions) = (&self.in_force, &self.actions);
        let (accounting, exact) = self.reading();
        let look = Look {
            now,
            accounting,
            exact,
            rearm,
            reported: Some(reported),
        };
        let mut judged = None;
        self.watch.retain_one(pid, |watched, proc, kernel| {
            judged = check(watched, in_force, proc, actions, look, kernel)
                .map(|(_, rss)| (rss, due_at(&in_force.rules, watched)));
            judged.is_some()
        });
        let (rss, due) = judged?;
        self.next_deadline = earliest(self.next_deadline, due);
        Some(rss)
    }

    /// Checks the watched processes `due` selects, at `now`, forgetting those gone. With
    /// `rearm`, the kernel side may wait to be re-armed for them.
    fn check_watched(
        &mut self,
        now: Instant,
        rearm: Option<Duration>,
        due: impl Fn(&crate::rules::RuleSet, &crate::watch::process::WatchedProcess) -> bool,
    ) -> CycleReport {
        let (in_force, actions) = (&self.in_force, &self.actions);
        let (accounting, exact) = self.reading();
        let rules = &in_force.rules;
        let look = Look {
            now,
            accounting,
            exact,
            rearm,
            reported: None,
        };
        let mut report = CycleReport::default();
        let mut next_deadline = None;
        // Poll mode's readings cross the waypoints that the kernel side reports in eBPF mode.
        let readings_cross = !matches!(self.source, Source::Events(_));
        self.watch.retain(|watched, proc, kernel| {
            if due(rules, watched) {
                let Some((verdict, rss)) = check(watched, in_force, proc, actions, look, kernel)
                else {
                    return false;
                };
                report.signals += usize::from(verdict.signals());
                if readings_cross {
                    leak::reading(watched, in_force, proc, actions, (now, rss), kernel);
                }
            }
            report.over += usize::from(watched.episode.is_over());
            next_deadline = earliest(next_deadline, due_at(rules, watched));
            true
        });
        self.next_deadline = next_deadline;
        report.watched = self.watch.list().len();
        report
    }

    /// eBPF mode: checks the processes whose repeat, kill or held-back report is due at `now`,
    /// and the groups when their reading is.
    pub fn handle_due(&mut self, now: Instant) {
        self.check_watched(now, Some(Duration::ZERO), |rules, watched| {
            due_at(rules, watched).is_some_and(|due| due <= now)
        });
        if self.budgets.due().is_some_and(|due| due <= now) {
            self.check_groups(now);
        }
    }

    /// When the next repeat, kill or group reading may fall due (eBPF mode); `None`: nothing
    /// pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(self.next_deadline, self.budgets.due())
    }

    /// Says, the first time only, that `skipped` matching processes could not be watched.
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
}
