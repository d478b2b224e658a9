//! How processes are found and measured: poll mode and eBPF mode end to end, what the running
//! kernel makes of the kernel side, eBPF mode's failure paths, PID reuse and churn;
//! and the target driver's promise that the tests' "not signalled" rests on.
//!
//! Tests that need root are ignored without it; `cargo xtask test` runs them (as root, with
//! `--include-ignored`).

mod churn;
mod ebpf;
mod failures;
mod kernel;
mod leak;
mod pidns;
mod poll;
mod target;
mod warning;
