//! The library in this test process: the monitor driven step by step allocates nothing once
//! warmed up, and `SelfMonitor` watches the process it runs in.
//!
//! Tests that need root are ignored without it; `cargo xtask test` runs them (as root, with
//! `--include-ignored`).

mod allocations;

/// Counts each thread's allocations, for the steady cycles of a monitor run in this process.
#[global_allocator]
static ALLOCATOR: memory_monitor_tests::counting::Counting =
    memory_monitor_tests::counting::Counting;

mod self_monitor;
