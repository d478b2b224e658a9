//! memory-monitor's BPF programs.
//!
//! - `rss_stat` (`kmem:rss_stat`) follows every change of a watched process's RSS counters and
//!   reports, once per crossing, when the approximate RSS comes within the counters' error of
//!   the limit, or of its rule's warning level (`crossing`); userspace then judges the exact
//!   figure. With `--kernel-signal` it also signals the process itself, from the process's
//!   own context, when the approximate RSS passes the limit.
//! - `exec`, `newtask`, `rename`, `migrate`, `creds` and `exit` (in [`watch_set`]) keep the
//!   set of watched processes current without polling: a process that execs or renames itself
//!   to a matching name is watched, a watched process's fork is watched, a task moved to
//!   another cgroup is asked about (when a rule names a cgroup), as is one whose credentials
//!   changed (when a rule selects by user), and an exited one is forgotten.
//! - `exact_rss` (in [`exact_reading`]), never attached, is run by userspace on demand for a
//!   process's exact RSS: the counters plus each CPU's part or each thread's cache.
//! - `mark_victim` (`oom:mark_victim`, in [`oom`]) reports every process the kernel's OOM
//!   killer chooses, watched or not.
//!
//! Hot path: every page fault of every process on the machine passes through `rss_stat`, so an
//! unwatched process's own change leaves after one array lookup by its tgid (`WATCH_SLOTS`),
//! and with `tp_btf` one more by its memory map (`MM_SLOTS`); only a change to a watched
//! process's map made from another context takes a hash lookup.
#![no_std]
#![no_main]
#![feature(core_intrinsics, asm_experimental_arch)]
#![allow(
    internal_features,
    reason = "core's atomic add, for want of atomic types on BPF"
)]
#![allow(
    missing_docs,
    reason = "the tracepoint macro does not carry doc comments to the functions it generates"
)]

mod budget;
mod oom;

use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::BPF_F_USER_STACK,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, CgroupArray, HashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{BtfTracePointContext, TracePointContext, tracing::StackIdContext},
};
use core::intrinsics::{AtomicOrdering::Relaxed, atomic_xadd};
use memory_monitor_ebpf::{
    Event, Field, MAX_RULES, Rule, WATCH_ARMED, WATCH_COUNT_SWAP, WATCH_GROUPED, WATCH_SHARE_ARMED,
    WATCH_SUMS_CPUS, WATCH_WARN_ARMED, WATCH_WAYPOINTS, Watch, exact, growth_key, layout, member,
};

mod crossing;
mod exact_reading;
mod watch_set;
mod waypoint;

use crossing::{judge_if_due, judge_share};
use exact_reading::{EXACT_SUM, side_by_side_parts};
use watch_set::forget_mm;

/// Capacity placeholder; the loader sets the real one (`--max-processes`). The growth
/// profile's maps get theirs too (1 when it is off).
const MAX_PROCESSES: u32 = 16384;
/// Slot-count placeholder (a power of two); the loader sets the real one.
const MAX_SLOTS: u32 = 65536;

/// Watched processes by tgid. Written by userspace (start-up, discovery confirmations) and here.
#[map]
static WATCHED: HashMap<u32, Watch> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// Memory map (the tracepoint's hashed mm id, or the mm pointer for `tp_btf`) → tgid, learned
/// from each watched process's own changes, to attribute the changes other contexts make.
#[map]
static MM_OWNER: HashMap<u64, u32> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// The memory map each process was last learned to have, by tgid: `MM_OWNER` the other way
/// round, written only here. Forgetting a process finds its map here, not in its watch, which
/// userspace rewrites (with no map) or removes when it lets the process go: a map found only
/// there would stay counted once the process is gone. Removed when the process execs or exits,
/// watched or not.
#[map]
static OWNED_MM: HashMap<u32, u64> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// How many of `MM_OWNER`'s maps fall in each slot (`mm_slot`): lets a change to a map no
/// watched process owns leave after an array lookup, not a hash lookup. Written only with
/// `MM_OWNER`, here, by atomic adds: a count goes up before its map is inserted and down after
/// it is removed, so it is never below the maps it stands for (at worst, for an instant, above).
#[map]
static MM_SLOTS: Array<u32> = Array::with_max_entries(MAX_SLOTS, 0);

