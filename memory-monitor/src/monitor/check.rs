//! One look at one watched process: measure its exact RSS, judge it by its rule's policy, and
//! act on the verdict (profile, signal, log, count, hook).

use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::actions::Actions;
use super::in_force::{InForce, RuleActions};
use crate::accounting::{Accounting, Exact};
use crate::act::deliver::{self, Delivery, Dispatch, Reported};
use crate::act::group::Group;
use crate::act::hook::{Breach, HookEvent};
use crate::kernel::{KernelLink, Level};
use crate::policy::{Policy, Verdict};
use crate::rules::{ActOn, Rule, RuleSet};
use crate::signal::Signal;
use crate::system::procfs::ProcRoot;
use crate::units::Bytes;
use crate::watch::process::WatchedProcess;
use crate::watch::scan::Exclusions;

/// When and how a check measures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Look {
    /// Now.
    pub(crate) now: Instant,
    /// How this kernel counts RSS: how far `statm` can be off.
    pub(crate) accounting: Accounting,
    /// Which exact figure decides.
    pub(crate) exact: Exact,
    /// The kernel side is waiting to be re-armed for the process, after this gap (eBPF mode,
    /// after a report).
    pub(crate) rearm: Option<Duration>,
    /// The kernel report this look answers (eBPF mode), for the breach's line.
    pub(crate) reported: Option<Reported>,
}

/// How many times its own exact reading a process's held-back report waits at least. Where the
/// exact figure is a page-table walk (`smaps_rollup`: 6 ms at 1 GiB, 28 ms at 4 GiB), a
/// process churning near its limit would otherwise keep the monitor walking its page tables,
/// taking its mmap lock (which its own `munmap` then waits for), all the time. Eight readings'
/// worth was measured best of 1, 4 and 8 (`cargo xtask bench --only churn`; see
/// `docs/performance.md`, "Near the limit, a large process"); growth inside the gap is still
/// caught, by the look at its end.
const GAP_PER_READING: u32 = 8;

/// Where threads cache their RSS changes (up to 6.1), how often a process found under its
/// limit, but close enough for its threads' caches to hold a crossing, is read again. The
/// kernel side sees a cache only when its thread folds it in, every 65 faults: a process that
/// crosses inside a cache and then stops faulting would otherwise go unseen until it faults
/// again, seconds or hours later. (One that goes on faulting folds within 65 faults and is
/// reported then.) A reading sums the caches (`thread-sum`, some 10 µs): every 20 ms is
/// 0.05 % of a core. Every 2 ms was tried: under the guests' emulation, where a reading takes
/// a millisecond, it slowed the monitor's reports (medians 4–30 ms against 0.4–14 ms).
const CACHED_RECHECK: Duration = Duration::from_millis(20);

/// Whether `watched`, exactly `rss` against `limit`, is close enough to it that changes its
/// threads hold in their caches, unseen by the kernel side, could take it over. Only where
/// the kernel side's exact reading sums those caches, so that reading it again is cheap.
fn cached_changes_could_cross(
    watched: &WatchedProcess,
    proc: &ProcRoot,
    rss: u64,
    limit: u64,
    look: Look,
) -> bool {
    if look.exact != Exact::ThreadCaches {
        return false;
    }
    let threads = proc.threads(watched.pid()).unwrap_or(1);
    rss.saturating_add(threads.saturating_mul(look.accounting.thread_lag())) > limit
}

/// The gap to hold a process's next report back for: `asked`, or longer when its exact reading
/// took `reading`.
pub(crate) fn report_gap(asked: Duration, reading: Duration) -> Duration {
    asked.max(reading * GAP_PER_READING)
}

/// The policy `watched` is judged by: its rule's, at its own limit.
pub(crate) fn policy_of(rules: &RuleSet, watched: &WatchedProcess) -> Policy {
    let rule = rules.get(watched.rule());
    Policy {
        limit: watched.limit(),
        warn: rule.warn_level(watched.limit()),
        signal: rule.signal,
        repeat: rule.repeat,
        kill_after: rule.kill_after,
    }
}

