//! What the kernel's own type information (BTF) says about the structures the programs read,
//! at offsets that differ between kernels and configurations: `current->mm` and the mm's RSS
//! counters for the `tp_btf` RSS program, the thread group's live and thread counts for the
//! exit and RSS programs, and how the kernel counts RSS at all ([`Accounting`]). Every
//! decision here is by what the types are, never by a version number, so distribution kernels
//! with backports are read as they are.

use btf_rs::{Btf, Struct, Type};
use memory_monitor_ebpf::member;

use crate::accounting::Accounting;

/// What the kernel's BTF says, for the loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelBtf {
    /// `offsetof(struct task_struct, mm)`.
    pub(crate) task_mm: u64,
    /// How the `tp_btf` RSS program reads a counter, or why it cannot.
    pub(crate) rss: Result<RssRead, String>,
    /// Where the thread group's counts are, or why they cannot be found.
    pub(crate) group: Result<GroupOffsets, String>,
    /// How this kernel counts RSS.
    pub(crate) accounting: Accounting,
    /// How the kernel side can sum a process's exact RSS, or why it cannot.
    pub(crate) exact: Result<ExactRead, String>,
}

/// Where the kernel side finds what it adds up for a process's exact RSS: the counters the
/// kernel keeps for its map, and what they do not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExactRead {
    /// Per-CPU counters (6.2 on): in `mm_struct`, each member's count and the pointer to its
    /// per-CPU parts (`percpu_counter.count`, `.counters`); and, in `struct bpf_array`, where a
    /// per-CPU array keeps its values' per-CPU pointers (`pptrs`), from which the kernel side
    /// learns each CPU's per-CPU offset.
    CpuParts {
        /// `mm_struct.rss_stat[member].count`, for each member.
        counts: [u64; member::COUNT],
        /// `mm_struct.rss_stat[member].counters`, for each member.
        parts: [u64; member::COUNT],
        /// `bpf_array.pptrs`.
        array_pptrs: u64,
    },
    /// Per-thread caches (up to 6.1): in `mm_struct`, each member's atomic count; in
    /// `task_struct`, each thread's cache (`rss_stat.count`) and its place in its process's
    /// list of threads (`thread_node`), whose head is `signal_struct.thread_head`.
    ThreadCaches {
        /// `mm_struct.rss_stat.count[member]`, for each member.
        counts: [u64; member::COUNT],
        /// `task_struct.rss_stat.count`.
        task_cache: u64,
        /// `task_struct.rss_stat.events`: faults since the cache was last folded in.
        task_events: u64,
        /// `task_struct.flags`.
        task_flags: u64,
        /// `signal_struct.thread_head`.
        thread_head: u64,
        /// `task_struct.thread_node`.
        thread_node: u64,
    },
}

/// How the `tp_btf` RSS program gets a counter's new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RssRead {
    /// The tracepoint passes it (`rss_stat(mm, member, count)`: up to 6.1, where
    /// `mm->rss_stat` is a `struct mm_rss_stat` of atomics).
    CountArgument,
    /// It reads `mm->rss_stat[member].count` (a `percpu_counter` each, 6.2 on) at these
    /// offsets in `mm_struct`.
    PercpuCounters([u64; member::COUNT]),
}

/// Where a task's thread group keeps its counts: `task_struct.signal`, and in
/// `signal_struct`, `live` (threads not yet exiting) and `nr_threads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupOffsets {
    /// `offsetof(struct task_struct, signal)`.
    pub(crate) task_signal: u64,
    /// `offsetof(struct signal_struct, live)` (an `atomic_t`: its counter is at its start).
    pub(crate) live: u64,
    /// `offsetof(struct signal_struct, nr_threads)`.
    pub(crate) nr_threads: u64,
}

/// The kernel's BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Reads the running kernel's BTF.
pub(crate) fn kernel_btf() -> Result<KernelBtf, String> {
    read(&parse_kernel_btf()?)
}

