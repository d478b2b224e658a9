//! The kernel side's exact reading: a process's exact RSS as the sum of the kernel's counters
//! for its memory map and what they do not hold yet (each CPU's part of a per-CPU counter, or
//! each thread's cached changes), read by a BPF program that userspace runs on demand
//! (`BPF_PROG_TEST_RUN`). A sum over CPUs or threads costs microseconds at any process size,
//! where `smaps_rollup` walks the page tables (milliseconds per GiB, under the process's mmap
//! lock).
//!
//! The same per-CPU sum serves the RSS program itself, within a process's margin under its
//! limit (`WATCH_SUMS_CPUS`): it reports only true crossings.

use aya::Ebpf;
use aya::maps::ProgramArray;
use aya::programs::{Program, RawTracePoint, RawTracePointRunOptions, TestRun};
use memory_monitor_ebpf::{exact, member};

use crate::accounting::Exact;
use crate::kernel::btf::ExactRead;

/// The reading program's name in the BPF object.
const READER: &str = "exact_rss";
/// The program that finds each CPU's per-CPU offset, run once at load.
const CPU_OFFSETS: &str = "cpu_offsets";
/// The reading program's table of itself, for the rounds of its walk of a process's threads.
const WALK_ROUNDS: &str = "WALK_ROUNDS";

/// What the programs are told, at load, of where to find what they add up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ExactGlobals {
    /// `exact::SUM_*`.
    pub(crate) sum: u32,
    /// Per-CPU counters: each member's pointer to its parts, in `mm_struct`.
    pub(crate) parts: [u64; member::COUNT],
    /// How many CPUs may exist (the parts summed; the offsets found).
    pub(crate) cpus: u32,
    /// `bpf_array.pptrs`.
    pub(crate) array_pptrs: u64,
    /// Per-thread caches: `task_struct.rss_stat.count`.
    pub(crate) task_cache: u64,
    /// `task_struct.rss_stat.events`.
    pub(crate) task_events: u64,
    /// `task_struct.flags`.
    pub(crate) task_flags: u64,
    /// `signal_struct.thread_head`.
    pub(crate) thread_head: u64,
    /// `task_struct.thread_node`.
    pub(crate) thread_node: u64,
}

impl ExactGlobals {
    /// The globals for `read` (none: no exact reading) on a machine of `cpus` possible CPUs.
    pub(crate) fn of(read: Option<&ExactRead>, cpus: u32) -> ExactGlobals {
        let cpus = cpus.max(1);
        match read {
            Some(&ExactRead::CpuParts {
                parts, array_pptrs, ..
            }) if cpus <= exact::MAX_CPUS => ExactGlobals {
                sum: exact::SUM_CPU_PARTS,
                parts,
                cpus,
                array_pptrs,
                ..ExactGlobals::default()
            },
            Some(&ExactRead::ThreadCaches {
                task_cache,
                task_events,
                task_flags,
                thread_head,
                thread_node,
                ..
            }) => ExactGlobals {
                sum: exact::SUM_THREAD_CACHES,
                cpus,
                task_cache,
                task_events,
                task_flags,
                thread_head,
                thread_node,
                ..ExactGlobals::default()
            },
            _ => ExactGlobals {
                cpus,
                ..ExactGlobals::default()
            },
        }
    }
}

impl ExactRead {
    /// The exact figure this reading is.
    pub(crate) fn exact(&self) -> Exact {
        match self {
            ExactRead::CpuParts { .. } => Exact::CpuParts,
            ExactRead::ThreadCaches { .. } => Exact::ThreadCaches,
        }
    }

    /// Where each member's count is in `mm_struct`.
    pub(crate) fn counts(&self) -> [u64; member::COUNT] {
        match *self {
            ExactRead::CpuParts { counts, .. } | ExactRead::ThreadCaches { counts, .. } => counts,
        }
    }
}

/// Makes the exact reading ready in the loaded `ebpf`, as `globals` set it up: loads the
/// reading program and, for per-CPU counters, finds every CPU's offset. Why not, otherwise.
pub(crate) fn prepare(ebpf: &mut Ebpf, globals: &ExactGlobals) -> Result<(), String> {
    if globals.sum == exact::SUM_NONE {
        return Err(format!(
            "the kernel side cannot sum more than {} CPUs' parts",
            exact::MAX_CPUS
        ));
    }
    if globals.sum == exact::SUM_CPU_PARTS {
        let found = load(ebpf, CPU_OFFSETS)?
            .test_run(RawTracePointRunOptions::new())
            .map_err(|e| format!("finding the CPUs' offsets failed: {e}"))?;
        if found.return_value != 0 {
            return Err(format!(
                "the CPUs' offsets cannot be found (step {})",
                found.return_value
            ));
        }
    }
    let reader = load(ebpf, READER)?
        .fd()
        .and_then(|fd| fd.try_clone().map_err(Into::into))
        .map_err(|e| format!("{READER}: {e}"))?;
    if globals.sum == exact::SUM_THREAD_CACHES {
        let rounds = ebpf
            .map_mut(WALK_ROUNDS)
            .ok_or_else(|| format!("the BPF object has no map {WALK_ROUNDS}"))?;
        ProgramArray::try_from(rounds)
            .and_then(|mut rounds| rounds.set(0, &reader, 0))
            .map_err(|e| format!("{WALK_ROUNDS}: {e}"))?;
    }
    Ok(())
}

/// Loads the never-attached program `name`.
fn load<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut RawTracePoint, String> {
    let program: &mut RawTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("the BPF object has no program {name}"))?
        .try_into()
        .map_err(|e| format!("program {name}: {e}"))?;
    program.load().map_err(|e| {
        format!(
            "loading {name} failed: {}",
            crate::host::logging::one_line(&e)
        )
    })?;
    Ok(program)
}

/// Process `tgid`'s exact resident pages (with its swap entries where its rule counts them),
/// by running the reading program; `None` when it cannot tell (the process not watched, or
/// not yet seen changing its own memory, or more threads than the program walks). `reading`
/// must differ from the last reading's. One system call; allocates nothing.
pub(crate) fn read(ebpf: &Ebpf, tgid: i32, reading: u64) -> Option<u64> {
    let Some(Program::RawTracePoint(reader)) = ebpf.program(READER) else {
        return None;
    };
    let mut options = RawTracePointRunOptions::new();
    options.args[0] = u64::from(tgid as u32);
    options.args[1] = reading;
    match reader.test_run(options).ok()?.return_value {
        exact::NOT_KNOWN => None,
        pages => Some(u64::from(pages)),
    }
}