/// How many watched processes fall in each slot (`tgid & SLOT_MASK`): the hot path's first
/// question, and its cheapest (an array lookup the verifier inlines). Only userspace writes it,
/// so the counts are exact without atomics; a process counts once userspace has seeded it.
#[map]
static WATCH_SLOTS: Array<u32> = Array::with_max_entries(MAX_SLOTS, 0);

/// Re-arm requests from userspace (key: `rearm_key`, the tgid and the level; value: the `bpf_ktime_get_ns()` from which the
/// watch is armed again, so a process moving near its limit is reported at most once per
/// gap; userspace checks it itself when the gap ends). Kept apart from `WATCHED` so userspace
/// never writes a watch record back over counter values this side has just updated.
#[map]
static REARM: HashMap<u64, u64> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// `--kernel-signal`: who sends an episode's first signal. Both sides insert the process with
/// `BPF_NOEXIST` and only the one whose insert succeeds sends, so the signal goes exactly once.
#[map]
static SIGNAL_CLAIMS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// Growth profile: user stacks of the changes that grew a watched process above
/// its `profile_from`.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(1024, 0);

/// Growth profile: samples per (process, stack) (`growth_key`); each stands for
/// `SAMPLE_BYTES` grown. Userspace reads and clears a process's entries on its breach.
#[map]
static GROWTH: HashMap<u64, u64> = HashMap::with_max_entries(4096, 0);

/// Events for userspace.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Events that did not fit in `EVENTS`, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Set to 1 whenever an event is lost, so userspace learns of losses with one cheap read.
#[map]
static LOST_FLAG: Array<u64> = Array::with_max_entries(1, 0);

/// The rules, in order, as userspace last set them (on start-up and on every reload).
#[map]
static RULES: Array<Rule> = Array::with_max_entries(MAX_RULES as u32, 0);

/// Each rule's cgroup (same index), for rules that name one.
#[map]
static CGROUPS: CgroupArray = CgroupArray::with_max_entries(MAX_RULES as u32, 0);

/// Processes never to watch: the monitor and its parent (and PID 1, always).
#[unsafe(no_mangle)]
static MONITOR_TGID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static MONITOR_PARENT_TGID: Global<u32> = Global::new(0);

/// `WATCH_SLOTS`' and `MM_SLOTS`' size minus one.
#[unsafe(no_mangle)]
static SLOT_MASK: Global<u32> = Global::new(MAX_SLOTS - 1);

/// `tp_btf` only: where `mm_struct.rss_stat[member].count` is for each member (kernels whose
/// tracepoint does not pass the count), and `task_struct.mm`, as the loader found in the
/// kernel's BTF; and the page size.
#[unsafe(no_mangle)]
static RSS_COUNT_OFFSETS: Global<[u64; member::COUNT]> = Global::new([0; member::COUNT]);
#[unsafe(no_mangle)]
static TASK_MM_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static PAGE_SIZE: Global<i64> = Global::new(4096);

/// Whether `sched_process_exit`'s record has `group_dead` (6.16 on); where it does not, the
/// exit program reads `current->signal->live`, the count of the thread group's live threads,
/// at the offsets the loader found in BTF (`do_exit` decrements it before the tracepoint).
#[unsafe(no_mangle)]
static EXIT_HAS_GROUP_DEAD: Global<u32> = Global::new(1);
/// `task_struct.signal`, and in `signal_struct` `live` and `nr_threads`, from BTF.
#[unsafe(no_mangle)]
static TASK_SIGNAL_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static SIGNAL_LIVE_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static SIGNAL_THREADS_OFFSET: Global<u64> = Global::new(0);

/// How far each thread's cached RSS changes can keep the kernel's counters behind (bytes; 0
/// on kernels whose threads cache nothing): the trigger comes down by this per thread.
#[unsafe(no_mangle)]
static THREAD_LAG: Global<u64> = Global::new(0);

/// Whether any rule counts swap (set at load): only then are swap-entry changes followed, so
/// that without such a rule they cost nothing more than today (one compare).
#[unsafe(no_mangle)]
static COUNT_SWAP: Global<u32> = Global::new(0);

