//! memory-monitor: signal processes whose resident memory goes over a limit, before the
//! kernel's OOM killer has to.
//!
//! The library is the whole tool; the `memory-monitor` binary's command line and logging are
//! its own, not part of the API. What a program that embeds the monitor uses:
//!
//! - [`Config`] (and [`config`]): what to watch and how; [`rules`]: each rule's selection,
//!   limit and actions, built from the command line or a rules file; [`matcher`]: which
//!   names a rule selects; [`units`] and [`signal`]: sizes and signals as users write them.
//! - [`run`], or [`Monitor`] to drive it step by step; [`Outcome`] and [`Error`]: how it
//!   stopped.
//! - [`sink`]: where breach profiles go (the [`ProfileWriter`](sink::ProfileWriter) trait and
//!   the built-in writers); [`SelfMonitor`]: profiles of the calling process itself.
//! - [`accounting`]: how exact this kernel's RSS figures are; [`footprint`]: the counting
//!   allocator that keeps the monitor's own heap measured.
//!
//! The rest (discovery in `/proc` and by eBPF, the per-process breach state machine,
//! signalling, profiling, hooks, hardening, metrics) is private: the "Layout" section of
//! `docs/architecture.md` walks through it in the order data flows.
//!
//! ```no_run
//! use memory_monitor::Config;
//! use memory_monitor::matcher::{MatchMode, Matcher};
//! use memory_monitor::rules::{Rule, RuleSet, Selector};
//! use memory_monitor::units::SizeSpec;
//!
//! let matcher = Matcher::new(MatchMode::Prefix, "my-app").unwrap();
//! let rule = Rule::new("my-app", Selector::name(matcher), SizeSpec::Bytes(500 << 20));
//! let outcome = memory_monitor::run(Config::new(RuleSet::new(vec![rule]).unwrap())).unwrap();
//! ```

pub mod accounting;
mod act;
mod choice;
mod cli;
pub mod config;
mod fault;
pub mod footprint;
mod host;
mod kernel;
pub mod matcher;
mod monitor;
mod policy;
pub mod rules;
pub mod self_monitor;
pub mod signal;
pub mod sink;
mod system;
#[cfg(test)]
mod testing;
mod trend;
pub mod units;
mod watch;

use std::io;

pub use config::Config;
pub use kernel::Unavailable;
pub use monitor::{CycleReport, Monitor, Outcome, Shutdown};
pub use self_monitor::{SelfMonitor, SelfMonitorHandle};

/// The `memory-monitor` program's `main`, for its `main.rs` alone: the command line is not
/// part of the API.
#[doc(hidden)]
pub fn program() -> std::process::ExitCode {
    cli::program::main()
}

/// The parsers of untrusted input, for the fuzz targets in `fuzz/` only (`cargo fuzz` builds
/// with `--cfg fuzzing`): not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::system::cgroup::{Frame, v2_path_of};
    pub use crate::system::procfs::{
        Escaped, argv0_basename, parse_comm, parse_stat, parse_statm, parse_status_rss,
    };
}

/// A failure that stops the monitor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/proc` could not be opened or listed.
    #[error("cannot read /proc")]
    Proc(#[source] io::Error),
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    /// The async runtime could not start.
    #[error("cannot start the runtime")]
    Runtime(#[source] io::Error),
    /// `--mode ebpf` was asked for and cannot run here.
    #[error("eBPF mode is unavailable")]
    Ebpf(#[source] kernel::Unavailable),
    /// Waiting for kernel events failed.
    #[error("cannot wait for kernel events")]
    Events(#[source] io::Error),
    /// The profile destination cannot be used.
    #[error("cannot write profiles there")]
    ProfileWriter(#[source] sink::WriteError),
    /// The metrics address cannot be listened on.
    #[error("cannot serve metrics on {0}")]
    Metrics(std::net::SocketAddr, #[source] io::Error),
}

/// How the running kernel counts RSS, from its BTF (as eBPF mode reads it at start-up);
/// [`Unknown`](accounting::Accounting::Unknown) when the BTF cannot be read.
pub fn kernel_accounting() -> accounting::Accounting {
    kernel::accounting()
}

/// Runs a monitor for `config` on a runtime of its own until it stops.
pub fn run(config: Config) -> Result<Outcome, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async {
        let shutdown = Shutdown::listen()?;
        Monitor::new(config)?.run(shutdown).await
    })
}
