//! Test harness: start real `mm-target` processes and the real `memory-monitor` binary, send
//! them commands, and wait for what they report.
//!
//! Waits are bounded (a test must end) but never asserted on: a test fails because something
//! did or did not happen, never because it took a certain time.
//!
//! The helpers live in modules by job, and every one is reachable from the crate's root:
//! the target driver (`mm-target`, its commands and the signals it reports), the monitor
//! driver (starting `memory-monitor`, its rules file, its log), the profile driver (`go tool
//! pprof`), facts read from `/proc` and from the kernel's BPF objects, the built programs and
//! the names they run under, bounded waits, and what the test programs in `src/bin` share.

pub mod cgroup;
pub mod counting;
pub mod disk;
pub mod exact;
pub mod gate;
pub mod sched;
pub mod scrape;
pub mod servers;
pub mod shipped;
pub mod swap;

mod binaries;
mod bpf;
mod lines;
mod monitor;
mod procfs;
mod profile;
mod program;
mod target;
mod waiting;

pub use binaries::{bin, bin_dir, link_to, unique_name};
pub use bpf::{bpf_map_of, bpf_objects_of};
pub use monitor::{
    Monitor, RulesFile, assert_killed_after_its_term, run_monitor, the_one_error, usr1_over_32m,
};
pub use procfs::{capability_set, kib_field, resident_bytes, status_field};
pub use profile::{files_in, pprof_default_top, pprof_top, pprof_top_entry};
pub use program::{all_signals, block_all_signals, map_anonymous};
pub use target::{Target, is_alive};
pub use waiting::{patience, wait_until};
