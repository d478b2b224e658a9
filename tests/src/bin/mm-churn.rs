//! Benchmark target: a large process busy just under its memory limit, to price what the
//! monitor's confirmations cost the process it watches.
//!
//! `mm-churn LIMIT CHUNK SECONDS` (bytes, bytes, seconds). Run it through a link named as the
//! monitor expects. It grows to CHUNK + 256 KiB under LIMIT (by its own `statm`, which must be
//! exact: the bench runs where it is), then for SECONDS maps CHUNK bytes, touches every page,
//! and unmaps them, over and over: every loop takes and gives back memory within the
//! kernel's margin under the limit, and needs the mmap lock that a page-table walk of the
//! process would hold. Prints `loops=… rss=…`.

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [limit, chunk, seconds] = &args[..] else {
        panic!("usage: mm-churn LIMIT CHUNK SECONDS");
    };
    let limit: u64 = limit.parse().expect("LIMIT");
    let chunk: usize = chunk.parse().expect("CHUNK");
    let run_for = Duration::from_secs_f64(seconds.parse().expect("SECONDS"));
    // SAFETY: no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let base = limit.saturating_sub(chunk as u64 + (256 << 10));
    let region = memory_monitor_tests::map_anonymous(base as usize);
    // One page per touch, counted (a huge page would overshoot by up to 2 MiB).
    // SAFETY: advises exactly the fresh mapping.
    unsafe { libc::madvise(region.cast(), base as usize, libc::MADV_NOHUGEPAGE) };
    let mut touched = 0;
    loop {
        let short = base.saturating_sub(memory_monitor_tests::resident_bytes("self")) as usize;
        if short < page {
            break;
        }
        for _ in 0..short / page {
            // SAFETY: within the mapping: what is touched never exceeds `base`, its size.
            unsafe { region.add(touched).write_volatile(1) };
            touched += page;
        }
    }
    let rss = memory_monitor_tests::resident_bytes("self");
    let start = Instant::now();
    let mut loops = 0u64;
    while start.elapsed() < run_for {
        let block = memory_monitor_tests::map_anonymous(chunk);
        for offset in (0..chunk).step_by(page) {
            // SAFETY: within the fresh mapping.
            unsafe { block.add(offset).write_volatile(1) };
        }
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(block.cast(), chunk) };
        loops += 1;
    }
    println!("loops={loops} rss={rss}");
}
