//! The exact reading: a process's exact RSS as the kernel's counters for its memory map plus
//! what they do not hold yet — each CPU's part of a per-CPU counter (6.2 on), or each
//! thread's cached changes (up to 6.1). `exact_rss` is never attached: userspace runs it on
//! demand (`BPF_PROG_TEST_RUN`). The RSS programs use the per-CPU sum too (`summed_bytes`),
//! within a process's margin under its limit, to report only true crossings.

use aya_ebpf::{
    Global,
    helpers::generated::bpf_map_lookup_percpu_elem,
    macros::map,
    maps::{Array, PerCpuArray, ProgramArray},
    programs::RawTracePointContext,
};
use memory_monitor_ebpf::{ThreadWalk, WATCH_COUNT_SWAP, Watch, exact, member};

use crate::{PAGE_SIZE, RSS_COUNT_OFFSETS, WATCHED, read_kernel, read_unchecked};

/// Each possible CPU's per-CPU offset (`__per_cpu_offset[cpu]`: where that CPU's copy of a
/// per-CPU variable is, relative to the variable's own address), found once at load by
/// `cpu_offsets`, for summing per-CPU counters. Sized by the loader.
#[map]
static CPU_OFFSETS: Array<u64> = Array::with_max_entries(exact::MAX_CPUS, 0);

/// A per-CPU value whose copies `cpu_offsets` looks up on every CPU: each copy's address less
/// the value's own per-CPU address is that CPU's offset. Nothing is stored in it.
#[map]
static PER_CPU_PROBE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-thread caches: where a reading's walk of a process's threads stands between its rounds
/// (`exact_rss` tail-calls itself for each next round, all within one run).
#[map]
static THREAD_WALK: Array<ThreadWalk> = Array::with_max_entries(1, 0);

/// `exact_rss` itself (set by the loader), for its walk's next round.
#[map]
static WALK_ROUNDS: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// What the exact reading adds to the map's counters (`exact::SUM_*`).
#[unsafe(no_mangle)]
pub(crate) static EXACT_SUM: Global<u32> = Global::new(exact::SUM_NONE);
/// Per-CPU counters: where each member's `percpu_counter.counters` (its per-CPU part) is in
/// `mm_struct`, from BTF. (Each member's count is at `RSS_COUNT_OFFSETS`.)
#[unsafe(no_mangle)]
static RSS_PARTS_OFFSETS: Global<[u64; member::COUNT]> = Global::new([0; member::COUNT]);
/// How many CPUs may exist (`nr_cpu_ids`): the parts summed.
#[unsafe(no_mangle)]
static POSSIBLE_CPUS: Global<u32> = Global::new(1);
/// In `struct bpf_array`, where its per-CPU values' pointers are (`pptrs`), from BTF.
#[unsafe(no_mangle)]
static ARRAY_PPTRS_OFFSET: Global<u64> = Global::new(0);
/// Per-thread caches: `task_struct.rss_stat.count` (each thread's cached changes, an `int`
/// per member), `task_struct.rss_stat.events` and `task_struct.flags` (whether the cache is
/// being folded in), `signal_struct.thread_head` and `task_struct.thread_node` (the list of a
/// process's threads), from BTF.
#[unsafe(no_mangle)]
static TASK_RSS_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static TASK_RSS_EVENTS_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static TASK_FLAGS_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static SIGNAL_THREAD_HEAD_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static TASK_THREAD_NODE_OFFSET: Global<u64> = Global::new(0);

/// Whether member `m` counts toward the limit: the resident ones, and swap entries when the
/// rule counts swap.
#[inline(always)]
fn counts_toward_limit(m: usize, count_swap: bool) -> bool {
    m != member::SWAPENTS || count_swap
}

/// The exact resident memory from each member's exact sum (pages, or bytes: whichever the
/// sums are in): each clamped at 0, as the kernel clamps what it shows, and only those that
/// count. Without a branch (a sign mask clamps, a
/// multiplication leaves swap out): a verifier that walks every way out of a loop walks this
/// once a way.
#[inline(always)]
fn resident_pages(sums: &[i64; member::COUNT], count_swap: bool) -> u64 {
    let clamped = |m: usize| (sums[m] & !(sums[m] >> 63)) as u64;
    clamped(member::FILE)
        + clamped(member::ANON)
        + clamped(member::SHMEM)
        + clamped(member::SWAPENTS) * u64::from(count_swap)
}

/// Each member's count in the map at `mm_ptr`, as the kernel keeps it (the folded count of
/// a per-CPU counter; an atomic counter's value).
#[inline(always)]
fn map_counts(mm_ptr: u64, count_swap: bool) -> [i64; member::COUNT] {
    let offsets = RSS_COUNT_OFFSETS.load();
    let mut counts = [0; member::COUNT];
    for (m, count) in counts.iter_mut().enumerate() {
        if counts_toward_limit(m, count_swap) {
            *count = read_kernel::<i64>(mm_ptr + offsets[m]);
        }
    }
    counts
}