/// Parses the kernel's BTF, read whole first: parsed from the file, it would be read a few
/// bytes at a time with a seek each (over 100,000 system calls, seconds in a slow VM).
fn parse_kernel_btf() -> Result<Btf, String> {
    let bytes = std::fs::read(VMLINUX_BTF)
        .map_err(|e| format!("cannot read the kernel's BTF ({VMLINUX_BTF}): {e}"))?;
    Btf::from_bytes(&bytes)
        .map_err(|e| format!("cannot parse the kernel's BTF ({VMLINUX_BTF}): {e}"))
}

fn read(btf: &Btf) -> Result<KernelBtf, String> {
    let (task_mm, _) = member_of(btf, "task_struct", "mm")?;
    let (rss_stat, rss_type) = member_of(btf, "mm_struct", "rss_stat")?;
    let rss = rss_read(btf, rss_stat, &rss_type);
    let per_thread = member_of(btf, "task_struct", "rss_stat").is_ok();
    let accounting = match (&rss_type, per_thread) {
        // SPLIT_RSS_COUNTING: each thread caches its changes (`task->rss_stat`).
        (_, true) => Accounting::PerThread,
        (Type::Array(_), false) => Accounting::PerCpu,
        (_, false) => Accounting::Atomic,
    };
    let group = group_offsets(btf);
    let exact = exact_read(btf, rss_stat, &rss_type, accounting);
    Ok(KernelBtf {
        task_mm,
        rss,
        group,
        accounting,
        exact,
    })
}

/// Where the kernel side finds a process's exact RSS on a kernel that counts as `accounting`
/// says (`mm_struct.rss_stat`, of type `rss_type`, at `rss_stat`).
fn exact_read(
    btf: &Btf,
    rss_stat: u64,
    rss_type: &Type,
    accounting: Accounting,
) -> Result<ExactRead, String> {
    match accounting {
        Accounting::PerCpu => {
            let (counts, element) = counter_array(btf, rss_stat, rss_type, "count")?;
            let (parts, _) = counter_array(btf, rss_stat, rss_type, "counters")?;
            debug_assert!(element > 0);
            let (array_pptrs, _) = member_of(btf, "bpf_array", "pptrs")?;
            Ok(ExactRead::CpuParts {
                counts,
                parts,
                array_pptrs,
            })
        }
        Accounting::PerThread => {
            let Type::Struct(stat) = rss_type else {
                return Err("the kernel's mm_struct.rss_stat is not a struct".to_string());
            };
            let (count, count_type) = find(btf, stat, "count", 0)
                .ok_or("the kernel's mm_struct.rss_stat has no field 'count'")?;
            let step = array_step(btf, &count_type)?;
            let mut counts = [0; member::COUNT];
            for (m, offset) in counts.iter_mut().enumerate() {
                *offset = rss_stat + count + m as u64 * step;
            }
            let (task_rss, task_rss_type) = member_of(btf, "task_struct", "rss_stat")?;
            let Type::Struct(cache) = task_rss_type else {
                return Err("the kernel's task_struct.rss_stat is not a struct".to_string());
            };
            let (cache_count, cache_type) = find(btf, &cache, "count", 0)
                .ok_or("the kernel's task_struct.rss_stat has no field 'count'")?;
            if array_step(btf, &cache_type)? != 4 {
                return Err("the kernel's threads do not cache their changes as ints".to_string());
            }
            let (cache_events, _) = find(btf, &cache, "events", 0)
                .ok_or("the kernel's task_struct.rss_stat has no field 'events'")?;
            let (task_flags, _) = member_of(btf, "task_struct", "flags")?;
            let (thread_head, _) = member_of(btf, "signal_struct", "thread_head")?;
            let (thread_node, _) = member_of(btf, "task_struct", "thread_node")?;
            Ok(ExactRead::ThreadCaches {
                counts,
                task_cache: task_rss + cache_count,
                task_events: task_rss + cache_events,
                task_flags,
                thread_head,
                thread_node,
            })
        }
        Accounting::Atomic | Accounting::Unknown => Err(format!(
            "the kernel counts RSS {accounting}, with no parts to add"
        )),
    }
}

