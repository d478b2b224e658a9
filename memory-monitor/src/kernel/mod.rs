//! The kernel side: the BPF programs on kernel tracepoints that follow the RSS counters and
//! the processes' lifecycle, and everything in userspace that talks to them. No polling:
//! reaction in microseconds. [`tracefs`] checks the tracepoints' layouts; [`btf`] finds kernel
//! offsets for the `tp_btf` variant; [`exact_reading`] is its exact figure of a process's RSS,
//! summed by a BPF program on demand.

pub mod btf;
pub mod exact_reading;
#[cfg(test)]
pub mod fake;
pub mod load;
pub mod tracefs;