/// Growth profile: one stack sample per this many bytes grown.
#[unsafe(no_mangle)]
static SAMPLE_BYTES: Global<u32> = Global::new(256 * 1024);

/// The `WATCH_*` flags a watch takes from its rule.
const RULE_WATCH_FLAGS: u32 = WATCH_COUNT_SWAP | WATCH_SUMS_CPUS | WATCH_GROUPED | WATCH_WAYPOINTS;

const CLONE_THREAD: u64 = 0x0001_0000;
/// `BPF_NOEXIST`: insert only if absent, atomically.
const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update only if present.
const BPF_EXIST: u64 = 2;

/// Reads a scalar tracepoint field straight from the record: one load at a constant offset,
/// which the verifier checks (the fields are naturally aligned).
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, field: Field) -> T {
    // SAFETY: the loader has checked `field` against this kernel's record layout, and a
    // tracepoint program may read its record.
    unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(field.offset).cast::<T>()) }
}

/// Reads an array field (the verifier allows direct loads only of scalars).
fn array_field<const N: usize>(ctx: &TracePointContext, field: Field) -> [u8; N] {
    // SAFETY: as for `field`; the helper copes with any alignment.
    unsafe { ctx.read_at::<[u8; N]>(field.offset) }.unwrap_or([0; N])
}

fn now_ns() -> u64 {
    // SAFETY: reads the monotonic clock; no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

fn excluded(tgid: u32) -> bool {
    tgid <= 1 || tgid == MONITOR_TGID.load() || tgid == MONITOR_PARENT_TGID.load()
}

/// Sends an event to userspace; a full ring buffer is counted, never fatal.
#[inline(always)]
fn emit(kind: u32, tgid: u32, rss: u64) {
    let event = Event {
        kind,
        tgid,
        rss,
        time_ns: now_ns(),
    };
    send(&event);
}

/// Sends a record that starts with an [`Event`] to userspace; a full ring buffer is counted,
/// never fatal.
#[inline(always)]
fn send<T>(record: &T) {
    if EVENTS.output::<T>(record, 0).is_err() {
        if let Some(lost) = LOST.get_ptr_mut(0) {
            // SAFETY: a valid per-CPU slot, touched only by this CPU.
            unsafe { *lost += 1 };
        }
        let _ = LOST_FLAG.set(0, 1u64, 0);
    }
}

/// `kmem:rss_stat` (classic tracepoint): one of a process's RSS counters changed.
#[tracepoint]
pub fn rss_stat(ctx: TracePointContext) -> u32 {
    let Some(slot) = resident_slot(field(&ctx, layout::RSS_MEMBER)) else {
        return 0;
    };
    // `curr`: the change is made by a task of that mm; otherwise only the mm id names it.
    let own = field::<u32>(&ctx, layout::RSS_CURR) != 0;
    let mm = u64::from(field::<u32>(&ctx, layout::RSS_MM_ID));
    let found = if own {
        let tgid = current_tgid();
        if !maybe_watched(tgid) {
            return 0;
        }
        WATCHED.get_ptr_mut(tgid).map(|watch| (tgid, watch))
    } else {
        owner_of(mm)
    };
    if let Some((tgid, watch)) = found {
        // SAFETY: a live map value (see `update`).
        let watch = unsafe { &mut *watch };
        // The record's size is summed over every CPU where counters are per-CPU (6.2 on), so
        // the kernel side never sums them again here; the map's address is learned for the
        // exact reading.
        if update(
            watch,
            tgid,
            (mm, current_mm),
            own,
            slot,
            field(&ctx, layout::RSS_SIZE),
        ) {
            sample_growth(&ctx, tgid);
        }
        if watch.flags & WATCH_GROUPED != 0 {
            judge_share(tgid);
        }
        waypoint::follow(watch, tgid);
    }
    0
}

/// `kmem:rss_stat` as a BTF tracepoint (`tp_btf`): the same change, seen through the
/// tracepoint's arguments (`mm`, `member`) without the tracepoint's record being filled in;
/// the counter is read from the mm (`percpu_counter`s, 6.2 on).
#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat_btf(ctx: BtfTracePointContext) -> i32 {
    let mm: u64 = ctx.arg(0);
    let member: i32 = ctx.arg(1);
    let Some(slot) = resident_slot(member as u32) else {
        return 0;
    };
    on_btf_change(&ctx, mm, slot, || {
        // A plain load, not a probe read: the verifier knows `mm` for the tracepoint's
        // `struct mm_struct *`, and the offset (read-only data) for a counter's `count` in it.
        // SAFETY: the kernel checks the load against the type, and the JIT guards it.
        unsafe { core::ptr::read_volatile((mm + RSS_COUNT_OFFSETS.load()[slot]) as *const i64) }
    })
}