/// When `watched` next needs a look: a repeat or kill falling due, or a held-back report.
pub(crate) fn due_at(rules: &RuleSet, watched: &WatchedProcess) -> Option<Instant> {
    earliest(
        policy_of(rules, watched).deadline(&watched.episode),
        watched.recheck,
    )
}

/// The earlier of two deadlines, either of which may be absent.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The levels `policy` judges by, each with its size: the warning level (if any) and the
/// limit.
fn levels(policy: &Policy) -> impl Iterator<Item = (Level, u64)> {
    [
        (Level::Warning, policy.warn),
        (Level::Limit, Some(policy.limit)),
    ]
    .into_iter()
    .filter_map(|(level, at)| at.map(|at| (level, at)))
}

/// The lowest level `rss` is at or under (the next it could cross), if any.
fn next_level(policy: &Policy, rss: u64) -> Option<u64> {
    levels(policy).map(|(_, at)| at).find(|&at| rss <= at)
}

/// Measures `watched`, judges it and acts; returns the verdict and the exact RSS, or `None`
/// once the process is gone. With a kernel side waiting for it, a process found under a
/// level (the limit, the warning level) is re-armed there before a second, deciding reading,
/// so that no growth between the two can go unreported. (Re-armed before the first reading
/// instead, a process over the level whose reading outlasts the gap would be reported again
/// during every reading.)
pub(crate) fn check(
    watched: &mut WatchedProcess,
    in_force: &InForce,
    proc: &ProcRoot,
    actions: &Actions,
    look: Look,
    kernel: &mut dyn KernelLink,
) -> Option<(Verdict, u64)> {
    let rules = &in_force.rules;
    let policy = policy_of(rules, watched);
    let count = rules.get(watched.rule()).count;
    let reading = Instant::now();
    let mut rss = measure(watched, proc, &policy, count, look, kernel);
    let reading = reading.elapsed();
    // A re-arm request waiting on the kernel side: a held-back report's, due at its gap's end.
    let mut rearm_pending = watched.recheck.take().is_some();
    if let (Ok(first), Some(asked)) = (rss, look.rearm)
        && first <= policy.limit
    {
        let gap = match asked.is_zero() {
            true => asked,
            false => report_gap(asked, reading),
        };
        for (level, _) in levels(&policy).filter(|&(_, at)| first <= at) {
            kernel.rearm(watched.pid(), level, gap);
        }
        rearm_pending = true;
        rss = measure(watched, proc, &policy, count, look, kernel);
        // Still under: the kernel side stays quiet for the gap (longer when the reading was
        // long), so look again after it; and, where threads hide changes in their caches, as
        // long as those could hold a crossing of the next level.
        if let Ok(rss) = rss
            && let Some(next) = next_level(&policy, rss)
        {
            watched.recheck = (!gap.is_zero()).then(|| look.now + gap);
            if cached_changes_could_cross(watched, proc, rss, next, look) {
                watched.recheck = earliest(watched.recheck, Some(look.now + CACHED_RECHECK));
            }
        }
    }
    // Not under a level after all, or not at a held-back report's end (found there before the
    // kernel side's own next report): no report of it is wanted while it stays over.
    if rearm_pending {
        for (level, _) in levels(&policy).filter(|&(_, at)| !rss.is_ok_and(|rss| rss <= at)) {
            kernel.cancel_rearm(watched.pid(), level);
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
    let verdict = policy.judge(&mut watched.episode, rss, look.now);
    // Checked again before a signal: the monitor's parent may have changed since admission
    // (re-parented to a subreaper that a rule matches).
    if verdict.signals() && Exclusions::now().excludes(watched.pid()) {
        return None;
    }
    tracing::trace!(pid = watched.pid(), name = %watched.comm(), rss = %Bytes(rss), "measured");
    act(
        watched, in_force, proc, actions, &policy, verdict, rss, look, kernel,
    );
    Some((verdict, rss))
}

/// `watched`'s exact RSS as a check would read it now, by its rule's policy and count (see
/// [`measure`]): a group's reading of its members (`group-limit`).
pub(crate) fn read(
    watched: &WatchedProcess,
    rules: &RuleSet,
    proc: &ProcRoot,
    look: Look,
    kernel: &mut dyn KernelLink,
) -> Result<u64, Errno> {
    let policy = policy_of(rules, watched);
    let count = rules.get(watched.rule()).count;
    measure(watched, proc, &policy, count, look, kernel)
}

/// `watched`'s exact RSS against `policy`'s levels (see [`WatchedProcess::exact_rss`]),
/// counted as `count` says: by the kernel side's reading where that decides (`look.exact`) and
/// it can tell, else from `/proc`. `Err(Errno::SRCH)` once the process has exited. Allocates
/// nothing.
fn measure(
    watched: &WatchedProcess,
    proc: &ProcRoot,
    policy: &Policy,
    count: crate::rules::count::Count,
    look: Look,
    kernel: &mut dyn KernelLink,
) -> Result<u64, Errno> {
    let read = match look.exact.is_kernel_reading() {
        true => kernel.exact_rss(watched.pid()),
        false => None,
    };
    match read {
        Some(_) if watched.has_exited() => Err(Errno::SRCH),
        Some(bytes) => Ok(bytes),
        None => watched.exact_rss(
            proc,
            &mut [0u8; 128],
            crate::system::procfs::page_size(),
            (policy.limit, policy.warn),
            (look.accounting, look.exact),
            count,
        ),
    }
}

/// Carries out `verdict` for `watched`, measured at `rss`: a breach is profiled first (the
/// process may exit on its signal and take its memory with it), then signalled (unless the
/// kernel side claimed the signal), logged, counted, and handed to the rule's hook.
#[allow(
    clippy::too_many_arguments,
    reason = "one process's whole situation, each part read here"
)]
fn act(
    watched: &mut WatchedProcess,
    in_force: &InForce,
    proc: &ProcRoot,
    actions: &Actions,
    policy: &Policy,
    verdict: Verdict,
    rss: u64,
    look: Look,
    kernel: &mut dyn KernelLink,
) {
    let index = watched.rule();
    let (rule, rule_actions) = (in_force.rules.get(index), in_force.actions(index));
    let metrics = &rule_actions.metrics;
    let event = match verdict {
        Verdict::Breach => Some((HookEvent::Breach, &metrics.breaches)),
        Verdict::Warn => Some((HookEvent::Warn, &metrics.warnings)),
        _ => None,
    };
    if let Some((_, counter)) = event {
        counter.inc();
        // Its name and user now, for the line and hook (a rename under the same rule is not
        // reported by the kernel side).
        watched.reread_identity(proc);
    }
    let profile = match event {
        Some(_) => take_profile(watched, rule_actions, rss, policy.limit, kernel),
        None => None,
    };
    let dispatch = match verdict {
        Verdict::Breach => match kernel.claim_signal(watched.pid()) {
            true => actions.dispatch,
            false => Dispatch::SentByKernel,
        },
        Verdict::Recovered => {
            kernel.release_claim(watched.pid());
            actions.dispatch
        }
        _ => actions.dispatch,
    };
    let delivered = deliver::act(
        &rule.name,
        policy,
        verdict,
        watched,
        Group::of(rule),
        proc,
        rss,
        dispatch,
        look.reported,
    );
    if let Some((delivery, _)) = delivered {
        let signal = match verdict {
            Verdict::Kill => Signal::KILL,
            _ => policy.signal,
        };
        metrics.signalled(signal, delivery);
    }
    if let Some((event, _)) = event {
        // What `MM_SIGNAL` says: nothing at a warning, where none is due.
        let signal = || match delivered {
            None => String::new(),
            Some((Delivery::Sent | Delivery::SentByKernel, _)) => policy.signal.to_string(),
            Some((other, _)) => other.to_string(),
        };
        let acted_on = delivered.map(|(_, acted_on)| acted_on);
        let at = (rss, policy.limit);
        fire_hook(
            actions,
            rule,
            watched,
            event,
            at,
            (signal, acted_on),
            profile,
        );
    }
}

