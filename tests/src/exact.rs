//! A process's exact resident memory, whatever the kernel: `smaps_rollup` walks its page
//! tables, while `statm` sums the kernel's counters, which lag (per-thread caches, up to 6.1)
//! or are approximate (per-CPU counters, 6.2 to 6.15) on many kernels users run. Tests that
//! put a process a few KiB from its limit measure it with this.

/// The `Rss:` of `/proc/PROCESS/smaps_rollup` (a PID, or `self`), in bytes; 0 when it cannot
/// be read.
pub fn resident_bytes(process: &str) -> u64 {
    let rollup =
        std::fs::read_to_string(format!("/proc/{process}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Rss:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