/// In an array of `percpu_counter`s (`mm_struct.rss_stat`, of type `rss_type`, at `rss_stat`),
/// where each member's field `field` is; and the counters' size.
fn counter_array(
    btf: &Btf,
    rss_stat: u64,
    rss_type: &Type,
    field: &str,
) -> Result<([u64; member::COUNT], u64), String> {
    let Type::Array(counters) = rss_type else {
        return Err("the kernel's mm_struct.rss_stat is not an array".to_string());
    };
    if counters.len() < member::COUNT {
        return Err(format!(
            "the kernel's mm_struct.rss_stat has {} counters, not {}",
            counters.len(),
            member::COUNT
        ));
    }
    let Ok(Type::Struct(counter)) = btf.resolve_chained_type(counters) else {
        return Err("the kernel's mm_struct.rss_stat does not hold structs".to_string());
    };
    let (at, _) = find(btf, &counter, field, 0)
        .ok_or_else(|| format!("the kernel's percpu_counter has no field '{field}'"))?;
    let element = counter.size() as u64;
    let mut offsets = [0; member::COUNT];
    for (m, offset) in offsets.iter_mut().enumerate() {
        *offset = rss_stat + m as u64 * element + at;
    }
    Ok((offsets, element))
}

/// The size of one element of the array type `array`, which holds at least every member.
fn array_step(btf: &Btf, array: &Type) -> Result<u64, String> {
    let Type::Array(array) = array else {
        return Err("the kernel's RSS counts are not an array".to_string());
    };
    if array.len() < member::COUNT {
        return Err(format!(
            "the kernel keeps {} RSS counts, not {}",
            array.len(),
            member::COUNT
        ));
    }
    let element = btf
        .resolve_chained_type(array)
        .map_err(|e| format!("the kernel's RSS counts have no type ({e})"))?;
    type_size(btf, &element)
}

/// The size of `ty` in bytes, through typedefs and qualifiers.
fn type_size(btf: &Btf, ty: &Type) -> Result<u64, String> {
    match ty {
        Type::Int(int) => Ok(int.size() as u64),
        Type::Struct(s) | Type::Union(s) => Ok(s.size() as u64),
        Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) => {
            let inner = ty
                .as_btf_type()
                .and_then(|of| btf.resolve_chained_type(of).ok())
                .ok_or("an untyped RSS count")?;
            type_size(btf, &inner)
        }
        _ => Err("the kernel's RSS counts are of an unexpected type".to_string()),
    }
}

/// How the `tp_btf` program can read `mm->rss_stat` (of type `rss_type`, at `rss_stat`): by
/// the tracepoint's prototype first (a `count` argument), else from `percpu_counter`s.
fn rss_read(btf: &Btf, rss_stat: u64, rss_type: &Type) -> Result<RssRead, String> {
    if tracepoint_arguments(btf, "rss_stat")? >= 3 {
        return Ok(RssRead::CountArgument);
    }
    if !matches!(rss_type, Type::Array(_)) {
        return Err(
            "the kernel's rss_stat tracepoint passes no count and mm_struct.rss_stat is not an array"
                .to_string(),
        );
    }
    let (offsets, _) = counter_array(btf, rss_stat, rss_type, "count")?;
    Ok(RssRead::PercpuCounters(offsets))
}

/// How many arguments the BTF tracepoint `name` passes (`btf_trace_<name>`'s prototype, less
/// its leading `void *` of tracepoint data).
fn tracepoint_arguments(btf: &Btf, name: &str) -> Result<usize, String> {
    let typedef = format!("btf_trace_{name}");
    let missing = || format!("the kernel's BTF has no {typedef}");
    let types = btf.resolve_types_by_name(&typedef).map_err(|_| missing())?;
    let Some(Type::Typedef(typedef_type)) = types.into_iter().next() else {
        return Err(missing());
    };
    let mut resolved = btf
        .resolve_chained_type(&typedef_type)
        .map_err(|_| missing())?;
    if let Type::Ptr(pointer) = &resolved {
        resolved = btf.resolve_chained_type(pointer).map_err(|_| missing())?;
    }
    match resolved {
        Type::FuncProto(prototype) => Ok(prototype.parameters.len().saturating_sub(1)),
        _ => Err(format!(
            "the kernel's {typedef} is not a function prototype"
        )),
    }
}

