//! eBPF mode's events: what each one the kernel side reports means to the monitor, and what a
//! loss of events calls for (a full re-check, said once a minute at most).

use std::time::{Duration, Instant};

use memory_monitor_ebpf::{Event, event_kind};

use super::{EVENT_BATCHES_PER_TURN, Monitor, REPORT_GAP};
use crate::act::deliver::Reported;
use crate::act::metrics::Metrics;
use crate::kernel::Ring;
use crate::units::Bytes;
use crate::watch::Discovered;

/// How often a sustained loss of kernel events is logged (each loss is counted in metrics).
const LOST_EVENTS_SAID_EVERY: Duration = Duration::from_secs(60);

/// While kernel events keep coming faster than they are handled, the re-check that a loss
/// calls for is made at most this often.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// What a loss of kernel events calls for: a look at every process again, and a warning.
#[derive(Debug, Default)]
pub(crate) struct Losses {
    /// Events lost so far (the kernel side's count).
    lost: u64,
    /// When lost events were last said.
    lost_said: Option<Instant>,
    /// Whether lost events call for a re-check of every process, and when the last was made.
    resync_due: bool,
    resynced: Option<Instant>,
}

impl Losses {
    /// After a turn of batches (`more` if events may be left): whether every process is to
    /// be looked at again now because `ring` lost events. The re-check waits until the ring
    /// buffer is drained (what is left in it is handled anyway), or comes once a second while
    /// it never is: a full look at every process per turn would fall ever further behind.
    pub(crate) fn resync_now(&mut self, ring: &mut Ring, more: bool, metrics: &Metrics) -> bool {
        if let Some(lost) = ring.take_lost() {
            metrics.lost_events.inc_by(lost.saturating_sub(self.lost));
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
        let now = Instant::now();
        let due = self.resync_due
            && (!more
                || self
                    .resynced
                    .is_none_or(|at| now.duration_since(at) >= RESYNC_EVERY));
        if due {
            self.resync_due = false;
            self.resynced = Some(now);
        }
        due
    }
}

impl Monitor {
    /// eBPF mode: takes waiting events from the kernel side, at most `EVENT_BATCHES_PER_TURN`
    /// (16) batches, and acts on them; after lost events, looks at every process again.
    /// Returns whether events may be left: then call it again once timers, the watchdog and
    /// signals have had their turn (a flood of events must not hold them up). Allocates
    /// nothing once warmed up.
    pub fn handle_events(&mut self) -> bool {
        let mut more = true;
        for _ in 0..EVENT_BATCHES_PER_TURN {
            let count = self.ring.take_batch();
            self.actions.metrics.events.inc_by(count as u64);
            if count == 0 {
                more = false;
                break;
            }
            let read_ns = crate::system::procfs::monotonic_ns();
            for index in 0..count {
                let event = self.ring.event(index);
                match event.kind {
                    event_kind::OOM_KILL => {
                        let victim = self.ring.victim(index);
                        self.oom_killed(event.tgid as i32, &victim, event.time_ns);
                    }
                    _ => self.on_event(&event, Instant::now(), read_ns),
                }
            }
        }
        if self
            .losses
            .resync_now(&mut self.ring, more, &self.actions.metrics)
        {
            let _ = self.cycle(Instant::now());
        }
        if self.budgets.reading_due() {
            self.check_groups(Instant::now());
        }
        self.in_force.publish(self.watch.list().per_rule());
        more
    }

    /// What one kernel event means.
    fn on_event(&mut self, event: &Event, now: Instant, read_ns: u64) {
        let pid = event.tgid as i32;
        let reported = Reported {
            at_ns: event.time_ns,
            read_ns,
        };
        tracing::trace!(pid, kind = %event_kind::name(event.kind), rss = %Bytes(event.rss), "kernel event");
        // A new program: its growth is a new series, after a new warm-up.
        if event.kind == event_kind::EXEC {
            self.watch.restart_trend(pid, event.time_ns, now);
        }
        match event.kind {
            // Near its limit or its warning level: confirmed on the exact figure (and, being
            // read again soon, its statm kept open meanwhile).
            event_kind::NEAR | event_kind::WARN_NEAR => {
                self.watch.hold_statm(pid);
                self.look_at(pid, now, Some(REPORT_GAP), reported);
            }
            event_kind::UNDER | event_kind::WARN_UNDER => {
                self.look_at(pid, now, None, reported);
                self.watch.release_statm(pid);
            }
            event_kind::KERNEL_SIGNAL => {
                let rss = self.look_at(pid, now, Some(REPORT_GAP), reported);
                let limit = self.watch.list().get(pid).map(|w| w.limit());
                if let (Some(rss), Some(limit)) = (rss, limit)
                    && rss <= limit
                {
                    tracing::warn!(event = "kernel_signal_under_limit", pid, rss = %Bytes(rss), limit = %Bytes(limit),
                        "the kernel signalled on its approximate count; the exact RSS is under the limit");
                }
            }
            // Whatever the kernel side concluded (under the rules it had then, which a reload
            // may have replaced since), userspace decides under the rules in force now.
            // A member went over its share of its group's budget: the group is read.
            event_kind::SHARE_NEAR => self.budgets.read_soon(true),
            event_kind::EXEC
            | event_kind::RENAME
            | event_kind::FORK
            | event_kind::MIGRATE
            | event_kind::CREDS => {
                // Groups may have gained or lost a member.
                self.budgets.read_soon(false);
                if self.discover(pid) {
                    self.look_at(pid, now, None, reported);
                }
            }
            event_kind::WAYPOINT => self.on_waypoint(pid, event, now, read_ns),
            event_kind::EXIT => {
                self.budgets.read_soon(false);
                let projected = self
                    .watch
                    .list()
                    .get(pid)
                    .is_some_and(|watched| watched.trend.projection().is_some());
                self.watch.exited(pid, event.time_ns);
                if projected {
                    self.publish_leaks();
                }
            }
            _ => {}
        }
    }

    /// Has the watch decide on `pid` (admit it, look at it again, or let it go); whether it
    /// is watched after.
    pub(super) fn discover(&mut self, pid: i32) -> bool {
        let discovered = self
            .watch
            .discover(&self.in_force.rules, pid, Instant::now());
        match discovered {
            Discovered::Watched => {
                if let Some(changes) = self.changes.as_mut() {
                    self.watch
                        .follow_limits(&self.in_force.rules, changes, Some(pid));
                }
                true
            }
            Discovered::NotWatched => false,
            Discovered::Skipped(reason) => {
                self.warn_skipped_once(reason, 1);
                false
            }
        }
    }
}
