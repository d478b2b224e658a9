//! When a watched process crosses one of its levels: the limit, its rule's warning level if
//! it has one, and its share of its rule's group budget if it has one (`budget`). Both are judged the same way, from the same figures: the approximate RSS
//! against a trigger that lies the counters' error under the level, one report per crossing
//! (the level's flag is cleared when the report goes, and set again by userspace's re-arm
//! request once it has seen the exact RSS under the level, or here once the approximate RSS
//! falls back under the trigger). The limit also has the kernel signal.

use aya_ebpf::helpers::bpf_send_signal;
use memory_monitor_ebpf::{
    Share, WATCH_ARMED, WATCH_KERNEL_SIGNALLED, WATCH_SHARE_ARMED, WATCH_SUMS_CPUS,
    WATCH_WARN_ARMED, Watch, event_kind, exact, level, rearm_key,
};

use crate::exact_reading::{EXACT_SUM, summed_bytes};
use crate::{BPF_NOEXIST, REARM, SIGNAL_CLAIMS, THREAD_LAG, emit, now_ns};

/// One level a watch is judged against.
#[derive(Clone, Copy)]
struct Level {
    /// The approximate RSS at or above which the process is near it.
    trigger: u64,
    /// The level itself: an exact figure greater than it is over it.
    at: u64,
    /// The `WATCH_*` flag that says its next crossing is reported.
    armed: u32,
    /// The flags a fall back under the trigger clears as it re-arms (the kernel signal's).
    clears: u32,
    /// Its [`event_kind`]s, up and down.
    near: u32,
    under: u32,
    /// Its re-arm requests' key in `REARM`.
    key: u64,
}

/// What a change leaves due at one level.
#[derive(Clone, Copy)]
struct Due {
    /// Its crossing is to be reported (it is armed, or a re-arm request has come due).
    report: bool,
    /// A re-arm request has come due.
    requested: bool,
}

impl Due {
    const NOTHING: Due = Due {
        report: false,
        requested: false,
    };
}

impl Level {
    /// The limit, with `trigger` (less each thread's lag).
    #[inline(always)]
    fn limit(watch: &Watch, tgid: u32, trigger: u64) -> Level {
        Level {
            trigger,
            at: watch.limit,
            armed: WATCH_ARMED,
            clears: WATCH_KERNEL_SIGNALLED,
            near: event_kind::NEAR,
            under: event_kind::UNDER,
            key: rearm_key(tgid, level::LIMIT),
        }
    }

    /// The warning level: as far under the limit's `trigger` as it is under the limit.
    #[inline(always)]
    fn warning(watch: &Watch, tgid: u32, trigger: u64) -> Level {
        Level {
            trigger: trigger.saturating_sub(watch.warn_below),
            at: watch.limit.saturating_sub(watch.warn_below),
            armed: WATCH_WARN_ARMED,
            clears: 0,
            near: event_kind::WARN_NEAR,
            under: event_kind::WARN_UNDER,
            key: rearm_key(tgid, level::WARNING),
        }
    }

    /// Its share of its rule's group budget: its own trigger, less each thread's `lag`.
    #[inline(always)]
    fn share(watch: &Watch, tgid: u32, share: Share, lag: u64) -> Level {
        Level {
            trigger: share.trigger.saturating_sub(watch.lag_of_threads(lag)),
            at: share.at,
            armed: WATCH_SHARE_ARMED,
            clears: 0,
            near: event_kind::SHARE_NEAR,
            under: event_kind::SHARE_UNDER,
            key: rearm_key(tgid, level::SHARE),
        }
    }

    /// Whether `rss` leaves nothing to do at this level: under the trigger, and armed.
    #[inline(always)]
    fn settled(&self, watch: &Watch, rss: u64) -> bool {
        rss < self.trigger && watch.flags & (self.armed | self.clears) == self.armed
    }

    /// Under the trigger, re-arms the level (saying so) if it was not armed; else says what
    /// is due.
    #[inline(always)]
    fn due(&self, watch: &mut Watch, tgid: u32, rss: u64) -> Due {
        if rss < self.trigger {
            if !self.settled(watch, rss) {
                watch.flags = (watch.flags | self.armed) & !self.clears;
                let _ = REARM.remove(self.key);
                if self.clears != 0 {
                    let _ = SIGNAL_CLAIMS.remove(tgid);
                }
                watch.last_event_ns = now_ns();
                emit(self.under, tgid, rss);
            }
            return Due::NOTHING;
        }
        let armed = watch.flags & self.armed != 0;
        // SAFETY: a plain value copied out at once.
        let requested =
            !armed && unsafe { REARM.get(self.key) }.is_some_and(|&from| now_ns() >= from);
        Due {
            report: armed || requested,
            requested,
        }
    }

    /// Reports the crossing if `due`, at `figure`: when that is `exact`, only if it is over
    /// the level (exactly under, a request honoured arms the level again).
    #[inline(always)]
    fn report(&self, watch: &mut Watch, tgid: u32, due: Due, figure: u64, exact: bool) {
        if !due.report {
            return;
        }
        if exact && figure <= self.at {
            if due.requested {
                let _ = REARM.remove(self.key);
                watch.flags |= self.armed;
            }
            return;
        }
        // Takes the request just honoured, or a stale one from before the last re-arm.
        let _ = REARM.remove(self.key);
        watch.flags &= !self.armed;
        watch.last_event_ns = now_ns();
        emit(self.near, tgid, figure);
    }
}

