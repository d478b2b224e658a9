//! Acting on a verdict, and the monitor's outputs: the signal and its log line ([`deliver`]),
//! hooks ([`hook`], run by [`shell`]), breach profiles ([`profile`]) and where they go
//! ([`sink`]), and the metrics ([`metrics`]).

pub mod deliver;
pub mod hook;
pub mod metrics;
pub mod profile;
pub mod shell;
pub mod sink;
