//! The monitor's own memory: it should be the smallest thing on a host that is short of it.
//!
//! Start-up is the expensive part: parsing the command line, loading the BPF programs (aya
//! reads the kernel's BTF), scanning `/proc`. Once the monitor runs, [`trim`] gives back what
//! only start-up needed: free heap pages, and the clean pages of start-up code, which stay in
//! the page cache and come back on their own should they ever run again. After start-up it
//! should allocate nothing; [`CountingAllocator`] lets a binary prove it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting allocations so [`allocations`] can report them. The
/// `memory-monitor` binary installs it as its global allocator; in a program that does not,
/// [`allocations`] stays 0.
pub struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap allocations (and reallocations) so far, when [`CountingAllocator`] is the global
/// allocator.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Gives the C allocator's free memory back to the kernel. glibc's keeps freed memory for
/// reuse until asked; musl's (the static binary's) returns whole free chunks by itself and has
/// nothing to ask.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns start-up's memory to the kernel. Call once the steady loop is about to start.
pub fn trim() {
    release_free_heap();
    let Ok(smaps) = std::fs::File::open("/proc/self/smaps") else {
        return;
    };
    let Ok(clean) = clean_file_mappings(std::io::BufReader::new(smaps)) else {
        return;
    };
    for (start, end) in clean {
        // SAFETY: a private, read-only mapping of a file whose every page is the file's own
        // (none private, none swapped out): dropping them loses nothing, the next access reads
        // them again from the page cache.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// Each watched process holds two descriptors (pidfd and statm), and each connection to the
/// metrics server one: raises the open-files limit so that `max_processes` can be watched
/// while the server holds its most connections — the hard limit too when privileged (it may be
/// lower than that), else up to the hard limit.
pub fn reserve_descriptors(max_processes: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // Remembered before raising: the commands the monitor runs get the original.
    crate::host::rlimits::at_start();
    let spare = 64 + crate::act::metrics::MAX_CONNECTIONS as u64;
    let wanted = (2 * max_processes as u64).saturating_add(spare);
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|soft| soft >= wanted) {
        return;
    }
    let hard = limit.maximum;
    let raised = Rlimit {
        current: Some(wanted),
        maximum: Some(hard.map_or(wanted, |hard| hard.max(wanted))),
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        let current = hard.map_or(wanted, |hard| hard.min(wanted));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(current),
                maximum: hard,
            },
        );
    }
}

/// The private, read-only file mappings in a `/proc/self/smaps` text that hold only clean
/// file pages. A read-only mapping can hold private copies all the same: the dynamic linker
/// writes relocations into RELRO pages before making them read-only, and those must stay,
/// resident (`Anonymous`) or swapped out (`Swap`: read again from the file, it would come back
/// without its relocations). A block that does not say both is kept.
fn clean_file_mappings(smaps: impl std::io::BufRead) -> std::io::Result<Vec<(usize, usize)>> {
    let mut clean = Vec::new();
    crate::act::profile::mapping::for_each_block(smaps, |block| {
        let private_pages = block.anon.zip(block.swap).map(|(anon, swap)| anon + swap);
        let read_only_private = block.perms.first() == Some(&b'r')
            && block.perms.get(1) == Some(&b'-')
            && block.perms.last() == Some(&b'p');
        if private_pages == Some(0)
            && read_only_private
            && block.path.starts_with(b"/")
            && block.end > block.start
        {
            clean.push((block.start as usize, block.end as usize));
        }
    })?;
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(smaps: &str) -> Vec<(usize, usize)> {
        clean_file_mappings(smaps.as_bytes()).unwrap()
    }

    #[test]
    fn mappings_holding_private_copies_resident_or_swapped_out_are_kept() {
        let smaps = "\
55d0c0000000-55d0c0200000 r-xp 00001000 fd:01 1234 /usr/bin/memory-monitor
Size:               2048 kB
Rss:                1024 kB
Anonymous:             0 kB
Swap:                  0 kB
7f0000000000-7f0000004000 r--p 001d5000 fd:01 99 /usr/lib/libc.so.6
Size:                 16 kB
Anonymous:            16 kB
Swap:                  0 kB
7f0000004000-7f0000006000 rw-p 001d9000 fd:01 99 /usr/lib/libc.so.6
Anonymous:             8 kB
Swap:                  0 kB
7f0000006000-7f0000008000 r--p 00000000 fd:01 98 /usr/lib/ld.so
Anonymous:             0 kB
Swap:                  0 kB
7f0000008000-7f000000a000 r--p 00002000 fd:01 98 /usr/lib/ld.so
Anonymous:             0 kB
Swap:                  8 kB
7f000000a000-7f000000c000 r--p 00004000 fd:01 98 /usr/lib/ld.so
Anonymous:             0 kB
";
        assert_eq!(
            clean(smaps),
            [
                (0x55d0_c000_0000, 0x55d0_c020_0000),
                (0x7f00_0000_6000, 0x7f00_0000_8000)
            ]
        );
    }

    #[test]
    fn only_private_read_only_file_mappings_are_trimmed() {
        let block = |header: &str| format!("{header}\nAnonymous: 0 kB\nSwap: 0 kB\n");
        let code = "55d0c0000000-55d0c0200000 r-xp 00001000 fd:01 1234 /usr/bin/memory-monitor";
        assert_eq!(clean(&block(code)), [(0x55d0_c000_0000, 0x55d0_c020_0000)]);
        let constants = "7f0000000000-7f0000001000 r--p 00000000 fd:01 99 /usr/lib/libc.so.6";
        assert_eq!(clean(&block(constants)).len(), 1);
        for kept in [
            "7f0000001000-7f0000002000 rw-p 00001000 fd:01 99 /usr/lib/libc.so.6",
            "7f0000002000-7f0000003000 r--s 00000000 00:0e 7 anon_inode:bpf-map",
            "7f0000003000-7f0000004000 r-xs 00000000 fd:01 5 /dev/shm/shared",
            "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]",
            "7ffd00030000-7ffd00032000 r-xp 00000000 00:00 0 [vdso]",
            "55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]",
            "7f0000005000-7f0000006000 ---p 00000000 00:00 0",
        ] {
            assert_eq!(clean(&block(kept)), [], "{kept}");
        }
    }
}