/// Takes the rule's profile of `watched`, at `rss` against `limit`, with the growth stacks the
/// kernel side sampled, if the rule profiles; the profile's name.
pub(super) fn take_profile(
    watched: &WatchedProcess,
    rule_actions: &RuleActions,
    rss: u64,
    limit: u64,
    kernel: &mut dyn KernelLink,
) -> Option<String> {
    let profiler = rule_actions.profiler.as_ref()?;
    let name = watched.comm().to_string();
    let growth = kernel.take_growth(watched.pid());
    profiler.profile(
        watched.pid(),
        watched.pidfd(),
        &name,
        *watched.identity(),
        rss,
        limit,
        growth,
    )
}

/// Runs `rule`'s hook, if it has one, for `event` about `watched` at (`rss`, `limit`), with
/// `MM_SIGNAL` from `signal` (made only then: without a hook nothing is allocated) and
/// `MM_ACTED_ON` from `acted_on`.
pub(super) fn fire_hook(
    actions: &Actions,
    rule: &Rule,
    watched: &WatchedProcess,
    event: HookEvent,
    (rss, limit): (u64, u64),
    (signal, acted_on): (impl FnOnce() -> String, Option<ActOn>),
    profile: Option<String>,
) {
    let (Some(hook), Some(exec)) = (&actions.hook, &rule.exec) else {
        return;
    };
    hook.fire(Breach {
        event,
        exec: exec.clone(),
        rule: rule.name.clone(),
        pid: watched.pid(),
        name: watched.comm().to_string(),
        uid: watched.uid(),
        user: crate::system::users::UserName(watched.uid()).to_string(),
        rss,
        limit,
        signal: signal(),
        acted_on,
        profile: profile.unwrap_or_default(),
        container_id: watched.identity().container().unwrap_or("").to_owned(),
        pod_uid: watched.identity().pod().unwrap_or("").to_owned(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::metrics::Metrics;
    use crate::kernel::Unloaded;
    use crate::kernel::fake::FakeKernel;
    use crate::matcher::{MatchMode, Matcher};
    use crate::rules::{Rule, RuleSet, Selector};
    use crate::testing::Sleeper;
    use crate::units::SizeSpec;

    /// Rules watching the sleeper at `limit` bytes with SIGCONT (harmless to a sleeping process),
    /// once per breach; the process watched; and what acting needs, in a dry run.
    fn watched_sleeper(
        sleeper: &Sleeper,
        limit: u64,
    ) -> (InForce, ProcRoot, WatchedProcess, Actions) {
        watched_sleeper_under(sleeper, limit, None, None)
    }

    /// The same, re-signalled every `repeat` and killed (in the dry run) `kill_after` the
    /// breach, when they are given.
    fn watched_sleeper_under(
        sleeper: &Sleeper,
        limit: u64,
        repeat: Option<Duration>,
        kill_after: Option<Duration>,
    ) -> (InForce, ProcRoot, WatchedProcess, Actions) {
        let matcher = Matcher::new(MatchMode::Exact, sleeper.name()).unwrap();
        let mut rule = Rule::new("sleepers", Selector::name(matcher), SizeSpec::Bytes(limit));
        rule.signal = "CONT".parse().unwrap();
        rule.repeat = repeat;
        rule.kill_after = kill_after;
        let rules = RuleSet::new(vec![rule]).unwrap();
        let proc = ProcRoot::open().unwrap();
        let mut buf = vec![0; 4096];
        let watched = WatchedProcess::open(&proc, sleeper.pid(), &rules, &mut buf, false).unwrap();
        let metrics = Metrics::new(None);
        let in_force = InForce::build(rules, &metrics, true).unwrap();
        let actions = Actions::start(&in_force.rules, metrics, true).unwrap();
        (in_force, proc, watched, actions)
    }

    fn look(rearm: Option<Duration>) -> Look {
        look_when(Instant::now(), rearm)
    }

    /// A look at `now`, answering no kernel report.
    fn look_when(now: Instant, rearm: Option<Duration>) -> Look {
        Look {
            now,
            accounting: Accounting::Unknown,
            exact: Exact::SmapsRollup,
            rearm,
            reported: None,
        }
    }

    #[test]
    fn under_the_limit_after_a_report_it_is_rearmed_before_the_deciding_read() {
        let sleeper = Sleeper::start();
        let (rules, proc, mut watched, actions) = watched_sleeper(&sleeper, 1 << 40);
        let mut kernel = FakeKernel::default();
        let gap = Duration::from_micros(250);
        let look = look(Some(gap));
        let (verdict, _) = check(&mut watched, &rules, &proc, &actions, look, &mut kernel).unwrap();
        assert_eq!(verdict, Verdict::Quiet);
        // Held back for the gap: looked at again once it ends. (At least the gap asked for:
        // longer when the reading took longer than an eighth of it, as under load.)
        let held = watched.recheck.expect("looked at again") - look.now;
        assert!(held >= gap, "{held:?}");
        assert_eq!(kernel.told(), [format!("rearm after {held:?}")]);
        // Without a report to answer, nothing is asked of the kernel side.
        let mut kernel = FakeKernel::default();
        check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            super::tests::look(None),
            &mut kernel,
        );
        assert!(kernel.told().is_empty(), "{:?}", kernel.told());
        assert_eq!(watched.recheck, None);
    }

    #[test]
    fn over_the_limit_no_rearm_is_left_and_the_signal_is_claimed_once() {
        let sleeper = Sleeper::start();
        // Any process is over one byte.
        let (rules, proc, mut watched, actions) = watched_sleeper(&sleeper, 1);
        let mut kernel = FakeKernel::default();
        let (verdict, rss) = check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            look(Some(Duration::from_micros(250))),
            &mut kernel,
        )
        .unwrap();
        assert_eq!(verdict, Verdict::Breach);
        assert!(rss > 1);
        assert_eq!(kernel.told(), ["claim"], "no re-arm over the limit");
        assert!(watched.episode.is_over());
        // Still over: no new breach, nothing claimed again.
        let (verdict, _) = check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            look(None),
            &mut kernel,
        )
        .unwrap();
        assert_eq!(verdict, Verdict::Quiet);
        assert_eq!(kernel.told(), ["claim"]);
    }

    #[test]
    fn over_the_limit_at_a_held_back_reports_end_its_pending_rearm_is_withdrawn() {
        let sleeper = Sleeper::start();
        let (rules, proc, mut watched, actions) = watched_sleeper(&sleeper, 1);
        let mut kernel = FakeKernel::default();
        // A report held back earlier, its gap now over.
        watched.recheck = Some(Instant::now());
        // The look at the gap's end (`handle_due`'s).
        let (verdict, _) = check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            look(Some(Duration::ZERO)),
            &mut kernel,
        )
        .unwrap();
        assert_eq!(verdict, Verdict::Breach);
        assert_eq!(kernel.told(), ["cancel rearm", "claim"]);
        assert_eq!(watched.recheck, None);
    }

    #[test]
    fn a_breach_falls_due_again_at_its_repeat_and_its_kill_and_each_is_acted_on_then() {
        let sleeper = Sleeper::start();
        let (repeat, kill_after) = (Duration::from_secs(2), Duration::from_secs(5));
        let (rules, proc, mut watched, actions) =
            watched_sleeper_under(&sleeper, 1, Some(repeat), Some(kill_after));
        assert_eq!(
            due_at(&rules.rules, &watched),
            None,
            "nothing pending before a breach"
        );
        let mut judged = |now| {
            check(
                &mut watched,
                &rules,
                &proc,
                &actions,
                look_when(now, None),
                &mut Unloaded,
            )
            .unwrap()
            .0
        };
        let breach = Instant::now();
        assert_eq!(judged(breach), Verdict::Breach);
        // Looked at before anything is due: nothing is done.
        assert_eq!(judged(breach + repeat / 2), Verdict::Quiet);
        assert_eq!(judged(breach + repeat), Verdict::Repeat);
        assert_eq!(judged(breach + repeat * 2), Verdict::Repeat);
        // The kill comes before the third repeat would, and ends what falls due.
        assert_eq!(judged(breach + kill_after), Verdict::Kill);
        assert_eq!(
            due_at(&rules.rules, &watched),
            None,
            "nothing after the kill"
        );
    }

    #[test]
    fn the_next_look_is_due_at_the_earliest_of_repeat_kill_and_held_back_report() {
        let sleeper = Sleeper::start();
        let (repeat, kill_after) = (Duration::from_secs(2), Duration::from_secs(3));
        let (rules, proc, mut watched, actions) =
            watched_sleeper_under(&sleeper, 1, Some(repeat), Some(kill_after));
        let breach_look = look(None);
        let breach = breach_look.now;
        check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            breach_look,
            &mut Unloaded,
        );
        assert_eq!(due_at(&rules.rules, &watched), Some(breach + repeat));
        watched.recheck = Some(breach + repeat / 4);
        assert_eq!(due_at(&rules.rules, &watched), Some(breach + repeat / 4));
    }

    #[test]
    fn a_report_is_held_back_for_eight_of_its_exact_readings_when_they_take_longer_than_the_gap() {
        let gap = Duration::from_micros(250);
        // statm: the gap asked for.
        assert_eq!(report_gap(gap, Duration::from_micros(9)), gap);
        // A 1 GiB process's smaps_rollup walk.
        assert_eq!(
            report_gap(gap, Duration::from_millis(6)),
            Duration::from_millis(48)
        );
    }

    #[test]
    fn where_the_kernel_sides_reading_decides_its_figure_is_judged() {
        let sleeper = Sleeper::start();
        let (rules, proc, mut watched, actions) = watched_sleeper(&sleeper, 1 << 30);
        let deciding = |exact| Look {
            exact,
            ..look(None)
        };
        // The reading says 2 GiB: over, where it decides.
        let mut kernel = FakeKernel::reading(2 << 30);
        let (verdict, rss) = check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            deciding(Exact::CpuParts),
            &mut kernel,
        )
        .unwrap();
        assert_eq!((verdict, rss), (Verdict::Breach, 2 << 30));
        // Where /proc's figure decides, the reading is not asked: the sleeper is far under.
        let (rules, proc, mut watched, actions) = watched_sleeper(&sleeper, 1 << 30);
        let (verdict, rss) = check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            deciding(Exact::Statm),
            &mut kernel,
        )
        .unwrap();
        assert_eq!(verdict, Verdict::Quiet);
        assert!(rss < 1 << 30);
        // A reading that cannot tell leaves it to /proc.
        let (verdict, _) = check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            deciding(Exact::ThreadCaches),
            &mut FakeKernel::default(),
        )
        .unwrap();
        assert_eq!(verdict, Verdict::Quiet);
    }

    #[test]
    fn where_thread_caches_could_hold_a_crossing_the_process_is_looked_at_again() {
        let sleeper = Sleeper::start();
        // Its RSS once its exec is over (the loader maps its libraries after it is named).
        let resident = || {
            let statm = std::fs::read_to_string(format!("/proc/{}/statm", sleeper.pid()));
            let pages: u64 = statm.unwrap().split(' ').nth(1).unwrap().parse().unwrap();
            pages * crate::system::procfs::page_size()
        };
        let mut rss = resident();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = resident();
            if std::mem::replace(&mut rss, now) == now {
                break;
            }
        }
        let thread_caches = |exact| Look {
            accounting: Accounting::PerThread,
            exact,
            ..look(Some(Duration::ZERO))
        };
        let rechecked = |limit, exact| {
            let (rules, proc, mut watched, actions) = watched_sleeper(&sleeper, limit);
            let look = thread_caches(exact);
            // The kernel side's reading: the sleeper's statm.
            let kernel = &mut FakeKernel::reading(rss);
            let (verdict, _) = check(&mut watched, &rules, &proc, &actions, look, kernel).unwrap();
            assert_eq!(verdict, Verdict::Quiet);
            watched.recheck.map(|at| at - look.now)
        };
        // Within one thread's cache (4.1 MiB) of its limit: looked at again soon, though no
        // gap was asked for (the look at a held-back report's end).
        assert_eq!(
            rechecked(rss + (1 << 20), Exact::ThreadCaches),
            Some(CACHED_RECHECK)
        );
        // Far under it, or where statm decides: not.
        assert_eq!(rechecked(rss + (1 << 30), Exact::ThreadCaches), None);
        assert_eq!(rechecked(rss + (1 << 20), Exact::Statm), None);
    }

    #[test]
    fn a_process_gone_is_reported_gone() {
        let mut sleeper = Sleeper::start();
        let (rules, proc, mut watched, actions) = watched_sleeper(&sleeper, 1 << 40);
        sleeper.end();
        let checked = check(
            &mut watched,
            &rules,
            &proc,
            &actions,
            look(None),
            &mut Unloaded,
        );
        assert_eq!(checked, None);
    }
}
