//! Benchmark: page faults per second, to price what watching costs the watched and the rest.
//!
//! `mm-faults SECONDS MIB CPU`: pinned to CPU, touches every page of an MIB-MiB anonymous
//! region, gives the pages back with `madvise(MADV_DONTNEED)`, and repeats for SECONDS; each
//! touch is a page fault that updates the kernel's RSS counters (and fires `kmem:rss_stat`).
//! Prints `faults_per_second=…`, per second of this process's own CPU time (user + system):
//! wall-clock time would also count time the machine gave to others, which on a shared or
//! virtual machine is most of the noise.

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [seconds, mib, cpu] = &args[..] else {
        panic!("usage: mm-faults SECONDS MIB CPU");
    };
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let len = mib.parse::<usize>().expect("MIB") << 20;
    pin_to(cpu.parse().expect("CPU"));
    // SAFETY: no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let region = memory_monitor_tests::map_anonymous(len);
    let run_for = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut faults = 0u64;
    while start.elapsed() < run_for {
        for offset in (0..len).step_by(page) {
            // SAFETY: within the mapping.
            unsafe { region.add(offset).write_volatile(1) };
        }
        faults += (len / page) as u64;
        // SAFETY: the whole mapping, which stays mapped.
        unsafe { libc::madvise(region.cast(), len, libc::MADV_DONTNEED) };
    }
    println!(
        "faults_per_second={:.0}",
        faults as f64 / start.elapsed().as_secs_f64()
    );
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}