/// Per-CPU counters: adds each member's part on every possible CPU to `sums`, as the kernel's
/// `percpu_counter_sum` does. O(CPUs): one read per CPU and member.
#[inline(always)]
fn add_cpu_parts(mm_ptr: u64, count_swap: bool, sums: &mut [i64; member::COUNT]) {
    let offsets = RSS_PARTS_OFFSETS.load();
    let mut parts = [0u64; member::COUNT];
    for (m, part) in parts.iter_mut().enumerate() {
        if counts_toward_limit(m, count_swap) {
            *part = read_kernel::<u64>(mm_ptr + offsets[m]);
        }
    }
    let cpus = POSSIBLE_CPUS.load().min(exact::MAX_CPUS);
    let mut cpu = 0;
    while cpu < cpus {
        let Some(&offset) = CPU_OFFSETS.get(cpu) else {
            break;
        };
        for (m, sum) in sums.iter_mut().enumerate() {
            if counts_toward_limit(m, count_swap) {
                *sum += i64::from(read_kernel::<i32>(parts[m].wrapping_add(offset)));
            }
        }
        cpu += 1;
    }
}

/// Per-thread caches: one round of the walk of a process's threads, from where `walk`
/// stands, adding what each thread has cached to its sums, except a cache being folded in
/// ([`exact::FOLDING_EVENTS`]). A round is short, as every round of a loop is walked by the
/// verifier (5.10's takes some 1,200 instructions for each).
#[inline(always)]
fn walk_threads(walk: &mut ThreadWalk) {
    let (node_offset, cache_offset) = (TASK_THREAD_NODE_OFFSET.load(), TASK_RSS_OFFSET.load());
    let (events_offset, flags_offset) = (TASK_RSS_EVENTS_OFFSET.load(), TASK_FLAGS_OFFSET.load());
    let mut round = 0;
    while round < exact::THREADS_A_ROUND {
        let node = walk.node;
        if node == walk.head || node == 0 {
            break;
        }
        let task = node.wrapping_sub(node_offset);
        // The cache's four `int`s as two words (zeroing an array of four would be a call).
        let mut cached = [0u64; 2];
        read_unchecked(&mut cached, task + cache_offset);
        let folding = read_kernel::<i32>(task + events_offset) >= exact::FOLDING_EVENTS
            || read_kernel::<u32>(task + flags_offset) & exact::PF_EXITING != 0;
        let counted = i64::from(!folding);
        // Every member, with no branch (`resident_pages` leaves out what does not count).
        for (m, sum) in walk.sums.iter_mut().enumerate() {
            *sum += counted * i64::from((cached[m / 2] >> (32 * (m % 2))) as u32 as i32);
        }
        let mut next = 0u64;
        read_unchecked(&mut next, node);
        walk.node = next;
        round += 1;
    }
}

/// Per-CPU counters: where the map at `mm_ptr` keeps its counters' per-CPU parts, when they
/// lie side by side, one `s32` per member (else 0).
#[inline(always)]
pub(crate) fn side_by_side_parts(mm_ptr: u64) -> u64 {
    let offsets = RSS_PARTS_OFFSETS.load();
    let first = read_kernel::<u64>(mm_ptr + offsets[0]);
    let mut together = first != 0;
    for (m, &offset) in offsets.iter().enumerate().skip(1) {
        together &= read_kernel::<u64>(mm_ptr + offset) == first + 4 * m as u64;
    }
    if together { first } else { 0 }
}

/// The exact RSS of `watch`'s process (bytes) on a kernel with per-CPU counters, at a change
/// of its counters: each member's count as the RSS program last read it (it reads the member
/// that changes at every change), plus its parts, read at one go a CPU where they lie side by
/// side (else as the reading program reads them).
#[inline(always)]
pub(crate) fn summed_bytes(watch: &Watch) -> u64 {
    let count_swap = watch.flags & WATCH_COUNT_SWAP != 0;
    let page = PAGE_SIZE.load();
    if watch.parts == 0 {
        let mut sums = map_counts(watch.mm_ptr, count_swap);
        add_cpu_parts(watch.mm_ptr, count_swap, &mut sums);
        return resident_pages(&sums, count_swap).wrapping_mul(page as u64);
    }
    let mut sums = watch.members;
    let cpus = POSSIBLE_CPUS.load().min(exact::MAX_CPUS);
    let mut cpu = 0;
    while cpu < cpus {
        let Some(&offset) = CPU_OFFSETS.get(cpu) else {
            break;
        };
        // The four `s32` parts as two words (zeroing an array of four would be a call).
        let mut parts = [0u64; 2];
        read_unchecked(&mut parts, watch.parts.wrapping_add(offset));
        for (m, sum) in sums.iter_mut().enumerate() {
            *sum += i64::from((parts[m / 2] >> (32 * (m % 2))) as u32 as i32).wrapping_mul(page);
        }
        cpu += 1;
    }
    resident_pages(&sums, count_swap)
}

