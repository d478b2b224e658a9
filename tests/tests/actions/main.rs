//! What a breach brings about and what the monitor says: hooks, profiles, logs and metrics,
//! and signals that still go out under memory pressure.
//!
//! Tests that need root are ignored without it; `cargo xtask test` runs them (as root, with
//! `--include-ignored`).

mod budget;
mod events;
mod flame;
mod groups;
mod hooks;
mod identity;
mod logs;
mod metrics;
mod oom;
mod pressure;
mod pressure_triggers;
mod profile;
mod profile_flags;
mod release;
mod signing;
mod swap;
