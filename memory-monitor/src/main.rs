//! The `memory-monitor` command: the library's program (its command line is not part of the
//! library's API), on the counting allocator.

use std::process::ExitCode;

/// Counting lets the monitor say, when it stops, how many heap allocations it made after
/// start-up (none is the aim).
#[global_allocator]
static ALLOCATOR: memory_monitor::footprint::CountingAllocator =
    memory_monitor::footprint::CountingAllocator;

fn main() -> ExitCode {
    memory_monitor::program()
}
