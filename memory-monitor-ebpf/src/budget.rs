//! A watched process's share of its rule's group budget (`group-limit`): a third level,
//! judged as the limit and the warning level are (`crossing`), at the share userspace wrote
//! for it. Userspace shares out what the group has left under its budget so that the shares
//! add up to the budget: the group cannot go over without a member going over its share, and
//! that crossing is reported, once, like any other. No sum over the group is kept here: a
//! total moved by each change's delta would drift (a watch's counters are updated without a
//! lock, and 5.10 has no atomic exchange), while each share is judged from the process's own
//! figures, as exact as its limit is.
//!
//! Only a watch whose rule has a budget (`WATCH_GROUPED`) looks its share up: every other
//! watched process pays one flag test, an unwatched one nothing.

use aya_ebpf::{macros::map, maps::HashMap};
use memory_monitor_ebpf::{Share, WATCH_GROUPED, Watch};

use crate::MAX_PROCESSES;

/// Each grouped process's share, by tgid. Written by userspace at each reading of its group,
/// removed here when the process is forgotten.
#[map]
static GROUP_SHARES: HashMap<u32, Share> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// The share of `watch` (process `tgid`), if its rule has a budget and userspace has shared
/// it out.
#[inline(always)]
pub(crate) fn share_of(watch: &Watch, tgid: u32) -> Option<Share> {
    if watch.flags & WATCH_GROUPED == 0 {
        return None;
    }
    // SAFETY: a plain value copied out at once.
    unsafe { GROUP_SHARES.get(tgid) }.copied()
}

/// Forgets `tgid`'s share (its re-arm request goes with its others).
#[inline(always)]
pub(crate) fn forget(tgid: u32) {
    let _ = GROUP_SHARES.remove(tgid);
}
