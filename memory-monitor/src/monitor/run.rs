//! Driving the monitor: start-up's end, then the loop of its mode (poll mode's ticks, or eBPF
//! mode's kernel events and deadlines) and whatever else wakes it, until it is told to stop.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::MissedTickBehavior;

use super::oom_counts::OomCounts;
use super::pressure::fired;
use super::waits::{Request, Shutdown, Waits, Wake, register};
use super::{Monitor, Outcome, Source, start, unmatched};
use crate::Error;
use crate::host::systemd::Service;
use crate::monitor::timer::DeadlineTimer;

impl Monitor {
    /// How the monitor runs, for the start line and the rules' lines.
    pub(super) fn running(&self) -> start::Running<'_> {
        start::Running {
            source: match &self.source {
                Source::Events(setup) => Ok(setup),
                Source::Poll { why } => Err((why.as_str(), self.settings.interval)),
            },
            dry_run: self.settings.dry_run,
            once: self.settings.once,
            kernel_signal: self.settings.kernel_signal,
            matched: &self.watch.list().per_rule()[..self.in_force.rules.all().len()],
        }
    }

    /// Runs until `shutdown` fires (or, with `--once`, for one cycle).
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<Outcome, Error> {
        // The rules' cgroups, followed from now on (one made while the programs loaded is
        // seen here).
        if !self.settings.once {
            self.follow_cgroups();
        }
        // The first look at /proc (which also has the kernel side follow what it finds: from
        // now on it reports whatever starts) ends start-up; the start line says what it found
        // before any process found is judged.
        let first = tokio::time::Instant::now();
        let started = Instant::now();
        let skipped = self.find_processes(first.into_std())?;
        start::log_start(&self.in_force.rules, self.running(), &self.notes);
        if let Some(pressure) = &self.pressure {
            pressure.say_refused(&self.in_force.rules);
        }
        self.unmatched_at = unmatched::at_start(
            &self.in_force.rules,
            self.running().matched,
            self.settings.interval,
            first.into_std(),
        )
        .filter(|_| !self.settings.once);
        let report = self.check_found(first.into_std(), skipped, started);
        if self.settings.once {
            return Ok(Outcome::Checked {
                any_over: report.over > 0,
            });
        }
        // The timer, and the changes followed, registered with the runtime before trimming
        // and counting (registering allocates).
        let clock = match self.source {
            Source::Events(_) => Clock::Deadlines(DeadlineTimer::new().map_err(Error::Events)?),
            Source::Poll { .. } => {
                let interval = self.settings.interval;
                let mut ticker = tokio::time::interval_at(first + interval, interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                Clock::Ticks(ticker)
            }
        };
        let changes = self
            .changes
            .as_ref()
            .map(|changes| changes.waitable().and_then(readable))
            .transpose()
            .map_err(Error::Events)?;
        let oom_kills = self
            .oom_counts
            .as_ref()
            .and_then(OomCounts::waitable)
            .map(readable)
            .transpose()
            .map_err(Error::Events)?;
        if let Some(pressure) = self.pressure.as_mut() {
            pressure.register().map_err(Error::Events)?;
        }
        let mut service = Service::connect();
        service.ready(self.watch.list().len(), self.is_event_driven());
        crate::footprint::trim();
        // After trimming: freed heap pages cannot be given back once locked.
        if self.settings.harden {
            start::lock_memory();
        }
        tracing::debug!(event = "ready", "start-up done");
        let allocations = crate::footprint::allocations();
        let mut waits = Waits {
            service: &mut service,
            shutdown: &mut shutdown,
            changes,
            oom_kills,
            metrics: Arc::clone(&self.actions.metrics),
        };
        let outcome = match clock {
            Clock::Ticks(ticker) => self.run_poll(ticker, &mut waits).await?,
            Clock::Deadlines(timer) => self.run_events(timer, &mut waits).await?,
        };
        service.stopping();
        let allocations = crate::footprint::allocations() - allocations;
        // The monitor's own counters are for whoever debugs it (-v): at the default level a
        // count of allocations would read like an alarm.
        let verbose = tracing::enabled!(tracing::Level::DEBUG);
        let allocations = verbose.then_some(allocations);
        let events = verbose.then(|| self.events_handled());
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

    /// Poll mode: a look at every process each tick.
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
                    if self.watch.nothing_left(&self.in_force.rules) {
                        return Ok(Outcome::NothingLeft);
                    }
                }
                fired = fired(self.pressure.as_ref()) => self.on_pressure(fired, Instant::now()),
                wake = waits.next(self.reload_at, self.unmatched_at) => {
                    if let Some(outcome) = self.on_wake(wake, waits)? {
                        return Ok(outcome);
                    }
                }
            }
        }
    }

    /// eBPF mode: kernel events as they come, and the deadlines of repeats, kills and
    /// held-back reports.
    async fn run_events(
        &mut self,
        mut timer: DeadlineTimer,
        waits: &mut Waits<'_>,
    ) -> Result<Outcome, Error> {
        // Events left in the ring buffer after a turn (see `handle_events`).
        let mut pending = false;
        loop {
            if self.watch.nothing_left(&self.in_force.rules) {
                return Ok(Outcome::NothingLeft);
            }
            timer.set(self.next_deadline()).map_err(Error::Events)?;
            tokio::select! {
                ready = self.ring.readable() => {
                    ready.map_err(Error::Events)?;
                    pending = self.handle_events();
                }
                () = std::future::ready(()), if pending => pending = self.handle_events(),
                expired = timer.expired() => {
                    expired.map_err(Error::Events)?;
                    self.handle_due(Instant::now());
                }
                fired = fired(self.pressure.as_ref()) => self.on_pressure(fired, Instant::now()),
                wake = waits.next(self.reload_at, self.unmatched_at) => {
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
            Wake::OomKilled(ready) => {
                ready.map_err(Error::Events)?;
                if let Some(counts) = &self.oom_counts {
                    counts.drain_notices();
                }
                self.count_oom_kills();
            }
            Wake::RulesFileSettled => {
                self.reload_at = None;
                tracing::info!(
                    event = "rules_file_changed",
                    "the rules file changed; reading it again"
                );
                self.reload(Instant::now(), waits.service);
            }
            Wake::Unmatched => {
                self.unmatched_at = None;
                let matched = self.running().matched;
                unmatched::later(&self.in_force.rules, matched, self.settings.interval);
            }
            Wake::Watchdog => waits.service.ping(),
            Wake::Liveness => waits.metrics.liveness.answer(),
            Wake::Request(Request::Stop) => return Ok(Some(Outcome::Stopped)),
            Wake::Request(Request::Reload) => self.reload(Instant::now(), waits.service),
        }
        Ok(None)
    }
}

/// `fd` (a duplicate, the waiter's own) registered with the runtime, to be waited on until
/// it is readable.
fn readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    register(fd, Interest::READABLE)
}

/// What times the loop: poll mode's ticks, or eBPF mode's deadlines.
enum Clock {
    Ticks(tokio::time::Interval),
    Deadlines(DeadlineTimer),
}
