//! The kernel side: BPF programs on kernel tracepoints report RSS crossings and process births,
//! renames and deaths through a ring buffer; nothing polls. This folder is everything that
//! talks to them, and the only place `aya` is used.
//!
//! The kernel's RSS counters lag or approximate the truth (per-thread caches up to 6.1,
//! per-CPU counters from 6.2: see [`Accounting`]), so the kernel side reports a process once
//! it comes within that error of the limit and userspace decides on the exact figure. After a
//! report the watch is disarmed until userspace re-arms it (having seen the exact RSS under
//! the limit) or the RSS falls clearly back: one event per crossing.
//!
//! What differs between kernels is decided by what their BTF and tracefs say, never by a
//! version: how the `tp_btf` program reads a counter, how the exit program tells a process's
//! last thread (`group_dead`, or the group's live count), how far each thread can hold the
//! counters back.
//!
//! Loading takes three steps, a file each: [`host`] probes this host once (privileges, PID
//! namespace, ring buffers, tracefs and the tracepoints' layouts in [`tracefs`], BTF in
//! [`btf`]); [`plan`] turns those facts and the settings into a load plan (globals, map sizes,
//! which RSS program), pure, so that unit tests check it without root; [`load`] carries a plan
//! out. What loading gives the monitor: [`Maps`], through which userspace tells the kernel side
//! what to follow ([`encode`] is how rules and watches are written into them), [`Ring`], the
//! ring buffer and its drain, and [`Setup`], what was found. [`exact_reading`] is the kernel
//! side's exact figure of a process's RSS, summed by a BPF program on demand.
//!
//! Poll mode has a kernel side too, [`Unloaded`], which follows nothing and reports nothing:
//! the watch and the checks talk to a kernel side without asking which mode runs.

mod btf;
mod encode;
mod exact_reading;
#[cfg(test)]
pub(crate) mod fake;
mod host;
mod load;
mod maps;
mod plan;
mod ring;
mod stats;
mod tracefs;

use std::io;
use std::time::Duration;

use crate::accounting::{Accounting, Exact};
use crate::fault::Fault;
use crate::rules::RuleSet;
use crate::system::procfs::ProcRoot;
use crate::units::Bytes;

pub(crate) use self::maps::Maps;
pub use self::plan::Attach;
pub(crate) use self::plan::Settings;
pub(crate) use self::ring::Ring;
pub(crate) use self::stats::ProgramStats;

/// Sampled user stacks of one process (the growth profile's): instruction pointers, innermost
/// first, and the bytes grown under each stack.
pub(crate) type RawStacks = Vec<(Vec<u64>, u64)>;

/// A level the kernel side reports a process's crossings of, each re-armed on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Its rule's warning level.
    Warning,
    /// Its limit.
    Limit,
    /// Its share of its rule's group budget.
    Share,
}

impl Level {
    /// The kernel side's number for it.
    fn code(self) -> u32 {
        match self {
            Level::Warning => memory_monitor_ebpf::level::WARNING,
            Level::Limit => memory_monitor_ebpf::level::LIMIT,
            Level::Share => memory_monitor_ebpf::level::SHARE,
        }
    }
}

/// What a check asks of the kernel side about one process (eBPF mode; nothing in poll mode).
pub(crate) trait KernelLink {
    /// Asks for its next report at `level`, not before `after` from now (call before the
    /// deciding read).
    fn rearm(&mut self, pid: i32, level: Level, after: Duration);
    /// Withdraws that request (it turned out to be over the level).
    fn cancel_rearm(&mut self, pid: i32, level: Level);
    /// With `--kernel-signal`, claims its breach's first signal: false when the kernel side
    /// sent it first.
    fn claim_signal(&mut self, pid: i32) -> bool;
    /// Its breach ended: the next one may be signalled again.
    fn release_claim(&mut self, pid: i32);
    /// The growth profile's stacks sampled for it, taken.
    fn take_growth(&mut self, pid: i32) -> RawStacks;
    /// Its exact RSS in bytes, by the kernel side's own reading; `None` when it cannot tell.
    fn exact_rss(&mut self, pid: i32) -> Option<u64>;
    /// Sets its share of its rule's group budget (bytes): it is reported when it crosses it,
    /// once armed ([`Level::Share`]). The share goes when the process is forgotten.
    fn share(&mut self, pid: i32, share: u64);
}

/// The kernel side as the watch's owner uses it: what to follow, and under which rules.
pub(crate) trait KernelSide: KernelLink {
    /// Follows `pid` as `target` says, from its exact resident split (read from `proc`); an
    /// error when the kernel side's table is full.
    fn follow(&mut self, pid: i32, target: Target, proc: &ProcRoot) -> io::Result<()>;
    /// Stops following `pid` (nothing if it was not followed).
    fn forget(&mut self, pid: i32);
    /// Applies `rules` to processes that exec or are renamed from now on.
    fn set_rules(&mut self, rules: &RuleSet) -> io::Result<()>;
    /// Whether growth profiles can be taken (their maps are made at start-up, by a loaded
    /// kernel side alone).
    fn can_profile_growth(&self) -> bool {
        false
    }
    /// Whether swap can count (followed when a rule at start-up counted it, by a loaded kernel
    /// side alone).
    fn can_count_swap(&self) -> bool {
        false
    }
}

