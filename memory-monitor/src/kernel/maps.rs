//! The maps through which userspace tells the kernel side what to follow: the watched
//! processes and the pre-filter's slots, the rules and their cgroups, re-arm requests and
//! signal claims, and the growth profile's samples; and the exact reading, which runs a
//! program of the same object. [`Maps`] is the kernel side the watch talks to.

use std::io;
use std::time::Duration;

use aya::Ebpf;
use aya::maps::{Array, CgroupArray, HashMap, MapData, StackTraceMap};
use memory_monitor_ebpf::{Rule, Share, Watch, rearm_key};

use super::encode::{self, Judging};
use super::plan::GROWTH_SAMPLE_BYTES;
use super::{KernelLink, KernelSide, Level, RawStacks, Target, exact_reading};
use crate::rules::RuleSet;
use crate::system::procfs::ProcRoot;

/// The kernel side's maps. It owns the programs and their links: dropping it detaches
/// everything (nothing is pinned, so nothing outlives the monitor).
pub(crate) struct Maps {
    pub(super) ebpf: Ebpf,
    /// Whether the `exact_rss` program can read processes' exact RSS here.
    pub(super) reads_exact: bool,
    /// Exact readings so far (each is numbered).
    pub(super) readings: u64,
    pub(super) watched: HashMap<MapData, u32, Watch>,
    pub(super) rearm: HashMap<MapData, u64, u64>,
    pub(super) claims: HashMap<MapData, u32, u32>,
    /// Grouped processes' shares of their rules' budgets (`GROUP_SHARES`).
    pub(super) shares: HashMap<MapData, u32, Share>,
    /// The kernel side's pre-filter: watched processes per slot (`tgid & slot_mask`).
    pub(super) slots: Array<MapData, u32>,
    pub(super) slot_mask: u32,
    /// What `slots` holds, and which processes are counted in it (sorted, allocated once).
    pub(super) slot_counts: Box<[u32]>,
    pub(super) counted: Vec<i32>,
    pub(super) kernel_signal: bool,
    pub(super) rules: Array<MapData, Rule>,
    pub(super) cgroups: CgroupArray<MapData>,
    /// How the kernel side judges a process near its limit.
    pub(super) judging: Judging,
    /// The growth profile's stacks and samples, when it is on.
    pub(super) growth: Option<(StackTraceMap<MapData>, HashMap<MapData, u64, u64>)>,
    /// Whether the kernel side follows swap entries (a rule at start-up counted swap).
    pub(super) count_swap: bool,
}

impl std::fmt::Debug for Maps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maps")
            .field("watching", &self.counted.len())
            .finish_non_exhaustive()
    }
}

impl Maps {
    fn add_to_slot(&mut self, tgid: i32, change: i32) {
        let slot = tgid as u32 & self.slot_mask;
        let count = &mut self.slot_counts[slot as usize];
        *count = count.saturating_add_signed(change);
        let _ = self.slots.set(slot, *count, 0);
    }
}

impl KernelSide for Maps {
    /// Starts (or restarts) following `tgid` from its exact resident split, as `target` says.
    fn follow(&mut self, tgid: i32, target: Target, proc: &ProcRoot) -> io::Result<()> {
        let record = encode::watch_record(
            target,
            proc.resident_parts(tgid),
            self.judging,
            self.kernel_signal,
        );
        self.watched
            .insert(tgid as u32, record, 0)
            .map_err(|e| io::Error::other(e.to_string()))?;
        if let Err(at) = self.counted.binary_search(&tgid) {
            self.counted.insert(at, tgid);
            self.add_to_slot(tgid, 1);
        }
        Ok(())
    }

