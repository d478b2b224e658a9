//! Leak trends' waypoints: a watched process whose rule follows leak trends is reported each
//! time its approximate RSS crosses another share of its limit (`memory_monitor_ebpf::waypoint`),
//! up or down. Only after the watched-process lookup has found it, so an unwatched process
//! pays nothing, and a watched one a call and a flag test unless its rule asks for waypoints.
//!
//! Written for the verifier, which walks every path through the RSS program: called last,
//! once the change is judged and sampled, with no branch here (the counters are summed by
//! masks) and the rest in a function of its own that takes scalars, so that its branches are
//! walked for each path that reaches it with nothing of the caller's after them.

use memory_monitor_ebpf::{WATCH_COUNT_SWAP, WATCH_WAYPOINTS, Watch, event_kind, member, waypoint};

use crate::emit;

/// Reports the waypoint `watch` has come to, if it is a new one, and remembers it.
#[inline(always)]
pub(crate) fn follow(watch: &mut Watch, tgid: u32) {
    let rss = approximate_rss(watch);
    watch.waypoint = next(watch.flags, watch.waypoint, watch.limit, tgid, rss);
}

/// [`Watch::approximate_rss`] without a branch: a counter below zero counts as zero by a
/// mask of its sign, and swap by a mask of its flag.
#[inline(always)]
fn approximate_rss(watch: &Watch) -> u64 {
    let counted = |m: usize| {
        let value = watch.members[m];
        (value & !(value >> 63)) as u64
    };
    let swap = 0u64.wrapping_sub(u64::from(watch.flags & WATCH_COUNT_SWAP != 0));
    counted(member::FILE)
        + counted(member::ANON)
        + counted(member::SHMEM)
        + (counted(member::SWAPENTS) & swap)
}

/// The last waypoint, as its index plus one, after a change to `rss`: reported if it is new.
#[inline(never)]
fn next(flags: u32, last: u32, limit: u64, tgid: u32, rss: u64) -> u32 {
    if flags & WATCH_WAYPOINTS == 0 {
        return last;
    }
    match waypoint::due(rss, last, limit >> waypoint::SHIFT) {
        Some(index) => {
            emit(event_kind::WAYPOINT, tgid, rss);
            index + 1
        }
        None => last,
    }
}