fn group_offsets(btf: &Btf) -> Result<GroupOffsets, String> {
    let (task_signal, _) = member_of(btf, "task_struct", "signal")?;
    let (live, _) = member_of(btf, "signal_struct", "live")?;
    let (nr_threads, _) = member_of(btf, "signal_struct", "nr_threads")?;
    Ok(GroupOffsets {
        task_signal,
        live,
        nr_threads,
    })
}

/// The byte offset and type of `wanted` in struct `name`.
fn member_of(btf: &Btf, name: &str, wanted: &str) -> Result<(u64, Type), String> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|e| format!("the kernel's BTF has no struct {name} ({e})"))?;
    types
        .into_iter()
        .filter_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .find_map(|s| find(btf, &s, wanted, 0))
        .ok_or_else(|| format!("the kernel's struct {name} has no field '{wanted}'"))
}

/// Looks for `wanted` among `within`'s members, and inside its anonymous structs and unions
/// (where randomised or grouped fields live); `base` is `within`'s own offset in bytes.
fn find(btf: &Btf, within: &Struct, wanted: &str, base: u64) -> Option<(u64, Type)> {
    within.members.iter().find_map(|member| {
        let offset = base + u64::from(member.bit_offset()) / 8;
        let name = btf.resolve_name(member).unwrap_or_default();
        let member_type = btf.resolve_chained_type(member).ok()?;
        if name == wanted {
            return Some((offset, member_type));
        }
        match (name.is_empty(), &member_type) {
            (true, Type::Struct(inner) | Type::Union(inner)) => find(btf, inner, wanted, offset),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads this kernel's own BTF. Only a kernel built without BTF may skip it, and says so;
    /// in the vmtest guests and in CI every kernel has BTF, so there its absence fails too. A
    /// BTF that is there but cannot be read fails everywhere: that is the parser broken.
    #[test]
    fn reads_this_kernel() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            let required = ["MEMORY_MONITOR_VMTEST", "CI"]
                .into_iter()
                .find(|var| std::env::var_os(var).is_some());
            assert_eq!(
                required, None,
                "no {VMLINUX_BTF}, where {required:?} says every kernel has it"
            );
            eprintln!("SKIPPED reads_this_kernel: this kernel has no {VMLINUX_BTF}");
            return;
        }
        let btf = parse_kernel_btf().expect("the kernel's BTF parses");
        let read = read(&btf).expect("the kernel's BTF");
        assert!(read.task_mm > 0);
        let group = read.group.expect("signal_struct's counts");
        assert!(group.task_signal > 0 && group.live != group.nr_threads);
        // Checked against the BTF itself: the prototype's arguments and the counters' type
        // decide together, one way or the other.
        match read.rss.expect("a way to read the counters") {
            RssRead::PercpuCounters(offsets) => {
                let step = offsets[1] - offsets[0];
                assert!(step >= 8, "one percpu_counter apart");
                assert_eq!(offsets[3] - offsets[2], step);
                assert_eq!(tracepoint_arguments(&btf, "rss_stat"), Ok(2));
                assert_eq!(read.accounting, Accounting::PerCpu);
            }
            RssRead::CountArgument => {
                assert_eq!(tracepoint_arguments(&btf, "rss_stat"), Ok(3));
                assert_eq!(read.accounting, Accounting::PerThread);
            }
        }
        assert!(member_of(&btf, "mm_struct", "no_such_field").is_err());
        assert!(tracepoint_arguments(&btf, "no_such_tracepoint").is_err());
    }
}
