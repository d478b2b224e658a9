//! The event-driven source: BPF programs on kernel tracepoints report RSS crossings and
//! process births, renames and deaths through a ring buffer; nothing polls.
//!
//! The kernel's RSS counters lag or approximate the truth (per-thread caches up to 6.1,
//! per-CPU counters from 6.2: see [`Accounting`]), so the kernel side reports a process once
//! it comes within that error of the limit and userspace decides on the exact figure. After a
//! report the watch is disarmed until userspace re-arms it (having seen the exact RSS under
//! the limit) or the RSS falls clearly back: one event per crossing.
//!
//! What differs between kernels is decided by what their BTF and tracefs say ([`btf`],
//! [`tracefs`]), never by a version: how the `tp_btf` program reads a counter, how the exit
//! program tells a process's last thread (`group_dead`, or the group's live count), how far
//! each thread can hold the counters back.

use std::io;
use std::time::Duration;

use aya::maps::{Array, CgroupArray, HashMap, MapData, PerCpuArray, RingBuf, StackTraceMap};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use memory_monitor_ebpf::{
    CGROUP_LIMIT, CGROUP_MEMBER, Event, MAX_RULES, RULE_ANY, RULE_ASK, RULE_ASK_IF_EQUAL,
    RULE_EXACT, RULE_NEVER, RULE_NONE, RULE_PREFIX, Rule, WATCH_ARMED, WATCH_BY_NAME,
    WATCH_COUNT_SWAP, WATCH_SUMS_CPUS, Watch, layout, member,
};
use tokio::io::unix::AsyncFd;

use crate::accounting::{Accounting, Exact};
use crate::act::profile::growth::RawStacks;
use crate::fault::Fault;
use crate::host::logging::one_line;
use crate::kernel::btf::{ExactRead, KernelBtf, RssRead};
use crate::kernel::exact_reading::{self, ExactGlobals};
use crate::kernel::{btf, tracefs};
use crate::matcher::{MatchMode, Matcher};
use crate::rules::RuleSet;
use crate::system::procfs::{COMM_LEN, ResidentParts};
use crate::units::Bytes;

/// The programs, embedded: the binary needs nothing else at run time.
static PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memory-monitor-ebpf"));

/// The discovery programs and the tracepoints (`category`, `name`) they attach to; attached
/// before the RSS program so no process born meanwhile is missed.
const DISCOVERY: [(&str, &str, &str); 5] = [
    ("exec", "sched", "sched_process_exec"),
    ("newtask", "task", "task_newtask"),
    ("rename", "task", "task_rename"),
    ("migrate", "cgroup", "cgroup_attach_task"),
    ("exit", "sched", "sched_process_exit"),
];

/// The system calls after which a process may run as another user (the `creds` program
/// follows each call's exit tracepoint).
const CREDENTIAL_CALLS: [&str; 3] = ["sys_exit_setuid", "sys_exit_setreuid", "sys_exit_setresuid"];

/// How the RSS program attaches to `kmem:rss_stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// tp-btf where the kernel's BTF describes what it reads (the cheaper: no tracepoint
    /// record is filled in), else tracepoint.
    Auto,
    /// A classic tracepoint: the kernel fills in the tracepoint's record, the program reads it.
    Tracepoint,
    /// A BTF-typed raw tracepoint (`tp_btf`): the program gets the tracepoint's arguments and
    /// reads the counter itself, at offsets found in the kernel's BTF.
    TpBtf,
}

impl crate::choice::Choice for Attach {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Attach::Auto,
            "auto",
            "tp-btf where the kernel's BTF describes what it reads (the cheaper: no tracepoint record is filled in), else tracepoint",
        ),
        (
            Attach::Tracepoint,
            "tracepoint",
            "A classic tracepoint: the kernel fills in the tracepoint's record, the program reads it",
        ),
        (
            Attach::TpBtf,
            "tp-btf",
            "A BTF-typed raw tracepoint (`tp_btf`): the program gets the tracepoint's arguments and reads the counter itself, at offsets found in the kernel's BTF",
        ),
    ];
}