/// `kmem:rss_stat` as a BTF tracepoint on kernels whose tracepoint passes the counter's new
/// value (`mm`, `member`, `count` in pages: up to 6.1, where the counters are atomics).
#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat_btf_count(ctx: BtfTracePointContext) -> i32 {
    let mm: u64 = ctx.arg(0);
    let member: i32 = ctx.arg(1);
    let Some(slot) = resident_slot(member as u32) else {
        return 0;
    };
    let count: i64 = ctx.arg(2);
    on_btf_change(&ctx, mm, slot, || count)
}

/// A change of counter `slot` of memory map `mm`, seen by a BTF tracepoint; `pages` reads the
/// counter's new value, in pages.
#[inline(always)]
fn on_btf_change(
    ctx: &BtfTracePointContext,
    mm: u64,
    slot: usize,
    pages: impl FnOnce() -> i64,
) -> i32 {
    let tgid = current_tgid();
    let own = match maybe_watched(tgid) {
        true => WATCHED
            .get_ptr_mut(tgid)
            // SAFETY: reads a live map value.
            .filter(|&watch| unsafe { (*watch).mm } == mm || current_mm() == mm),
        false => None,
    };
    // Otherwise made from another context (reclaim, a kernel thread, another process through
    // `process_madvise`), or (nearly every change on the machine) an unwatched process's own:
    // only the mm can say whose.
    let found = match own {
        Some(watch) => Some((tgid, watch, true)),
        None => owner_of(mm).map(|(tgid, watch)| (tgid, watch, false)),
    };
    if let Some((tgid, watch, own)) = found {
        let pages = pages().max(0);
        // SAFETY: a live map value (see `update`).
        let watch = unsafe { &mut *watch };
        if update(
            watch,
            tgid,
            (mm, || mm),
            own,
            slot,
            pages * PAGE_SIZE.load(),
        ) {
            sample_growth(ctx, tgid);
        }
        if watch.flags & WATCH_GROUPED != 0 {
            judge_share(tgid);
        }
        waypoint::follow(watch, tgid);
    }
    0
}

/// The watch slot of a counter that can count: the resident ones, and swap entries when a
/// rule counts them; none for a counter this program does not know. (Matching constants
/// keeps each store's offset fixed, which the verifier can check.)
#[inline(always)]
fn resident_slot(member: u32) -> Option<usize> {
    match member as usize {
        member::FILE => Some(member::FILE),
        member::ANON => Some(member::ANON),
        member::SHMEM => Some(member::SHMEM),
        member::SWAPENTS if COUNT_SWAP.load() != 0 => Some(member::SWAPENTS),
        _ => None,
    }
}

/// Whether `tgid` may be watched: false settles it for nearly every process on the machine.
#[inline(always)]
fn maybe_watched(tgid: u32) -> bool {
    WATCH_SLOTS
        .get(tgid & SLOT_MASK.load())
        .is_some_and(|&count| count != 0)
}

/// Whether a watched process may own memory map `mm`: false settles it for nearly every map
/// on the machine.
#[inline(always)]
fn mm_maybe_owned(mm: u64) -> bool {
    MM_SLOTS.get(mm_slot(mm)).is_some_and(|&count| count != 0)
}