/// How the kernel side is to follow one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// The rule it is watched under.
    pub(crate) rule: usize,
    /// Its limit in bytes.
    pub(crate) limit: u64,
    /// Its warning level in bytes (under the limit), if its rule has one.
    pub(crate) warn: Option<u64>,
    /// The rule's signal (sent by the kernel side with `--kernel-signal`).
    pub(crate) signal: u32,
    /// Growth profile: sample from this approximate RSS on.
    pub(crate) profile_from: Option<u64>,
    /// Watched by name (a rename or exec to another name ends the watch), not by PID.
    pub(crate) by_name: bool,
    /// Its rule counts swap.
    pub(crate) count_swap: bool,
    /// Its rule has a group budget: it is judged against its share too.
    pub(crate) grouped: bool,
    /// Its rule follows leak trends: the kernel side reports its waypoints.
    pub(crate) waypoints: bool,
}

/// Poll mode's kernel side: it follows nothing, so every request is answered as a kernel side
/// with nothing to say would (no exact reading, no growth samples, every signal userspace's).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Unloaded;

impl KernelLink for Unloaded {
    fn rearm(&mut self, _: i32, _: Level, _: Duration) {}
    fn cancel_rearm(&mut self, _: i32, _: Level) {}
    fn claim_signal(&mut self, _: i32) -> bool {
        true
    }
    fn release_claim(&mut self, _: i32) {}
    fn take_growth(&mut self, _: i32) -> RawStacks {
        RawStacks::new()
    }
    fn exact_rss(&mut self, _: i32) -> Option<u64> {
        None
    }
    fn share(&mut self, _: i32, _: u64) {}
}

impl KernelSide for Unloaded {
    fn follow(&mut self, _: i32, _: Target, _: &ProcRoot) -> io::Result<()> {
        Ok(())
    }
    fn forget(&mut self, _: i32) {}
    fn set_rules(&mut self, _: &RuleSet) -> io::Result<()> {
        Ok(())
    }
}

/// Why eBPF mode cannot run here, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// What loading found: how the RSS program is attached, how this kernel counts RSS, which
/// exact figure decides. The start line says it; the checks measure by it.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    attach: Attach,
    /// How this kernel counts RSS (from BTF).
    accounting: Accounting,
    /// Which exact figure decides, here, in eBPF mode, and why `smaps_rollup` when it does.
    exact: Exact,
    exact_why: Option<String>,
    /// Whether the RSS program sums the per-CPU parts within the margin.
    sums_cpus: bool,
}

impl Setup {
    /// How the RSS program is attached (never [`Attach::Auto`]).
    pub(crate) fn attach(&self) -> Attach {
        self.attach
    }

    /// What the RSS program's attach type costs every process here, when it grows with the
    /// machine (the classic tracepoint on a kernel with per-CPU counters), for the start line.
    pub(crate) fn fault_cost(&self) -> Option<String> {
        match self.attach {
            Attach::Tracepoint => self.accounting.tracepoint_record_cost(),
            _ => None,
        }
    }

    /// How this kernel counts RSS, as its BTF says (not known without BTF).
    pub(crate) fn accounting(&self) -> Accounting {
        self.accounting
    }

    /// Which exact figure decides here, and why `smaps_rollup` when it does.
    pub(crate) fn exact(&self) -> (Exact, Option<&str>) {
        let why = match self.exact {
            Exact::SmapsRollup => self.exact_why.as_deref(),
            _ => None,
        };
        (self.exact, why)
    }

    /// The kernel side's margin under the limit, for the start line: the counters' error,
    /// and how much more per thread where threads cache their changes.
    pub(crate) fn margin(&self) -> String {
        let (error, lag) = (
            self.accounting.counter_error(),
            self.accounting.thread_lag(),
        );
        match (error, lag) {
            (_, 0) => Bytes(error).to_string(),
            (0, _) => format!("{}/thread", Bytes(lag)),
            _ => format!("{}+{}/thread", Bytes(error), Bytes(lag)),
        }
    }

    /// Whether, within the margin, the RSS program sums the per-CPU parts itself and reports
    /// only an exact figure over the limit.
    pub(crate) fn sums_in_kernel(&self) -> bool {
        self.sums_cpus
    }
}

/// The kernel side, loaded and attached: its ring buffer, its maps, and what was found.
pub(crate) struct Loaded {
    /// What the programs report.
    pub(crate) ring: Ring,
    /// What userspace tells them.
    pub(crate) maps: Maps,
    /// What loading found.
    pub(crate) setup: Setup,
    /// The RSS program's runs, counted by the kernel (`--bpf-stats`).
    pub(crate) stats: Option<ProgramStats>,
}

/// Checks this host, plans the load for `settings` (with the test's injected fault, if any,
/// as an edit of the plan), loads the programs and attaches them; or says why it cannot. Must
/// run inside a tokio runtime (the ring buffer is registered with it).
pub(crate) fn load(settings: &Settings<'_>) -> Result<Loaded, Unavailable> {
    let host = host::Host::probe()?;
    let mut plan = plan::Plan::new(&host, settings)?;
    if let Some(fault) = Fault::injected() {
        plan.inject(fault);
    }
    load::load(&plan, settings.rules)
}

/// How the running kernel counts RSS, from its BTF (as eBPF mode reads it at start-up).
pub(crate) fn accounting() -> Accounting {
    btf::kernel_btf().map_or(Accounting::Unknown, |btf| btf.accounting)
}
