//! Leak trends' waypoints: a watched process whose rule follows leak trends is reported each
//! time its approximate RSS crosses another share of its limit (`memory_monitor_ebpf::waypoint`),
//! up or down. Only after the watched-process lookup has found it, so an unwatched process
//! pays nothing, and a watched one a flag test unless its rule asks for waypoints.

use memory_monitor_ebpf::{WATCH_WAYPOINTS, Watch, event_kind, waypoint};

use crate::emit;

/// Reports the waypoint `watch` has come to, if it is a new one, and remembers it.
#[inline(always)]
pub(crate) fn follow(watch: &mut Watch, tgid: u32) {
    if watch.flags & WATCH_WAYPOINTS == 0 {
        return;
    }
    let rss = watch.approximate_rss();
    if let Some(index) = waypoint::due(rss, watch.waypoint, watch.limit >> waypoint::SHIFT) {
        watch.waypoint = index + 1;
        emit(event_kind::WAYPOINT, tgid, rss);
    }
}
