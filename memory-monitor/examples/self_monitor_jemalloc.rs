//! A program that watches its own memory with `SelfMonitor` while running on jemalloc with
//! profiling on, so the profile it writes is jemalloc's allocation profile (the `jemalloc`
//! feature: `cargo run --example self_monitor_jemalloc --features jemalloc -- DIR LIMIT_MIB`).
//! The tests run it (`tests/tests/library/self_monitor.rs`).
//!
//! `self_monitor_jemalloc DIR LIMIT_MIB`: grows its heap past LIMIT_MIB in `grow_the_heap_here`,
//! waits for the profile to be written into DIR, and prints `profiles=<count>`.

use std::time::{Duration, Instant};

use memory_monitor::SelfMonitor;
use memory_monitor::sink::dir::DirWriter;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options: profiling on from the start, one sample per 64 KiB allocated.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:16\0";

/// Allocates `mib` MiB in 1 MiB blocks, written so they are resident. Named and never
/// inlined: the profile's test looks for it.
#[inline(never)]
fn grow_the_heap_here(mib: usize) -> Vec<Vec<u8>> {
    (0..mib).map(|i| vec![i as u8 | 1; 1 << 20]).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, limit_mib] = &args[..] else {
        panic!("usage: self_monitor_jemalloc DIR LIMIT_MIB");
    };
    let limit_mib: u64 = limit_mib.parse().expect("LIMIT_MIB");
    let monitor = SelfMonitor::new(DirWriter::new(dir.as_ref()))
        .with_memory_limit(limit_mib << 20)
        .with_monitor_freq(Duration::from_millis(20))
        .start()
        .expect("start the self monitor");
    let kept = grow_the_heap_here(limit_mib as usize + 32);
    let start = Instant::now();
    while monitor.profiles_written() == 0 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("profiles={}", monitor.profiles_written());
    drop(kept);
}
