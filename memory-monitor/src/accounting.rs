//! How the running kernel counts a process's RSS, and so which figure is exact and how far
//! the others can be off. Kernels differ:
//!
//! - **Per thread** (up to 6.1, `SPLIT_RSS_COUNTING`): each thread caches its own faults'
//!   changes (`task->rss_stat`) and folds them into the mm's counters every
//!   `TASK_RSS_EVENTS_THRESH` (64) faults, and at exec and exit. The mm's counters — and so
//!   `statm`, `status` and `kmem:rss_stat` — lag the truth by up to 64 faults' worth per
//!   thread, indefinitely for a thread that stops faulting.
//! - **Per CPU** (6.2 on): the counters are `percpu_counter`s; `statm` reads them without
//!   their per-CPU parts up to 6.15 (off by up to CPUs × batch pages per counter) and sums
//!   them exactly from 6.16 (and some stable backports).
//! - **Atomic** (neither): the counters are exact, and so is `statm`.
//!
//! Which one is known from the kernel's BTF, not from a version. That `statm` sums
//! exactly on a per-CPU kernel is a change inside a function, which BTF cannot show: it is
//! found by trying ([`statm_sums_exactly`]).
//!
//! Near the limit the monitor decides on an exact figure ([`Exact`]): `statm` where it sums
//! exactly; else, in eBPF mode, the kernel side's own sum of what the counters do not hold
//! (each CPU's part, or each thread's cache); else `smaps_rollup`, which walks the page tables
//! and is exact on every kernel, but costs milliseconds per GiB.

use std::fmt;
use std::sync::OnceLock;

/// How the running kernel counts RSS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounting {
    /// Each thread caches its changes (`task_struct.rss_stat` exists).
    PerThread,
    /// `mm_struct.rss_stat` is an array of `percpu_counter`s.
    PerCpu,
    /// Plain atomic counters, no per-thread caches: `statm` is exact.
    Atomic,
    /// Not known (no BTF read, as in poll mode): assume every kind of error.
    Unknown,
}

/// `TASK_RSS_EVENTS_THRESH`: faults a thread may take before its cache is folded in (the
/// fold comes at the fault after the 64th, so a cache can hold 65 faults' changes).
const FAULTS_CACHED_PER_THREAD: u64 = 64 + 1;
/// Pages one fault can map and count at once: file faults map their neighbours too
/// (`fault_around_bytes`, 64 KiB by default); anonymous faults, one page.
const PAGES_PER_FAULT: u64 = 16;

impl Accounting {
    /// The most the kernel's counters of one process can be off from the truth because of
    /// per-CPU parts not yet folded in, in bytes: each of the three resident counters may
    /// have up to one batch (`max(32, 2 × CPUs)` pages) on each CPU.
    pub fn counter_error(self) -> u64 {
        3 * self.one_counter_error()
    }

    /// The most one of the kernel's counters of a process (the swap entries', say) can be
    /// off because of per-CPU parts, in bytes: one batch on each CPU.
    pub fn one_counter_error(self) -> u64 {
        match self {
            Accounting::PerCpu | Accounting::Unknown => {
                let cpus = cpus();
                let batch = (2 * cpus).max(32);
                cpus * batch * crate::system::procfs::page_size()
            }
            Accounting::PerThread | Accounting::Atomic => 0,
        }
    }

    /// The most each thread's own cache can hold back from the counters, in bytes.
    pub fn thread_lag(self) -> u64 {
        match self {
            Accounting::PerThread | Accounting::Unknown => {
                FAULTS_CACHED_PER_THREAD * PAGES_PER_FAULT * crate::system::procfs::page_size()
            }
            Accounting::PerCpu | Accounting::Atomic => 0,
        }
    }

    /// Whether `statm` is exact on this kernel.
    pub fn statm_is_exact(self) -> bool {
        self == Accounting::Atomic
    }

    /// The most `statm` can be off for a process of `threads` threads, in bytes.
    pub fn statm_error(self, threads: u64) -> u64 {
        self.counter_error()
            .saturating_add(threads.max(1).saturating_mul(self.thread_lag()))
    }

