//! Where the monitor learns which processes exist and when to look at their memory.
//!
//! - [`poll`] scans `/proc` every interval. It works everywhere, unprivileged included, and
//!   also seeds the other source at start-up.
//! - [`ebpf`] follows the kernel's RSS counters and process lifecycle through BPF programs on
//!   tracepoints ([`tracefs`] checks their layouts; [`btf`] finds kernel offsets for the
//!   `tp_btf` variant): no polling, reaction in microseconds; [`exact_reading`] is its exact
//!   figure of a process's RSS, summed by a BPF program on demand.

pub mod btf;
pub mod ebpf;
pub mod exact_reading;
pub mod poll;
pub mod tracefs;