    /// Stops following `tgid` (no error if it was not followed).
    fn forget(&mut self, tgid: i32) {
        let _ = self.watched.remove(&(tgid as u32));
        for level in [Level::Warning, Level::Limit, Level::Share] {
            self.cancel_rearm(tgid, level);
        }
        let _ = self.claims.remove(&(tgid as u32));
        let _ = self.shares.remove(&(tgid as u32));
        if let Ok(at) = self.counted.binary_search(&tgid) {
            self.counted.remove(at);
            self.add_to_slot(tgid, -1);
        }
        if self.growth.is_some() {
            let _ = self.take_growth(tgid);
        }
    }

    /// Applies `rules` from now on to processes that exec or are renamed (those watched
    /// already are followed anew by the caller).
    fn set_rules(&mut self, rules: &RuleSet) -> io::Result<()> {
        encode::write_rules(
            &mut self.rules,
            &mut self.cgroups,
            rules,
            self.kernel_signal,
            self.judging,
        )
    }

    fn can_profile_growth(&self) -> bool {
        self.growth.is_some()
    }

    fn can_count_swap(&self) -> bool {
        self.count_swap
    }
}

impl KernelLink for Maps {
    /// Asks for the next report about `tgid` once userspace has judged the last one, but not
    /// before `after` from now. Call it *before* reading the exact RSS: any change after the
    /// request (and after `after`) is reported, any change before it is in the reading.
    fn rearm(&mut self, tgid: i32, level: Level, after: Duration) {
        let from = crate::system::procfs::monotonic_ns() + after.as_nanos() as u64;
        let _ = self
            .rearm
            .insert(rearm_key(tgid as u32, level.code()), from, 0);
    }

    fn cancel_rearm(&mut self, tgid: i32, level: Level) {
        let _ = self.rearm.remove(&rearm_key(tgid as u32, level.code()));
    }

    /// With `--kernel-signal`, claims the first signal of `tgid`'s breach for userspace: false
    /// if the kernel side claimed (and sent) it first. Without it, always true.
    fn claim_signal(&mut self, tgid: i32) -> bool {
        const BPF_NOEXIST: u64 = 1;
        !self.kernel_signal || self.claims.insert(tgid as u32, 1, BPF_NOEXIST).is_ok()
    }

    fn release_claim(&mut self, tgid: i32) {
        if self.kernel_signal {
            let _ = self.claims.remove(&(tgid as u32));
        }
    }

    /// Growth profile: takes the stacks sampled for `tgid` (innermost frame first) and the
    /// bytes grown under each, leaving none behind. Empty when the growth profile is off.
    fn take_growth(&mut self, tgid: i32) -> RawStacks {
        let Some((stacks, samples)) = self.growth.as_mut() else {
            return RawStacks::new();
        };
        let keys: Vec<u64> = samples
            .keys()
            .flatten()
            .filter(|key| key >> 32 == u64::from(tgid as u32))
            .collect();
        let mut taken = RawStacks::new();
        for key in keys {
            let Ok(count) = samples.get(&key, 0) else {
                continue;
            };
            let _ = samples.remove(&key);
            if let Ok(trace) = stacks.get(&(key as u32), 0) {
                let ips = trace.frames().iter().map(|frame| frame.ip).collect();
                taken.push((ips, count * u64::from(GROWTH_SAMPLE_BYTES)));
            }
        }
        taken
    }

    /// Writes `tgid`'s share of its group's budget; a full table leaves it unjudged by its
    /// share, as a process the kernel side cannot follow is.
    fn share(&mut self, tgid: i32, at: u64) {
        let share = self.judging.share(at, self.count_swap);
        let _ = self.shares.insert(tgid as u32, share, 0);
    }

    /// `tgid`'s exact RSS in bytes by the kernel side's reading (see [`exact_reading`]);
    /// `None` where there is none or it cannot tell.
    fn exact_rss(&mut self, tgid: i32) -> Option<u64> {
        self.readings += 1;
        let pages = match self.reads_exact {
            true => exact_reading::read(&self.ebpf, tgid, self.readings)?,
            false => return None,
        };
        Some(pages * crate::system::procfs::page_size())
    }
}