/// The crossings of watched process `tgid`'s share of its rule's group budget, if its rule has
/// one (`WATCH_GROUPED`: the RSS program calls it only then, once a change is counted and
/// the other levels judged), judged on the approximate figure alone: within the margin
/// userspace decides, reading the whole group. Returns 0.
///
/// A global function (`no_mangle`: global in the object's BTF), which the verifier checks
/// once, on its own, with nothing known of its argument, instead of once for each state the
/// RSS program reaches it in (a static function's body is walked anew for each, and the RSS
/// program reaches this in many); so it takes its tgid, a number, and looks its watch up
/// again.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn judge_share(tgid: u32) -> u32 {
    let Some(watch) = crate::WATCHED.get_ptr_mut(tgid) else {
        return 0;
    };
    // SAFETY: a live map value (as the RSS program's own, see `update`).
    let watch = unsafe { &mut *watch };
    let Some(share) = crate::budget::share_of(watch, tgid) else {
        return 0;
    };
    let rss = watch.approximate_rss();
    let level = Level::share(watch, tgid, share, THREAD_LAG.load());
    let due = level.due(watch, tgid, rss);
    level.report(watch, tgid, due, rss, false);
    0
}

/// The crossings of watched process `tgid`'s limit and warning level, once a change is
/// counted (`in_own_context`: 1 when the process made it itself): one event per crossing of
/// each level's trigger, up or down; the kernel signal when asked for. Within the margin, a
/// watch that sums the per-CPU parts (`WATCH_SUMS_CPUS`) judges by the exact figure, read
/// from its map once for both levels: it is reported, and signalled, only once that is over
/// the level, so a process that stays under it is never reported. Returns 0.
///
/// A global function, as `judge_share` is and for the same reason: the RSS program reaches
/// it in many states (one for each counter a change can be to, and each way a map is
/// learned), and the verifier would walk a static function's body, with its loop over every
/// possible CPU, again for each. The call and the second lookup are paid only where
/// [`judge_if_due`] finds something may be due.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn judge(tgid: u32, in_own_context: u32) -> u32 {
    let Some(watch) = crate::WATCHED.get_ptr_mut(tgid) else {
        return 0;
    };
    // SAFETY: a live map value (as the RSS program's own, see `update`).
    let watch = unsafe { &mut *watch };
    let in_own_context = in_own_context != 0;
    let rss = watch.approximate_rss();
    let trigger = watch.trigger_with(THREAD_LAG.load());
    let (limit, warning) = levels(watch, tgid, trigger);
    let limit_due = limit.due(watch, tgid, rss);
    let warning_due = match watch.warn_below {
        0 => Due::NOTHING,
        _ => warning.due(watch, tgid, rss),
    };
    let signal = watch.signal;
    let signal_due = signal != 0
        && in_own_context
        && rss >= trigger
        && watch.flags & WATCH_KERNEL_SIGNALLED == 0;
    if !signal_due && !limit_due.report && !warning_due.report {
        return 0;
    }
    // A constant where the loader did not set the sum up, so the verifier leaves it out.
    let exact = EXACT_SUM.load() == exact::SUM_CPU_PARTS && watch.flags & WATCH_SUMS_CPUS != 0;
    let figure = match exact {
        true => summed_bytes(watch),
        false => rss,
    };
    if signal_due && figure > watch.limit {
        watch.flags |= WATCH_KERNEL_SIGNALLED;
        if SIGNAL_CLAIMS.insert(tgid, 1, BPF_NOEXIST).is_ok() {
            // SAFETY: signals the current process, which is the one over the limit.
            unsafe { bpf_send_signal(signal) };
            emit(event_kind::KERNEL_SIGNAL, tgid, figure);
        }
    }
    warning.report(watch, tgid, warning_due, figure, exact);
    limit.report(watch, tgid, limit_due, figure, exact);
    0
}

/// The limit and the warning level of `watch`, with the limit's `trigger`.
#[inline(always)]
fn levels(watch: &Watch, tgid: u32, trigger: u64) -> (Level, Level) {
    (
        Level::limit(watch, tgid, trigger),
        Level::warning(watch, tgid, trigger),
    )
}

/// Judges watched process `tgid`'s limit and warning level ([`judge`]) once a change is
/// counted, unless the approximate RSS is under both triggers with both armed, which leaves
/// nothing to do (and no kernel signal, which wants the limit's trigger reached): so nearly
/// every change makes no call, and pays no second lookup of its watch.
#[inline(always)]
pub(crate) fn judge_if_due(watch: &Watch, tgid: u32, in_own_context: bool) {
    let rss = watch.approximate_rss();
    let (limit, warning) = levels(watch, tgid, watch.trigger_with(THREAD_LAG.load()));
    let settled =
        limit.settled(watch, rss) && (watch.warn_below == 0 || warning.settled(watch, rss));
    if !settled {
        judge(tgid, u32::from(in_own_context));
    }
}
