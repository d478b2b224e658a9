//! Leak trends, as the monitor acts on them: each waypoint a process crosses (a kernel event in
//! eBPF mode, a reading in poll mode) goes to its trend (the crate's `trend` module), and when
//! the fit first names the process in a growth series, the monitor says so
//! (`event="leak_suspected"`), counts it, takes the rule's profile and runs its hook
//! (`MM_EVENT=leak_suspected`). Never a signal. Each rule's gauge holds its processes' nearest
//! projected time to the limit.

use std::time::{Duration, Instant};

use memory_monitor_ebpf::Event;

use super::Monitor;
use super::actions::Actions;
use super::check::{fire_hook, take_profile};
use super::in_force::InForce;
use crate::act::hook::HookEvent;
use crate::kernel::KernelLink;
use crate::system::procfs::ProcRoot;
use crate::system::users::UserName;
use crate::trend::Suspicion;
use crate::units::Bytes;
use crate::watch::process::WatchedProcess;
use crate::watch::table::ProcessTable;

/// Poll mode: feeds an exact reading `rss` of `watched` at `now` to its trend (the waypoints
/// the readings cross), and acts if the fit names it.
pub(super) fn reading(
    watched: &mut WatchedProcess,
    in_force: &InForce,
    proc: &ProcRoot,
    actions: &Actions,
    (now, rss): (Instant, u64),
    kernel: &mut dyn KernelLink,
) {
    let Some(leak) = in_force.rules.get(watched.rule()).leak else {
        return;
    };
    let limit = watched.limit();
    if let Some(suspicion) = watched.trend.reading(now, rss, limit, &leak) {
        suspected(watched, in_force, proc, actions, (rss, suspicion), kernel);
    }
}

/// Says that `watched`, at `rss`, is suspected of leaking, and acts: counted, profiled, hooked.
fn suspected(
    watched: &mut WatchedProcess,
    in_force: &InForce,
    proc: &ProcRoot,
    actions: &Actions,
    (rss, suspicion): (u64, Suspicion),
    kernel: &mut dyn KernelLink,
) {
    let index = watched.rule();
    let (rule, rule_actions) = (in_force.rules.get(index), in_force.actions(index));
    rule_actions.metrics.leaks.inc();
    // Its name and user now, for the line and hook.
    watched.reread_identity(proc);
    let limit = watched.limit();
    let profile = take_profile(watched, rule_actions, rss, limit, kernel);
    let (pid, name, uid) = (watched.pid(), watched.comm(), watched.uid());
    let user = UserName(uid);
    let (container_id, pod_uid) = (watched.identity().container(), watched.identity().pod());
    let (rss_bytes, limit_bytes) = (rss, limit);
    let (rss, limit) = (Bytes(rss_bytes), Bytes(limit_bytes));
    let time_to_limit_s = suspicion.time_to_limit.as_secs();
    let time_to_limit = crate::units::Period(Duration::from_secs(time_to_limit_s));
    let slope_bytes_per_s = suspicion.slope as u64;
    let slope = Bytes(slope_bytes_per_s);
    let rule_name = rule.name.as_str();
    tracing::warn!(event = "leak_suspected", rule = rule_name, pid, %name, uid, %user, container_id, pod_uid, %rss, rss_bytes, %limit, limit_bytes, time_to_limit_s, slope_bytes_per_s, "growing {slope}/s: at the limit in {time_to_limit} at this pace; no signal");
    let at = (rss_bytes, limit_bytes);
    fire_hook(
        actions,
        rule,
        watched,
        HookEvent::LeakSuspected,
        at,
        (String::new, None),
        profile,
    );
}

/// Sets rule `index`'s gauge to the nearest projected time to the limit among its processes
/// in `list` (`+Inf`: none is projected to reach it within the horizon). Allocates nothing.
pub(super) fn publish(in_force: &InForce, list: &ProcessTable, index: usize) {
    let Some(gauge) = in_force.actions(index).metrics.leak_time_to_limit.as_ref() else {
        return;
    };
    let nearest = list
        .iter()
        .filter(|watched| watched.rule() == index)
        .filter_map(|watched| watched.trend.projection())
        .min();
    gauge.set(nearest.map_or(f64::INFINITY, |time| time.as_secs_f64()));
}

impl Monitor {
    /// eBPF mode: `event` says process `pid` crossed a waypoint; `read_ns` is when the event
    /// was read, `now` the same moment as an `Instant`.
    pub(super) fn on_waypoint(&mut self, pid: i32, event: &Event, now: Instant, read_ns: u64) {
        let Some(watched) = self.watch.list().get(pid) else {
            return;
        };
        // About an earlier process with this PID.
        if !watched.was_watched_at(event.time_ns) {
            return;
        }
        let Some(leak) = self.in_force.rules.get(watched.rule()).leak else {
            return;
        };
        let index = watched.rule();
        let at = now
            .checked_sub(Duration::from_nanos(read_ns.saturating_sub(event.time_ns)))
            .unwrap_or(now);
        let (in_force, actions) = (&self.in_force, &self.actions);
        self.watch.retain_one(pid, |watched, proc, kernel| {
            let limit = watched.limit();
            if let Some(suspicion) = watched.trend.waypoint(at, event.rss, limit, &leak) {
                suspected(
                    watched,
                    in_force,
                    proc,
                    actions,
                    (event.rss, suspicion),
                    kernel,
                );
            }
            true
        });
        publish(&self.in_force, self.watch.list(), index);
    }

    /// Publishes every leak gauge again (after a look at every process, or a process gone),
    /// in one pass over the processes, when a rule follows leak trends.
    pub(super) fn publish_leaks(&self) {
        let rules = self.in_force.rules.all();
        if rules.iter().all(|rule| rule.leak.is_none()) {
            return;
        }
        let mut nearest = [None::<Duration>; crate::rules::MAX_RULES];
        for watched in self.watch.list().iter() {
            let slot = &mut nearest[watched.rule()];
            *slot = match (*slot, watched.trend.projection()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        for (index, nearest) in nearest.iter().enumerate().take(rules.len()) {
            if let Some(gauge) = self
                .in_force
                .actions(index)
                .metrics
                .leak_time_to_limit
                .as_ref()
            {
                gauge.set(nearest.map_or(f64::INFINITY, |time| time.as_secs_f64()));
            }
        }
    }
}