    /// What the classic `kmem:rss_stat` tracepoint costs every process on this kernel, where
    /// that grows with the machine: with per-CPU counters, filling in its record sums the
    /// changed counter's part on every CPU, at every RSS change of every process (`tp_btf`
    /// fills in no record). For the start line; none where the record is cheap.
    pub fn tracepoint_record_cost(self) -> Option<String> {
        match self {
            Accounting::PerCpu => Some(format!(
                "every RSS change of every process sums a counter over {} CPUs",
                cpus()
            )),
            Accounting::Unknown => Some(
                "on kernels with per-CPU counters (6.2 on), every RSS change of every process sums a counter over every CPU".to_string(),
            ),
            Accounting::PerThread | Accounting::Atomic => None,
        }
    }
}

/// Which exact figure decides whether a process is over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exact {
    /// `/proc/PID/statm`: this kernel sums its counters when `statm` is read. One read.
    Statm,
    /// The kernel side adds each counter's per-CPU parts to its count (per-CPU counters,
    /// where `statm` does not): one reading per CPU.
    CpuParts,
    /// The kernel side adds each thread's cached changes to the counters (per-thread
    /// caches): one reading per thread.
    ThreadCaches,
    /// `/proc/PID/smaps_rollup`: a walk of the process's page tables, under its mmap lock,
    /// milliseconds per GiB. Where nothing cheaper can run.
    SmapsRollup,
}

impl Exact {
    /// The figure that decides here: `statm` where it sums exactly, else the kernel side's
    /// reading where there is one, else `smaps_rollup`.
    pub fn choose(kernel: Option<Exact>) -> Exact {
        match statm_sums_exactly() {
            true => Exact::Statm,
            false => kernel.unwrap_or(Exact::SmapsRollup),
        }
    }

    /// Whether this figure is the kernel side's exact reading.
    pub fn is_kernel_reading(self) -> bool {
        matches!(self, Exact::CpuParts | Exact::ThreadCaches)
    }
}

impl fmt::Display for Exact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exact::Statm => "statm",
            Exact::CpuParts => "per-cpu-sum",
            Exact::ThreadCaches => "thread-sum",
            Exact::SmapsRollup => "smaps_rollup",
        })
    }
}

/// Whether reading `statm` sums the kernel's counters exactly here: on kernels that count
/// atomically, and on per-CPU kernels from 6.16 (and stable kernels with that change), but
/// not where per-CPU parts or per-thread caches are left out. BTF cannot show it (a change
/// inside a function, not to a type), so it is found by trying, once: this thread maps a few
/// pages and touches them one at a time, reading its own `statm` after each. An exact `statm`
/// shows each page at once; one that leaves parts or caches out shows none of them until a
/// batch of at least 32 is folded in, which a few pages cannot fill. Anything unexpected (a
/// failed call, another thread's pages landing between two reads) says "not exact", which
/// costs only speed.
pub fn statm_sums_exactly() -> bool {
    static EXACT: OnceLock<bool> = OnceLock::new();
    *EXACT.get_or_init(|| {
        crate::fault::Fault::injected() != Some(crate::fault::Fault::StatmInexact)
            && (0..3).any(|_| probe_statm().unwrap_or(false))
    })
}

/// Why polling decides on `smaps_rollup` where `statm` does not sum exactly.
pub const POLLING_WALKS: &str =
    "polling reads only /proc, where this kernel's statm leaves out counts it has not yet added up";

/// Pages the probe touches: well under the smallest per-CPU batch (32) and per-thread cache
/// (64 faults).
const PROBE_PAGES: usize = 8;