/// `mm`'s slot in `MM_SLOTS`. Map ids and pointers are not spread evenly in their low bits (a
/// pointer's are its alignment), so they are mixed first (Fibonacci hashing).
#[inline(always)]
fn mm_slot(mm: u64) -> u32 {
    (u64::from(low_bits(mm)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 & SLOT_MASK.load()
}

/// The low 32 bits of `value`, as a plain number even where the verifier knows it for a
/// pointer (`tp_btf`'s `mm`), on which it allows no arithmetic but a 32-bit subtraction,
/// whose result it takes for a number (for programs loaded with `CAP_PERFMON`, as these are).
#[inline(always)]
fn low_bits(value: u64) -> u32 {
    let low: u64;
    // SAFETY: one register-only instruction, no memory touched.
    unsafe {
        core::arch::asm!("w0 -= 0", inout("r0") value => low, options(pure, nomem, nostack));
    }
    low as u32
}

/// Adds `delta` (wrapping: `u32::MAX` takes one away) to `mm`'s count in `MM_SLOTS`.
#[inline(always)]
fn count_mm(mm: u64, delta: u32) {
    if let Some(count) = MM_SLOTS.get_ptr_mut(mm_slot(mm)) {
        // SAFETY: a live array value, which stays for the map's life; every writer adds
        // atomically (the BPF target has atomic adds but no compare-and-swap, so no
        // `AtomicU32`).
        unsafe { atomic_xadd::<u32, u32, { Relaxed }>(count, delta) };
    }
}

/// The watched process whose memory map is `mm`, as learned from its own changes. A map no
/// watched process owns is settled by an array lookup.
#[inline(always)]
fn owner_of(mm: u64) -> Option<(u32, *mut Watch)> {
    if !mm_maybe_owned(mm) {
        return None;
    }
    // SAFETY: a plain value copied out of the map at once.
    let tgid = *unsafe { MM_OWNER.get(mm) }?;
    WATCHED.get_ptr_mut(tgid).map(|watch| (tgid, watch))
}

/// The current task's memory map (`current->mm`), by the offset the loader found in BTF.
#[inline(always)]
fn current_mm() -> u64 {
    // SAFETY: no preconditions; the result is only read through probe_read.
    let task = unsafe { bpf_get_current_task() };
    read_kernel::<u64>(task + TASK_MM_OFFSET.load())
}

/// The current task's `signal_struct` (shared by its thread group), by BTF offsets.
#[inline(always)]
fn current_signal() -> u64 {
    // SAFETY: no preconditions; the result is only read through probe_read.
    let task = unsafe { bpf_get_current_task() };
    read_kernel::<u64>(task + TASK_SIGNAL_OFFSET.load())
}

/// How many threads the current process has (`signal->nr_threads`).
#[inline(always)]
fn current_threads() -> u32 {
    read_kernel::<i32>(current_signal() + SIGNAL_THREADS_OFFSET.load()).max(0) as u32
}

/// Reads kernel memory at `address` into `into`, which a failed read leaves zeroed: no branch
/// on the outcome, for loops the verifier walks round by round.
#[inline(always)]
fn read_unchecked<T>(into: &mut T, address: u64) {
    // SAFETY: the helper checks the address, writes at most `size_of::<T>()` bytes into
    // `into`, and zeroes them when the read fails.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            (into as *mut T).cast(),
            core::mem::size_of::<T>() as u32,
            address as *const core::ffi::c_void,
        )
    };
}

#[inline(always)]
fn read_kernel<T: Copy + Default>(address: u64) -> T {
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel(address as *const T) }.unwrap_or_default()
}

/// A counter of watched process `tgid` is now `size` bytes; `own` when the process made the
/// change itself (then `mm` is its map, learned for changes made from other contexts). `mm`
/// names the map as the program sees it, with a way to its `struct mm_struct *`.
/// Returns whether the growth profile wants the current stack sampled.
///
/// The watch is a live map value: this program and the discovery programs are its writers
/// besides whole-record updates from userspace, which at worst leave one counter stale until
/// its next change.
#[inline(always)]
fn update(
    watch: &mut Watch,
    tgid: u32,
    (mm, mm_ptr): (u64, impl FnOnce() -> u64),
    own: bool,
    slot: usize,
    size: i64,
) -> bool {
    if own && watch.mm != mm {
        learn_mm(watch, tgid, mm);
        watch.mm_ptr = mm_ptr();
        match EXACT_SUM.load() {
            exact::SUM_THREAD_CACHES => watch.group = current_signal(),
            exact::SUM_CPU_PARTS => watch.parts = side_by_side_parts(watch.mm_ptr),
            _ => {}
        }
    }
    if own && THREAD_LAG.load() != 0 {
        watch.threads = current_threads().max(1);
    }
    let grew = size - watch.members[slot];
    watch.members[slot] = size;
    judge_if_due(watch, tgid, own);
    // Pages going to swap or coming back are no growth of the process's own making.
    own && grew > 0 && slot != member::SWAPENTS && growth_sample_due(watch, grew as u64)
}

