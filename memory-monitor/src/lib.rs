//! memory-monitor: signal processes whose resident memory goes over a limit, before the
//! kernel's OOM killer has to.
//!
//! The library is the whole tool; the `memory-monitor` binary only parses the command line,
//! sets up logging and calls [`run`]. The parts, in the order data flows through them:
//!
//! - [`config`]: the command line and the validated [`Config`]; [`rules`]: what to watch and
//!   what to do, from the command line or a rules file.
//! - [`matcher`]: which processes a name selects; [`cgroup`]: which a cgroup does, and its
//!   memory limit.
//! - [`procfs`]: allocation-free reading of `/proc`.
//! - [`source`]: how processes are discovered and when they are measured.
//! - [`watch`]: the watched processes, each held by a pidfd and an open `statm`.
//! - [`policy`]: the per-process breach state machine.
//! - [`action`]: signalling, and the log line for each event; [`hook`]: `--exec` commands.
//! - [`profile`]: a memory profile of a breaching process, before its signal; [`sink`]: where
//!   profiles go (the [`ProfileWriter`](sink::ProfileWriter) trait and built-in writers).
//! - [`self_monitor`]: [`SelfMonitor`], profiles of the calling process itself.
//! - [`service`]: running under systemd (readiness, watchdog); [`metrics`]: Prometheus metrics.
//! - [`monitor`]: the loop tying them together; [`timer`]: its precise deadlines.
//! - [`footprint`]: keeping the monitor's own memory small; [`harden`]: locked memory, a low
//!   OOM score and only the capabilities still needed; [`limits`]: the resource limits it
//!   started with, which the commands it runs get back.
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
pub mod action;
pub mod cgroup;
pub mod changes;
mod choice;
pub mod cli;
pub mod config;
pub mod container;
pub mod count;
pub mod footprint;
pub mod harden;
pub mod hook;
pub mod limits;
pub mod logging;
pub mod matcher;
pub mod metrics;
pub mod monitor;
pub mod policy;
pub mod procfs;
pub mod profile;
pub mod rules;
pub mod self_monitor;
pub mod service;
mod shell;
pub mod signal;
pub mod sink;
pub mod source;
pub mod timer;
pub mod units;
pub mod watch;

use std::io;

pub use config::Config;
pub use monitor::{Monitor, Outcome, Shutdown};
pub use self_monitor::{SelfMonitor, SelfMonitorHandle};

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
    Ebpf(#[source] source::ebpf::Unavailable),
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
