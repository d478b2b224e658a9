//! What the user asks for and which processes it selects: the command line, rules files,
//! cgroups, hostile names, and whom the monitor never signals.
//!
//! Tests that need root are ignored without it; `cargo xtask test` runs them (as root, with
//! `--include-ignored`).

mod cgroups;
mod cli;
mod files;
mod flags;
mod hostile;
mod never;
mod select;
mod trusted;