/// Growth profile: counts `grew` bytes toward the next stack sample of a process above its
/// `profile_from`; true when one is due. Sampling by bytes keeps the cost bounded
/// (one stack walk per `SAMPLE_BYTES` grown) and makes each sample weigh the same.
#[inline(always)]
fn growth_sample_due(watch: &mut Watch, grew: u64) -> bool {
    if watch.approximate_rss() < watch.profile_from {
        return false;
    }
    let every = SAMPLE_BYTES.load();
    let grown = u64::from(watch.grown) + grew;
    if grown < u64::from(every) {
        watch.grown = grown as u32;
        return false;
    }
    watch.grown = grown.checked_rem(u64::from(every)).unwrap_or(0) as u32;
    true
}

/// Growth profile: counts one sample for the current user stack of `tgid`.
#[inline(always)]
fn sample_growth<C: StackIdContext>(ctx: &C, tgid: u32) {
    let Ok(stack) = ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)) else {
        return;
    };
    let key = growth_key(tgid, stack as u32);
    match GROWTH.get_ptr_mut(key) {
        // SAFETY: a live map value; a lost increment under a race only loses one sample.
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = GROWTH.insert(key, 1, 0);
        }
    }
}

/// Records which mm is `tgid`'s (it changes at exec). A map two processes share (a `vfork`
/// child's, until it execs) is its latest learner's, counted once.
#[inline(always)]
fn learn_mm(watch: &mut Watch, tgid: u32, mm: u64) {
    forget_mm(tgid);
    // Full: not learned (changes from other contexts go unattributed), and tried again at
    // the process's next change.
    if OWNED_MM.insert(tgid, mm, 0).is_err() {
        watch.mm = 0;
        return;
    }
    watch.mm = mm;
    count_mm(mm, 1);
    if MM_OWNER.insert(mm, tgid, BPF_NOEXIST).is_ok() {
        return;
    }
    count_mm(mm, u32::MAX);
    if MM_OWNER.insert(mm, tgid, BPF_EXIST).is_err() {
        watch.mm = 0;
    }
}

/// A fresh watch with `model`'s settings: nothing counted yet, armed.
fn fresh(model: &Watch, flags: u32) -> Watch {
    Watch {
        members: [0; member::COUNT],
        last_event_ns: 0,
        mm: 0,
        mm_ptr: 0,
        group: 0,
        parts: 0,
        // Whether swap counts, and how the margin is judged, are the rule's: kept whatever
        // else starts afresh.
        flags: flags
            | WATCH_ARMED
            | WATCH_WARN_ARMED
            | WATCH_SHARE_ARMED
            | (model.flags & RULE_WATCH_FLAGS),
        grown: 0,
        // A new program's trend starts afresh: its first change says where it is.
        waypoint: 0,
        // After an exec, as after a fork, the process has one thread.
        threads: 1,
        ..*model
    }
}

/// The bench's floor (`cargo xtask bench`): empty programs attached as `rss_stat` and
/// `rss_stat_btf` are, whose cost is the kernel's own for that attach type. Everything the
/// RSS programs cost above it is theirs. Never loaded by the monitor.
#[tracepoint]
pub fn floor(_ctx: TracePointContext) -> u32 {
    0
}

#[btf_tracepoint(function = "rss_stat")]
pub fn floor_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// Never loaded in use: it reads memory no program may, so the verifier refuses it. The
/// loader's fault injection (`MEMORY_MONITOR_INJECT_FAULT=verifier`) loads it in the RSS
/// program's place to prove how a refusal is reported and survived.
#[tracepoint]
pub fn refused(_ctx: TracePointContext) -> u32 {
    // SAFETY: never runs: the verifier rejects the program, which is its purpose.
    unsafe { core::ptr::read_volatile(64 as *const u32) }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