impl std::fmt::Display for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::choice::write_name(*self, f)
    }
}

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`): BPF sees host PIDs, so the
/// monitor must see them too.
const HOST_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// Why eBPF mode cannot run here, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// What the kernel side needs to know.
#[derive(Debug, Clone, Copy)]
pub struct KernelSettings<'a> {
    /// The rules to apply on exec and rename.
    pub rules: &'a RuleSet,
    /// Map capacity.
    pub max_processes: usize,
    /// `--kernel-signal`: the kernel side sends each rule's signal itself.
    pub kernel_signal: bool,
    /// How the RSS program attaches.
    pub attach: Attach,
    /// Whether the programs' own diagnostics (aya-log) are wanted (`-v`); otherwise their ring
    /// buffer is not even mapped.
    pub debug_log: bool,
}

/// What the attached programs report: the ring buffer of events and the count of those lost.
pub struct KernelEvents {
    events: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    lost_flag: Array<MapData, u64>,
    attach: Attach,
    /// How this kernel counts RSS (from BTF).
    accounting: Accounting,
    /// Which exact figure decides, here, in eBPF mode, and why `smaps_rollup` when it does.
    exact: Exact,
    exact_why: Option<String>,
    /// Whether the RSS program sums the per-CPU parts within the margin.
    sums_cpus: bool,
}

/// The maps through which userspace tells the kernel side what to watch: the watched
/// processes, the rules, re-arm requests and signal claims, and the growth profile's samples;
/// and the exact reading. It owns the programs and their links: dropping it detaches
/// everything (nothing is pinned, so nothing outlives the monitor).
pub struct KernelWatch {
    ebpf: Ebpf,
    /// Whether the `exact_rss` program can read processes' exact RSS here.
    reads_exact: bool,
    /// Exact readings so far (each is numbered).
    readings: u64,
    watched: HashMap<MapData, u32, Watch>,
    rearm: HashMap<MapData, u32, u64>,
    claims: HashMap<MapData, u32, u32>,
    /// The kernel side's pre-filter: watched processes per slot (`tgid & slot_mask`).
    slots: Array<MapData, u32>,
    slot_mask: u32,
    /// What `slots` holds, and which processes are counted in it (sorted, allocated once).
    slot_counts: Box<[u32]>,
    counted: Vec<i32>,
    kernel_signal: bool,
    rules: Array<MapData, Rule>,
    cgroups: CgroupArray<MapData>,
    /// How the kernel side judges a process near its limit.
    judging: Judging,
    /// The growth profile's stacks and samples, when it is on.
    growth: Option<(StackTraceMap<MapData>, HashMap<MapData, u64, u64>)>,
    /// Whether the kernel side follows swap entries (a rule at start-up counted swap).
    count_swap: bool,
}

/// The ring buffer's size: room for thousands of events between two drains.
const RING_BYTES: u32 = 256 * 1024;

/// Growth profile: one stack sample per this many bytes grown.
const GROWTH_SAMPLE_BYTES: u32 = 256 * 1024;
/// Growth profile: distinct stacks and (process, stack) pairs kept.
const GROWTH_STACKS: u32 = 2048;

impl std::fmt::Debug for KernelEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelEvents")
            .field("attach", &self.attach)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for KernelWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelWatch")
            .field("watching", &self.counted.len())
            .finish_non_exhaustive()
    }
}

/// Checks this host, loads the programs and attaches them; or says why it cannot. Must run
/// inside a tokio runtime (the ring buffer is registered with it).
pub fn load(settings: &KernelSettings<'_>) -> Result<(KernelEvents, KernelWatch), Unavailable> {
    check_privileges()?;
    check_pid_namespace()?;
    raise_memlock_limit();
    check_ring_buffers()?;
    let tracefs = tracefs::ensure_mounted().map_err(Unavailable)?;
    let kernel_btf = btf::kernel_btf();
    let tp_btf = |kernel_btf: &Result<KernelBtf, String>| {
        let kernel_btf = kernel_btf.as_ref().map_err(Clone::clone)?;
        kernel_btf.rss.clone().map(|rss| (kernel_btf.task_mm, rss))
    };
    let (attach, btf_read) = match settings.attach {
        Attach::Tracepoint => (Attach::Tracepoint, None),
        Attach::TpBtf => (
            Attach::TpBtf,
            Some(tp_btf(&kernel_btf).map_err(Unavailable)?),
        ),
        Attach::Auto => match tp_btf(&kernel_btf) {
            Ok(read) => (Attach::TpBtf, Some(read)),
            Err(why) => {
                tracing::debug!("attaching as a classic tracepoint: {why}");
                (Attach::Tracepoint, None)
            }
        },
    };
    // The classic RSS program reads kmem:rss_stat's record; tp_btf reads kernel structures.
    let fields: Vec<_> = layout::ALL
        .into_iter()
        .filter(|f| attach == Attach::Tracepoint || f.tracepoint != "kmem/rss_stat")
        .collect();
    tracefs::check_layout(&tracefs, &fields).map_err(Unavailable)?;
    // The exit program tells a process's last thread by `group_dead` where the record has
    // it (6.16 on), else by the thread group's live count, found in BTF.
    let group = kernel_btf
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|k| k.group.clone());
    let has_group_dead =
        tracefs::check_layout(&tracefs, &[layout::EXIT_GROUP_DEAD]).map_err(|why| {
            let how = group.as_ref().err().cloned().unwrap_or_default();
            (why, how)
        });
    if let Err((why, how)) = &has_group_dead
        && group.is_err()
    {
        return Err(Unavailable(format!(
            "{why}, and the thread group's live count cannot be read instead: {how}"
        )));
    }
    let accounting = kernel_btf
        .as_ref()
        .map_or(Accounting::Unknown, |k| k.accounting);
    let group = group.ok();
    // Per-thread margins need the thread count, which only BTF locates.
    let thread_lag = group.map_or(0, |_| accounting.thread_lag());

    let me = std::process::id();
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    let log_level = if settings.debug_log {
        aya_log::Level::Debug
    } else {
        aya_log::Level::Warn
    } as u8;
    let capacity = u32::try_from(settings.max_processes).unwrap_or(u32::MAX);
    // Four slots per watchable process keep collisions (and so hash lookups for processes
    // that are not watched) rare.
    let slot_count = capacity
        .saturating_mul(4)
        .next_power_of_two()
        .clamp(4096, 1 << 22);
    let slot_mask = slot_count - 1;
    // Learned from every watched process's own changes, whichever way the program attaches.
    let task_mm = kernel_btf.as_ref().map_or(0, |k| k.task_mm);
    // The exact reading needs the group's pointer where threads cache changes.
    let exact_read = kernel_btf
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|k| k.exact.clone())
        .and_then(|read| match (read, group) {
            (ExactRead::ThreadCaches { .. }, None) => {
                Err("the thread group cannot be found in BTF".to_string())
            }
            _ => Ok(read),
        });
    let exact = ExactGlobals::of(exact_read.as_ref().ok(), crate::accounting::possible_cpus());
    let rss_counts = match (btf_read, exact_read.as_ref()) {
        (Some((_, RssRead::PercpuCounters(offsets))), _) => offsets,
        (_, Ok(read)) => read.counts(),
        _ => [0; member::COUNT],
    };
    let exit_has_group_dead = u32::from(has_group_dead.is_ok());
    let task_signal = group.map_or(0, |g| g.task_signal);
    let signal_live = group.map_or(0, |g| g.live);
    let signal_threads = group.map_or(0, |g| g.nr_threads);
    let page_size = crate::system::procfs::page_size() as i64;
    let profiling = settings
        .rules
        .rules()
        .iter()
        .any(|rule| rule.profile.is_some());
    let growth_entries = if profiling { GROWTH_STACKS } else { 1 };
    // Swap-entry changes are followed only when a rule at start-up counts swap.
    let count_swap = u32::from(settings.rules.rules().iter().any(|rule| rule.count.swap()));
    let fault = Fault::injected();
    let ring_bytes = match fault {
        Some(Fault::SmallRing) => crate::system::procfs::page_size() as u32,
        _ => RING_BYTES,
    };
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", ring_bytes)
        .override_global("MONITOR_TGID", &me, true)
        .override_global("MONITOR_PARENT_TGID", &parent, true)
        .override_global("TASK_MM_OFFSET", &task_mm, true)
        .override_global("RSS_COUNT_OFFSETS", &rss_counts, true)
        .override_global("PAGE_SIZE", &page_size, true)
        .override_global("EXIT_HAS_GROUP_DEAD", &exit_has_group_dead, true)
        .override_global("TASK_SIGNAL_OFFSET", &task_signal, true)
        .override_global("SIGNAL_LIVE_OFFSET", &signal_live, true)
        .override_global("SIGNAL_THREADS_OFFSET", &signal_threads, true)
        .override_global("THREAD_LAG", &thread_lag, true)
        .override_global("SLOT_MASK", &slot_mask, true)
        .override_global("SAMPLE_BYTES", &GROWTH_SAMPLE_BYTES, true)
        .override_global("COUNT_SWAP", &count_swap, true)
        .override_global("EXACT_SUM", &exact.sum, true)
        .override_global("RSS_PARTS_OFFSETS", &exact.parts, true)
        .override_global("POSSIBLE_CPUS", &exact.cpus, true)
        .override_global("ARRAY_PPTRS_OFFSET", &exact.array_pptrs, true)
        .override_global("TASK_RSS_OFFSET", &exact.task_cache, true)
        .override_global("SIGNAL_THREAD_HEAD_OFFSET", &exact.thread_head, true)
        .override_global("TASK_THREAD_NODE_OFFSET", &exact.thread_node, true)
        .map_max_entries("CPU_OFFSETS", exact.cpus.max(1))
        .map_max_entries("STACKS", growth_entries)
        .map_max_entries("GROWTH", growth_entries)
        .override_global(aya_log::LEVEL, &log_level, false)
        .map_max_entries("WATCHED", capacity)
        .map_max_entries("MM_OWNER", capacity)
        .map_max_entries("REARM", capacity)
        .map_max_entries("SIGNAL_CLAIMS", capacity)
        .map_max_entries("WATCH_SLOTS", slot_count)
        .map_max_entries("MM_SLOTS", slot_count)
        .load(PROGRAMS)
        .map_err(|e| Unavailable(format!("loading the BPF programs failed: {}", one_line(&e))))?;
    if settings.debug_log {
        start_program_logs(&mut ebpf);
    }
    // Made ready before the rules go in: whether watches sum per-CPU parts is in them.
    let reading =
        exact_read.and_then(|read| exact_reading::prepare(&mut ebpf, &exact).map(|()| read));
    let judging = Judging {
        accounting,
        sums_cpus: attach == Attach::TpBtf && matches!(reading, Ok(ExactRead::CpuParts { .. })),
    };
    let exact = Exact::choose(reading.as_ref().ok().map(ExactRead::exact));
    let exact_why = reading.as_ref().err().cloned();
    let take = |ebpf: &mut Ebpf, name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| Unavailable(format!("the BPF object has no map {name}")))
    };
    let map_error = |e: aya::maps::MapError| Unavailable(format!("opening a BPF map failed: {e}"));
    // The rules go in before the discovery programs look at them.
    let mut rules = Array::try_from(take(&mut ebpf, "RULES")?).map_err(map_error)?;
    let mut cgroups = CgroupArray::try_from(take(&mut ebpf, "CGROUPS")?).map_err(map_error)?;
    write_rules(
        &mut rules,
        &mut cgroups,
        settings.rules,
        settings.kernel_signal,
        judging,
    )
    .map_err(|e| Unavailable(format!("writing the rules to the kernel side failed: {e}")))?;
    for (program, category, name) in DISCOVERY {
        attach_tracepoint(&mut ebpf, program, category, name)?;
    }
    // Not having them costs one kind of discovery, not eBPF mode: said once, and survived.
    if let Err(why) = attach_credential_calls(&mut ebpf) {
        tracing::warn!(
            event = "creds_unfollowed",
            "credential changes are not followed ({why}): a process that becomes a rule's user after it started is watched only once it execs or is renamed"
        );
    }
    match (attach, fault) {
        (_, Some(Fault::Verifier)) => attach_tracepoint(&mut ebpf, "refused", "kmem", "rss_stat")?,
        (_, Some(Fault::Attach)) => {
            attach_tracepoint(&mut ebpf, "rss_stat", "kmem", "no_such_tracepoint")?
        }
        (Attach::TpBtf, _) => {
            let program = match btf_read {
                Some((_, RssRead::CountArgument)) => "rss_stat_btf_count",
                _ => "rss_stat_btf",
            };
            attach_btf_tracepoint(&mut ebpf, program, "rss_stat")?
        }
        _ => attach_tracepoint(&mut ebpf, "rss_stat", "kmem", "rss_stat")?,
    }
    let events = RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(map_error)?;
    let events = readable_fd(events)
        .map_err(|e| Unavailable(format!("cannot wait on the ring buffer: {e}")))?;
    let events = KernelEvents {
        lost: PerCpuArray::try_from(take(&mut ebpf, "LOST")?).map_err(map_error)?,
        lost_flag: Array::try_from(take(&mut ebpf, "LOST_FLAG")?).map_err(map_error)?,
        events,
        attach,
        accounting,
        exact,
        exact_why,
        sums_cpus: judging.sums_cpus,
    };
    let growth = match profiling {
        true => Some((
            StackTraceMap::try_from(take(&mut ebpf, "STACKS")?).map_err(map_error)?,
            HashMap::try_from(take(&mut ebpf, "GROWTH")?).map_err(map_error)?,
        )),
        false => None,
    };
    let watch = KernelWatch {
        growth,
        count_swap: count_swap != 0,
        watched: HashMap::try_from(take(&mut ebpf, "WATCHED")?).map_err(map_error)?,
        rearm: HashMap::try_from(take(&mut ebpf, "REARM")?).map_err(map_error)?,
        claims: HashMap::try_from(take(&mut ebpf, "SIGNAL_CLAIMS")?).map_err(map_error)?,
        slots: Array::try_from(take(&mut ebpf, "WATCH_SLOTS")?).map_err(map_error)?,
        slot_mask,
        slot_counts: vec![0; slot_count as usize].into_boxed_slice(),
        counted: Vec::with_capacity(settings.max_processes),
        kernel_signal: settings.kernel_signal,
        rules,
        cgroups,
        judging,
        reads_exact: reading.is_ok(),
        readings: 0,
        ebpf,
    };
    Ok((events, watch))
}

impl KernelWatch {
    /// Applies `rules` from now on to processes that exec or are renamed (those watched
    /// already are re-watched by the caller).
    pub fn set_rules(&mut self, rules: &RuleSet) -> io::Result<()> {
        write_rules(
            &mut self.rules,
            &mut self.cgroups,
            rules,
            self.kernel_signal,
            self.judging,
        )
    }

    /// Whether growth profiles can be taken (their maps were made at start-up).
    pub fn can_profile_growth(&self) -> bool {
        self.growth.is_some()
    }

    /// Whether swap can count (swap entries are followed when a rule at start-up counted them).
    pub fn can_count_swap(&self) -> bool {
        self.count_swap
    }

    /// Starts (or restarts) following `tgid` from its exact resident split `parts`, as
    /// `target` says.
    pub fn watch(&mut self, tgid: i32, parts: ResidentParts, target: Target) -> io::Result<()> {
        let mut members = [0i64; member::COUNT];
        members[member::FILE] = parts.file as i64;
        members[member::ANON] = parts.anon as i64;
        members[member::SHMEM] = parts.shmem as i64;
        members[member::SWAPENTS] = parts.swap as i64;
        let record = Watch {
            trigger: self.judging.trigger(target.limit, target.count_swap),
            limit: target.limit,
            members,
            last_event_ns: 0,
            mm: 0,
            flags: WATCH_ARMED
                | if target.by_name { WATCH_BY_NAME } else { 0 }
                | self.judging.watch_flags(target.count_swap),
            grown: 0,
            threads: parts.threads.max(1),
            spare: 0,
            mm_ptr: 0,
            group: 0,
            parts: 0,
            profile_from: target.profile_from.unwrap_or(u64::MAX),
            signal: if self.kernel_signal { target.signal } else { 0 },
            rule: target.rule as u32,
        };
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
    pub fn forget(&mut self, tgid: i32) {
        let _ = self.watched.remove(&(tgid as u32));
        let _ = self.rearm.remove(&(tgid as u32));
        let _ = self.claims.remove(&(tgid as u32));
        if let Ok(at) = self.counted.binary_search(&tgid) {
            self.counted.remove(at);
            self.add_to_slot(tgid, -1);
        }
        if self.growth.is_some() {
            let _ = self.take_growth(tgid);
        }
    }

    /// Growth profile: takes the stacks sampled for `tgid` (innermost frame first) and the
    /// bytes grown under each, leaving none behind. Empty when the growth profile is off.
    pub fn take_growth(&mut self, tgid: i32) -> RawStacks {
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

    fn add_to_slot(&mut self, tgid: i32, change: i32) {
        let slot = tgid as u32 & self.slot_mask;
        let count = &mut self.slot_counts[slot as usize];
        *count = count.saturating_add_signed(change);
        let _ = self.slots.set(slot, *count, 0);
    }

    /// With `--kernel-signal`, claims the first signal of `tgid`'s breach for userspace: false
    /// if the kernel side claimed (and sent) it first. Without it, always true.
    pub fn claim_signal(&mut self, tgid: i32) -> bool {
        const BPF_NOEXIST: u64 = 1;
        !self.kernel_signal || self.claims.insert(tgid as u32, 1, BPF_NOEXIST).is_ok()
    }

    /// Ends `tgid`'s breach as far as the claim goes: the next one may be signalled again.
    pub fn release_claim(&mut self, tgid: i32) {
        if self.kernel_signal {
            let _ = self.claims.remove(&(tgid as u32));
        }
    }

    /// Asks for the next report about `tgid` once userspace has judged the last one, but not
    /// before `after` from now. Call it *before* reading the exact RSS: any change after the
    /// request (and after `after`) is reported, any change before it is in the reading.
    pub fn rearm(&mut self, tgid: i32, after: Duration) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let now_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
        let from = now_ns + after.as_nanos() as u64;
        let _ = self.rearm.insert(tgid as u32, from, 0);
    }

    /// Withdraws a re-arm request (the process turned out to be over the limit).
    pub fn cancel_rearm(&mut self, tgid: i32) {
        let _ = self.rearm.remove(&(tgid as u32));
    }

    /// `tgid`'s exact RSS in bytes by the kernel side's reading (see [`exact_reading`]);
    /// `None` where there is none or it cannot tell.
    pub fn exact_rss(&mut self, tgid: i32) -> Option<u64> {
        self.readings += 1;
        let pages = match self.reads_exact {
            true => exact_reading::read(&self.ebpf, tgid, self.readings)?,
            false => return None,
        };
        Some(pages * crate::system::procfs::page_size())
    }
}

impl KernelEvents {
    /// How the RSS program is attached (never [`Attach::Auto`]).
    pub fn attach(&self) -> Attach {
        self.attach
    }

    /// The capabilities userspace must keep to use the kernel side's maps after start-up:
    /// none where the kernel checks privileges only when programs and maps are made, `CAP_BPF`
    /// where it checks every map access (older kernels with unprivileged BPF disabled). Found
    /// by trying: a thread of its own drops `CAP_BPF`, `CAP_PERFMON` and `CAP_SYS_ADMIN` (only
    /// that thread's) and reads a map.
    pub fn capabilities_for_maps(&self) -> rustix::thread::CapabilitySet {
        use rustix::thread::{CapabilitySet, CapabilitySets};
        let lost_flag = &self.lost_flag;
        let needed = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let Ok(current) = rustix::thread::capabilities(None) else {
                        return true;
                    };
                    let privileged =
                        CapabilitySet::BPF | CapabilitySet::PERFMON | CapabilitySet::SYS_ADMIN;
                    let dropped = rustix::thread::set_capabilities(
                        None,
                        CapabilitySets {
                            effective: current.effective - privileged,
                            permitted: current.permitted,
                            inheritable: current.inheritable,
                        },
                    );
                    dropped.is_err() || lost_flag.get(&0, 0).is_err()
                })
                .join()
                .unwrap_or(true)
        });
        match needed {
            true => CapabilitySet::BPF,
            false => CapabilitySet::empty(),
        }
    }

    /// What the RSS program's attach type costs every process here, when it grows with the
    /// machine (the classic tracepoint on a kernel with per-CPU counters), for the start line.
    pub fn fault_cost(&self) -> Option<String> {
        match self.attach {
            Attach::Tracepoint => self.accounting.tracepoint_record_cost(),
            _ => None,
        }
    }

    /// How this kernel counts RSS, as its BTF says (not known without BTF).
    pub fn accounting(&self) -> Accounting {
        self.accounting
    }

    /// Which exact figure decides here, and why `smaps_rollup` when it does.
    pub fn exact(&self) -> (Exact, Option<&str>) {
        let why = match self.exact {
            Exact::SmapsRollup => self.exact_why.as_deref(),
            _ => None,
        };
        (self.exact, why)
    }

    /// The kernel side's margin under the limit, for the start line: the counters' error,
    /// and how much more per thread where threads cache their changes.
    pub fn margin(&self) -> String {
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
    pub fn sums_in_kernel(&self) -> bool {
        self.sums_cpus
    }

    /// Waits until events may be waiting.
    pub async fn readable(&self) -> io::Result<()> {
        let mut guard = self.events.readable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Moves waiting events into `out`; returns how many. Call until it returns 0.
    pub fn drain(&mut self, out: &mut [Event]) -> usize {
        let ring = self.events.get_mut();
        let mut count = 0;
        while count < out.len() {
            let Some(item) = ring.next() else { break };
            if item.len() >= size_of::<Event>() {
                // SAFETY: the kernel side writes whole `Event`s; read_unaligned copies one out.
                out[count] = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) };
                count += 1;
            }
        }
        count
    }

    /// If events were lost since the last call, how many (in total so far).
    pub fn take_lost(&mut self) -> Option<u64> {
        match self.lost_flag.get(&0, 0) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                let _ = self.lost_flag.set(0, 0, 0);
                let total = self
                    .lost
                    .get(&0, 0)
                    .map_or(0, |per_cpu| per_cpu.iter().sum());
                Some(total)
            }
        }
    }
}

/// How the kernel side is to follow one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The rule it is watched under.
    pub rule: usize,
    /// Its limit in bytes.
    pub limit: u64,
    /// The rule's signal (sent by the kernel side with `--kernel-signal`).
    pub signal: u32,
    /// Growth profile: sample from this approximate RSS on.
    pub profile_from: Option<u64>,
    /// Watched by name (a rename or exec to another name ends the watch), not by PID.
    pub by_name: bool,
    /// Its rule counts swap.
    pub count_swap: bool,
}

/// How the kernel side judges a watched process near its limit.
#[derive(Debug, Clone, Copy)]
struct Judging {
    /// How the kernel counts RSS: how far under the limit its counters may show a process
    /// that is over it.
    accounting: Accounting,
    /// Whether, within that margin, the RSS program sums the per-CPU parts itself and reports
    /// only an exact figure over the limit (`WATCH_SUMS_CPUS`).
    sums_cpus: bool,
}

impl Judging {
    /// The approximate RSS at which a process with `limit` is reported (or, summing per-CPU
    /// parts, at which summing starts): within the counters' error of it, one counter more
    /// when swap counts (the kernel side takes each thread's lag off that, where there is
    /// one).
    fn trigger(self, limit: u64, count_swap: bool) -> u64 {
        let swap = if count_swap {
            self.accounting.one_counter_error()
        } else {
            0
        };
        limit.saturating_sub(self.accounting.counter_error() + swap)
    }

    /// The `WATCH_*` flags of a watch under a rule that counts swap or not.
    fn watch_flags(self, count_swap: bool) -> u32 {
        let swap = if count_swap { WATCH_COUNT_SWAP } else { 0 };
        let sums = if self.sums_cpus { WATCH_SUMS_CPUS } else { 0 };
        swap | sums
    }
}

/// Writes `rules` into the kernel side's `RULES` and `CGROUPS` maps, in order, ending the list
/// after the last. What can be refused (opening the rules' cgroups) is done before the first
/// write, so a set that cannot be used leaves the kernel side's rules as they were; only a
/// map write failing partway (the kernel refusing a write like those it just took) would leave
/// a mix, until the next set. A program may read the table while it is written; whatever it
/// concludes then, userspace decides again on its event under the rules in force, and re-reads
/// `/proc` after writing.
fn write_rules(
    table: &mut Array<MapData, Rule>,
    cgroups: &mut CgroupArray<MapData>,
    rules: &RuleSet,
    kernel_signal: bool,
    judging: Judging,
) -> io::Result<()> {
    let error = |e: aya::maps::MapError| io::Error::other(e.to_string());
    let prepared = (0..rules.rules().len())
        .map(|index| kernel_rule(rules, index, kernel_signal, judging))
        .collect::<io::Result<Vec<_>>>()?;
    for (slot, (kernel_rule, cgroup)) in (0u32..).zip(prepared) {
        match cgroup {
            Some(dir) => cgroups.set(slot, dir, 0).map_err(error)?,
            None => {
                let _ = cgroups.unset(slot);
            }
        }
        table.set(slot, kernel_rule, 0).map_err(error)?;
    }
    if rules.rules().len() < MAX_RULES {
        table
            .set(rules.rules().len() as u32, Rule::default(), 0)
            .map_err(error)?;
    }
    Ok(())
}

/// Rule `index` of `rules` as the kernel side applies it, and its cgroup's directory, opened,
/// when the rule names one that exists.
fn kernel_rule(
    rules: &RuleSet,
    index: usize,
    kernel_signal: bool,
    judging: Judging,
) -> io::Result<(Rule, Option<std::fs::File>)> {
    let rule = rules.get(index);
    let selector = &rule.selector;
    let mut kernel_rule = name_rule(selector.matcher.as_ref());
    // Users and exclusions are judged by userspace: where such a rule's name (or cgroup)
    // matches, the kernel side asks instead of watching, so it never follows a process the
    // rule leaves out; a rule by user alone asks about every exec.
    kernel_rule.defer = u32::from(!selector.users.is_empty() || !selector.exclude.is_empty());
    if selector.matcher.is_none() {
        kernel_rule.mode = if selector.cgroup.is_some() {
            RULE_ANY
        } else if !selector.users.is_empty() {
            RULE_ASK
        } else {
            RULE_NEVER
        };
    }
    let cgroup = match (&selector.cgroup, rules.cgroup_present(index)) {
        (Some(cgroup), true) => {
            let dir = cgroup.directory().map_err(io::Error::other)?;
            kernel_rule.cgroup = CGROUP_MEMBER;
            Some(std::fs::File::open(&dir)?)
        }
        (Some(_), false) => {
            kernel_rule.mode = RULE_NEVER;
            None
        }
        (None, _) => None,
    };
    if rule.limit.is_per_process() {
        kernel_rule.cgroup |= CGROUP_LIMIT;
    }
    let limit = rules.fixed_limit(index);
    kernel_rule.limit = limit.unwrap_or(u64::MAX);
    let count_swap = rule.count.swap();
    kernel_rule.trigger = limit.map_or(u64::MAX, |limit| judging.trigger(limit, count_swap));
    kernel_rule.watch_flags |= judging.watch_flags(count_swap);
    kernel_rule.profile_from = match (&rule.profile, limit) {
        (Some(profile), Some(limit)) => profile.growth_from(limit),
        _ => u64::MAX,
    };
    kernel_rule.signal = if kernel_signal {
        rule.signal.number() as u32
    } else {
        0
    };
    Ok((kernel_rule, cgroup))
}

/// The kernel side's view of a name match.
fn name_rule(matcher: Option<&Matcher>) -> Rule {
    let Some(matcher) = matcher else {
        return Rule::default();
    };
    let name = matcher.name();
    let mode = match matcher.mode() {
        MatchMode::Prefix | MatchMode::Exact if name.len() > COMM_LEN => RULE_ASK_IF_EQUAL,
        MatchMode::Prefix => RULE_PREFIX,
        MatchMode::Exact => RULE_EXACT,
        MatchMode::Regex | MatchMode::Cmdline | MatchMode::CmdlineRegex => RULE_ASK,
    };
    debug_assert_ne!(mode, RULE_NONE);
    Rule::named(mode, &name[..name.len().min(COMM_LEN)])
}

fn check_privileges() -> Result<(), Unavailable> {
    use rustix::thread::CapabilitySet;
    let effective = rustix::thread::capabilities(None)
        .map_err(|e| Unavailable(format!("cannot read this process's capabilities ({e})")))?
        .effective;
    let bpf = CapabilitySet::BPF | CapabilitySet::PERFMON;
    if effective.contains(bpf) || effective.contains(CapabilitySet::SYS_ADMIN) {
        return Ok(());
    }
    let uid = rustix::process::getuid().as_raw();
    Err(Unavailable(format!(
        "not privileged (uid {uid}): eBPF mode needs root, or CAP_BPF and CAP_PERFMON"
    )))
}

/// The events come through a BPF ring buffer, which kernels have from 5.8 on: asked of the
/// kernel itself (a map created and dropped), not read from its version.
fn check_ring_buffers() -> Result<(), Unavailable> {
    match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Unavailable(
            "the kernel has no BPF ring buffers (they came with Linux 5.8)".to_string(),
        )),
        Err(e) => Err(Unavailable(format!(
            "cannot ask the kernel whether it has BPF ring buffers: {e}"
        ))),
    }
}

fn check_pid_namespace() -> Result<(), Unavailable> {
    let link = std::fs::read_link("/proc/self/ns/pid")
        .map_err(|e| Unavailable(format!("cannot read /proc/self/ns/pid ({e})")))?;
    let inode = link.to_str().and_then(|l| {
        l.strip_prefix("pid:[")?
            .strip_suffix(']')?
            .parse::<u64>()
            .ok()
    });
    if inode == Some(HOST_PID_NAMESPACE) {
        return Ok(());
    }
    Err(Unavailable(
        "the monitor runs in a PID namespace of its own (a container without hostPID?): the kernel's process IDs would not match /proc".to_string(),
    ))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones ignore it.
fn raise_memlock_limit() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let _ = setrlimit(
        Resource::Memlock,
        Rlimit {
            current: None,
            maximum: None,
        },
    );
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<(), Unavailable> {
    let target = format!("{category}:{name}");
    let tracepoint: &mut TracePoint = program_of(ebpf, program, &target)?;
    tracepoint
        .load()
        .map_err(|e| load_failed(program, &target, e))?;
    tracepoint.attach(category, name).map_err(|e| {
        Unavailable(format!(
            "attaching {program} to {target} failed: {}",
            one_line(&e)
        ))
    })?;
    Ok(())
}

/// Attaches the `creds` program to the exit of every call in [`CREDENTIAL_CALLS`].
fn attach_credential_calls(ebpf: &mut Ebpf) -> Result<(), Unavailable> {
    let target = "syscalls:sys_exit_set*uid";
    let tracepoint: &mut TracePoint = program_of(ebpf, "creds", target)?;
    tracepoint
        .load()
        .map_err(|e| load_failed("creds", target, e))?;
    for call in CREDENTIAL_CALLS {
        tracepoint.attach("syscalls", call).map_err(|e| {
            Unavailable(format!(
                "attaching creds to syscalls:{call} failed: {}",
                one_line(&e)
            ))
        })?;
    }
    Ok(())
}

fn attach_btf_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str) -> Result<(), Unavailable> {
    let target = format!("tp_btf/{name}");
    let btf = aya::Btf::from_sys_fs()
        .map_err(|e| Unavailable(format!("cannot read the kernel's BTF for {target}: {e}")))?;
    let tracepoint: &mut BtfTracePoint = program_of(ebpf, program, &target)?;
    tracepoint
        .load(name, &btf)
        .map_err(|e| load_failed(program, &target, e))?;
    tracepoint.attach().map_err(|e| {
        Unavailable(format!(
            "attaching {program} to {target} failed: {}",
            one_line(&e)
        ))
    })?;
    Ok(())
}

/// The program `name` in `ebpf`, as the program type `P`.
fn program_of<'a, P>(ebpf: &'a mut Ebpf, name: &str, target: &str) -> Result<&'a mut P, Unavailable>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| Unavailable(format!("the BPF object has no program {name}")))?
        .try_into()
        .map_err(|e| {
            Unavailable(format!(
                "preparing {name} for {target} failed: {}",
                one_line(&e)
            ))
        })
}

/// Why loading a program failed; the verifier's own complaint when it refused it.
fn load_failed(program: &str, target: &str, error: aya::programs::ProgramError) -> Unavailable {
    match &error {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => Unavailable(format!(
            "the kernel refused program {program} for {target} ({io_error}); the verifier says: {}",
            verifier_complaint(&verifier_log.to_string())
        )),
        other => Unavailable(format!(
            "loading {program} for {target} failed: {}",
            one_line(other)
        )),
    }
}

/// Registers a ring buffer with the runtime, to wait until it has data.
fn readable_fd<T: std::os::fd::AsRawFd>(ring: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: aya's ring buffers own their map's file descriptor for as long as they live,
    // and the AsyncFd owns the ring buffer: the descriptor stays open and the same.
    unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(Into::into)
}

/// Forwards the programs' own log lines (aya-log) to this process's log.
fn start_program_logs(ebpf: &mut Ebpf) {
    let Ok(logger) = aya_log::EbpfLogger::init(ebpf) else {
        return;
    };
    let Ok(mut logger) = readable_fd(logger) else {
        return;
    };
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

/// The line of a verifier log that says what was refused: the last one before its statistics
/// ("verification time …", "processed … insns").
fn verifier_complaint(log: &str) -> &str {
    let is_statistics = |line: &str| {
        ["verification time", "stack depth", "processed ", "}"]
            .iter()
            .any(|prefix| line.starts_with(prefix))
    };
    log.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !is_statistics(line))
        .unwrap_or("(no verifier log)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules_mirror_the_matcher() {
        let rule = |mode, name: &str| name_rule(Some(&Matcher::new(mode, name).unwrap()));
        assert_eq!(
            rule(MatchMode::Prefix, "my-app"),
            Rule::named(RULE_PREFIX, b"my-app")
        );
        assert_eq!(
            rule(MatchMode::Exact, "my-app"),
            Rule::named(RULE_EXACT, b"my-app")
        );
        assert_eq!(rule(MatchMode::Regex, "^a").mode, RULE_ASK);
        assert_eq!(rule(MatchMode::Cmdline, "--port").mode, RULE_ASK);
        assert_eq!(
            rule(MatchMode::CmdlineRegex, "--port=[0-9]+").mode,
            RULE_ASK
        );
        let long = rule(MatchMode::Prefix, "my-application-server");
        assert_eq!(long, Rule::named(RULE_ASK_IF_EQUAL, b"my-application-"));
        assert_eq!(name_rule(None).mode, RULE_NONE);
    }

    #[test]
    fn the_verifier_complaint_is_the_last_line_before_statistics() {
        let log = "0: R1=ctx() R10=fp0\n24: (71) r3 = *(u8 *)(r1 +0)\n\
                   dereference of modified ctx ptr R1 off=28 disallowed\n\
                   verification time 304 usec\nstack depth 152+0+0\n\
                   processed 23 insns (limit 1000000) max_states_per_insn 0\n }";
        assert_eq!(
            verifier_complaint(log),
            "dereference of modified ctx ptr R1 off=28 disallowed"
        );
        assert_eq!(verifier_complaint(""), "(no verifier log)");
    }
}