/// One try of [`statm_sums_exactly`].
fn probe_statm() -> rustix::io::Result<bool> {
    use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous, munmap};
    let page = crate::system::procfs::page_size() as usize;
    let statm = rustix::fs::open(
        "/proc/self/statm",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let resident = || -> rustix::io::Result<u64> {
        let mut buf = [0u8; 128];
        let read = rustix::io::pread(&statm, &mut buf, 0)?;
        crate::system::procfs::parse_statm(&buf[..read])
            .map(|statm| statm.resident_pages)
            .map_err(|_| rustix::io::Errno::INVAL)
    };
    let length = PROBE_PAGES * page;
    // SAFETY: a fresh private anonymous mapping, used only here and unmapped below.
    let region = unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            length,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )?
    };
    // A first touch must map one page, not a huge page (transparent huge pages "always").
    // SAFETY: the mapping just made.
    let _ = unsafe { madvise(region, length, Advice::LinuxNoHugepage) };
    let mut exact = true;
    let mut before = resident()?;
    for index in 0..PROBE_PAGES {
        // SAFETY: within the mapping, which is writable.
        unsafe { region.cast::<u8>().add(index * page).write_volatile(1) };
        let now = resident()?;
        exact &= now == before + 1;
        before = now;
    }
    // SAFETY: the mapping made above, no longer used.
    unsafe { munmap(region, length)? };
    Ok(exact)
}

impl fmt::Display for Accounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accounting::PerThread => "per-thread",
            Accounting::PerCpu => "per-cpu",
            Accounting::Atomic => "atomic",
            Accounting::Unknown => "unknown",
        })
    }
}

/// The CPUs a per-CPU counter has parts on: every possible one. Counted once (reading the
/// count allocates), at start-up: see [`count_cpus`].
fn cpus() -> u64 {
    static CPUS: OnceLock<u64> = OnceLock::new();
    *CPUS.get_or_init(|| {
        std::fs::read_to_string(POSSIBLE_CPUS)
            .ok()
            .and_then(|list| count_cpu_list(list.trim()))
            .unwrap_or(1)
            .max(1)
    })
}

/// The kernel's list of the CPUs that may ever exist here.
const POSSIBLE_CPUS: &str = "/sys/devices/system/cpu/possible";

/// How many CPUs a kernel CPU list names (`0-3,8,10-11`: 7); `None` when it is not one.
fn count_cpu_list(list: &str) -> Option<u64> {
    list.split(',')
        .map(|range| match range.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
                Some((first..=last).count() as u64)
            }
            None => range.parse::<u64>().ok().map(|_| 1),
        })
        .sum()
}

/// How many CPUs may exist here (each per-CPU counter has a part for each).
pub fn possible_cpus() -> u32 {
    u32::try_from(cpus()).unwrap_or(u32::MAX)
}

/// Counts the CPUs, and tries whether `statm` sums exactly, now: judging a process later
/// then allocates nothing, and the probe's pages come and go before the monitor locks its
/// memory.
pub fn count_cpus() {
    cpus();
    statm_sums_exactly();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_list_counts_every_cpu_it_names() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3"), Some(4));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("0-x"), None);
        assert!(possible_cpus() >= 1);
    }

    #[test]
    fn each_kind_of_counting_has_its_own_error() {
        let page = crate::system::procfs::page_size();
        assert_eq!(Accounting::Atomic.statm_error(100), 0);
        assert!(Accounting::Atomic.statm_is_exact());
        // Per thread: 65 faults of up to 16 pages each, for every thread.
        assert_eq!(Accounting::PerThread.statm_error(1), 65 * 16 * page);
        assert_eq!(Accounting::PerThread.statm_error(10), 10 * 65 * 16 * page);
        assert_eq!(Accounting::PerThread.counter_error(), 0);
        // Per CPU: three counters, a batch of at least 32 pages on each CPU, whatever the
        // threads.
        let per_cpu = Accounting::PerCpu.statm_error(1);
        assert!(per_cpu >= 3 * 32 * page);
        assert_eq!(Accounting::PerCpu.statm_error(50), per_cpu);
        // Not known: both.
        assert_eq!(
            Accounting::Unknown.statm_error(2),
            per_cpu + 2 * 65 * 16 * page
        );
        for kind in [
            Accounting::PerThread,
            Accounting::PerCpu,
            Accounting::Unknown,
        ] {
            assert!(!kind.statm_is_exact(), "{kind}");
        }
    }
}
