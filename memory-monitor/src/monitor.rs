//! The monitor: a source says which processes exist and when to look, the policy says what is
//! due, and actions carry it out.

use std::time::Instant;

use rustix::io::Errno;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;

use crate::Error;
use crate::action;
use crate::config::Config;
use crate::policy::{Policy, Verdict};
use crate::procfs::page_size;
use crate::source::poll::{ScanReport, Scanner, SkipReason};
use crate::units::{Bytes, Period};
use crate::watch::{Watched, Watchlist};

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

/// A memory monitor built from a [`Config`].
#[derive(Debug)]
pub struct Monitor {
    config: Config,
    policy: Policy,
    list: Watchlist,
    scanner: Scanner,
    page_size: u64,
    /// Whether the one warning about skipped processes has been given.
    warned_skip: bool,
}

impl Monitor {
    /// Prepares a monitor: opens `/proc` and allocates everything a cycle will need.
    pub fn new(config: Config) -> Result<Monitor, Error> {
        raise_fd_limit(config.max_processes);
        let scanner =
            Scanner::new(config.matcher.clone(), config.pids.clone()).map_err(Error::Proc)?;
        Ok(Monitor {
            policy: Policy {
                limit: config.limit,
                signal: config.signal,
                repeat: config.repeat,
                kill_after: config.kill_after,
            },
            list: Watchlist::with_capacity(config.max_processes),
            scanner,
            page_size: page_size(),
            warned_skip: false,
            config,
        })
    }

    /// The processes watched now.
    pub fn watched(&self) -> &Watchlist {
        &self.list
    }

    /// One poll cycle at time `now`: refresh the watch list from `/proc`, then measure every
    /// watched process and act on what is due. Allocates nothing once warmed up.
    pub fn cycle(&mut self, now: Instant) -> Result<CycleReport, Error> {
        let scan = self
            .scanner
            .scan(&mut self.list, |gone| {
                tracing::debug!(pid = gone.pid(), name = %gone.comm(), "no longer watched (exited or renamed)");
            })
            .map_err(Error::Proc)?;
        self.warn_skipped(&scan);
        let mut report = CycleReport {
            skipped: scan.skipped,
            ..CycleReport::default()
        };
        let (policy, dry_run, page_size) = (&self.policy, self.config.dry_run, self.page_size);
        self.list.retain_mut(|watched| {
            match measure_and_act(policy, watched, page_size, now, dry_run) {
                Some(verdict) => {
                    report.over += usize::from(watched.episode != Default::default());
                    report.signals += usize::from(matches!(
                        verdict,
                        Verdict::Breach | Verdict::Repeat | Verdict::Kill
                    ));
                    true
                }
                None => false,
            }
        });
        report.watched = self.list.len();
        tracing::debug!(
            watched = report.watched,
            over = report.over,
            signals = report.signals,
            skipped = report.skipped,
            "checked"
        );
        Ok(report)
    }

    fn warn_skipped(&mut self, scan: &ScanReport) {
        let Some(reason) = scan.skip_reason else {
            return;
        };
        if std::mem::replace(&mut self.warned_skip, true) {
            return;
        }
        match reason {
            SkipReason::Full(capacity) => tracing::warn!(
                skipped = scan.skipped,
                "watching the maximum of {capacity} processes; further matches are skipped (raise --max-processes)"
            ),
            SkipReason::Open(errno) => tracing::warn!(
                skipped = scan.skipped,
                "cannot open matching processes ({errno}); they are skipped (raise the open-files limit?)"
            ),
        }
    }

    /// Runs until SIGINT/SIGTERM (or, with `--once`, for one cycle).
    pub async fn run(mut self) -> Result<Outcome, Error> {
        let target = self.config.describe_target();
        let action = action::describe(&self.policy);
        let dry_run = if self.config.dry_run {
            " (dry run: nothing will be sent)"
        } else {
            ""
        };
        tracing::info!(
            limit = %Bytes(self.policy.limit),
            action = %action,
            mode = %"poll",
            interval = %Period(self.config.interval),
            "watching {target}{dry_run}"
        );
        if self.config.once {
            let report = self.cycle(Instant::now())?;
            return Ok(Outcome::Checked {
                any_over: report.over > 0,
            });
        }
        let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signals)?;
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // The tick's scheduled time, not the time it ran: repeats due every interval
                // then fall due on every tick instead of drifting past one.
                tick = ticker.tick() => {
                    let report = self.cycle(tick.into_std())?;
                    if self.config.matcher.is_none() && report.watched == 0 {
                        tracing::info!("every watched process has exited; stopping");
                        return Ok(Outcome::NothingLeft);
                    }
                }
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
        }
        tracing::info!("stopping on signal");
        Ok(Outcome::Stopped)
    }
}

/// Reads `watched`'s RSS, judges it and acts. `None` once the process has exited.
fn measure_and_act(
    policy: &Policy,
    watched: &mut Watched,
    page_size: u64,
    now: Instant,
    dry_run: bool,
) -> Option<Verdict> {
    let mut statm_buf = [0u8; 128];
    let rss = match watched.rss(&mut statm_buf, page_size) {
        Ok(rss) => rss,
        Err(Errno::SRCH) => {
            tracing::debug!(pid = watched.pid(), name = %watched.comm(), "exited");
            return None;
        }
        Err(errno) => {
            tracing::warn!(pid = watched.pid(), name = %watched.comm(), "cannot read its memory ({errno}); no longer watched");
            return None;
        }
    };
    let verdict = policy.judge(&mut watched.episode, rss, now);
    tracing::trace!(pid = watched.pid(), name = %watched.comm(), rss = %Bytes(rss), "measured");
    action::act(policy, verdict, watched, rss, dry_run);
    Some(verdict)
}

/// Each watched process holds two descriptors (pidfd and statm); raise the soft open-files
/// limit toward the hard one so `--max-processes` can be reached.
fn raise_fd_limit(max_processes: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = (2 * max_processes as u64).saturating_add(64);
    let current = getrlimit(Resource::Nofile);
    let soft = current.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return;
    }
    let raised = current.maximum.map_or(wanted, |hard| hard.min(wanted));
    if raised > soft {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: current.maximum,
            },
        );
    }
}
