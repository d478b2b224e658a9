//! A global allocator that counts the allocations of each thread, for tests that prove a
//! monitor run in the test process allocates nothing in its steady state. Only the current
//! thread's are counted, so the harness's other threads (and the targets' readers) do not blur
//! the figure. A test binary installs it with
//! `#[global_allocator] static ALLOCATOR: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use memory_monitor::{CycleReport, Monitor};

/// The counting allocator (the system's, counted).
pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The allocations the current thread has made so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Runs `warm_up` cycles of `monitor`, a second apart (in its clock), then `measured` more,
/// each of which `check` looks at; returns the allocations the measured cycles made on this
/// thread.
pub fn allocations_in_steady_cycles(
    monitor: &mut Monitor,
    warm_up: u64,
    measured: u64,
    mut check: impl FnMut(&CycleReport),
) -> u64 {
    let start = Instant::now();
    for second in 0..warm_up {
        monitor.cycle(start + Duration::from_secs(second)).unwrap();
    }
    let before = allocations();
    for second in warm_up..warm_up + measured {
        let report = monitor.cycle(start + Duration::from_secs(second)).unwrap();
        check(&report);
    }
    allocations() - before
}