/// The exact reading, on demand: never attached, userspace runs it (`BPF_PROG_TEST_RUN`) with
/// a watched process's tgid and a number new for each reading as its arguments. It returns
/// the process's exact resident pages, swap entries included where its rule counts them, or
/// `exact::NOT_KNOWN`. Per-thread caches are summed in rounds, the program tail-calling itself
/// for each next one (the reading's number tells a first round from the next): all in one
/// run, under the RCU read lock that keeps every thread it walks from being freed meanwhile.
/// Written without the `raw_tracepoint` macro, whose programs return 0 whatever their
/// function does.
#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp")]
pub fn exact_rss(ctx: *mut core::ffi::c_void) -> u32 {
    let ctx = RawTracePointContext::new(ctx);
    let tgid: u64 = ctx.arg(0);
    // SAFETY: copied out at once.
    let Some(watch) = unsafe { WATCHED.get(tgid as u32) }.copied() else {
        return exact::NOT_KNOWN;
    };
    if watch.mm_ptr == 0 {
        return exact::NOT_KNOWN;
    }
    let count_swap = watch.flags & WATCH_COUNT_SWAP != 0;
    let sums = match EXACT_SUM.load() {
        exact::SUM_CPU_PARTS => {
            let mut sums = map_counts(watch.mm_ptr, count_swap);
            add_cpu_parts(watch.mm_ptr, count_swap, &mut sums);
            sums
        }
        exact::SUM_THREAD_CACHES if watch.group != 0 => {
            let Some(walk) = THREAD_WALK.get_ptr_mut(0) else {
                return exact::NOT_KNOWN;
            };
            // SAFETY: a live array value, used by this program only.
            let walk = unsafe { &mut *walk };
            let reading: u64 = ctx.arg(1);
            if walk.reading != reading {
                let head = watch.group + SIGNAL_THREAD_HEAD_OFFSET.load();
                *walk = ThreadWalk {
                    reading,
                    head,
                    node: read_kernel(head),
                    sums: map_counts(watch.mm_ptr, count_swap),
                };
            }
            walk_threads(walk);
            if walk.node == 0 {
                return exact::NOT_KNOWN;
            }
            if walk.node != walk.head {
                // SAFETY: the next round, in this same run; a failure (past the kernel's
                // limit on tail calls) falls through: the walk is cut short.
                unsafe { WALK_ROUNDS.tail_call(&ctx, 0) };
                return exact::NOT_KNOWN;
            }
            walk.sums
        }
        _ => return exact::NOT_KNOWN,
    };
    resident_pages(&sums, count_swap).min(u64::from(exact::NOT_KNOWN - 1)) as u32
}

/// Finds every possible CPU's per-CPU offset, once, at load (userspace runs it, as
/// `exact_rss`), into `CPU_OFFSETS`: there is no helper that gives it, and `__per_cpu_offset`
/// is not always among the kernel's symbols. A per-CPU array's value has a per-CPU address
/// (the array's `pptrs[0]`) and a copy on each CPU (`bpf_map_lookup_percpu_elem`); the
/// distance between the two is that CPU's offset. Reading the array's own fields needs its
/// address as a number: stored into a map value and read back (`CAP_PERFMON` allows it).
/// Returns 0 when every offset is in.
#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp")]
pub fn cpu_offsets(_ctx: *mut core::ffi::c_void) -> u32 {
    let Some(scratch) = CPU_OFFSETS.get_ptr_mut(0) else {
        return 1;
    };
    let probe = core::ptr::addr_of!(PER_CPU_PROBE);
    // SAFETY: a live array value; the address goes in and comes back out as a number.
    let array = unsafe {
        core::ptr::write_volatile(scratch, probe as u64);
        core::ptr::read_volatile(scratch)
    };
    let values = read_kernel::<u64>(array + ARRAY_PPTRS_OFFSET.load());
    if values == 0 {
        return 2;
    }
    let key = 0u32;
    let cpus = POSSIBLE_CPUS.load().min(exact::MAX_CPUS);
    let mut cpu = 0;
    while cpu < cpus {
        // SAFETY: a map and a key on the stack, as the helper expects.
        let copy = unsafe {
            bpf_map_lookup_percpu_elem(
                probe as *mut core::ffi::c_void,
                core::ptr::addr_of!(key).cast(),
                cpu,
            )
        };
        let Some(slot) = CPU_OFFSETS.get_ptr_mut(cpu) else {
            return 3;
        };
        if copy.is_null() {
            return 4;
        }
        // SAFETY: as above: the copy's address, as a number.
        unsafe {
            core::ptr::write_volatile(slot, copy as u64);
            let address = core::ptr::read_volatile(slot);
            core::ptr::write_volatile(slot, address.wrapping_sub(values));
        }
        cpu += 1;
    }
    0
}
