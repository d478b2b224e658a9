//! Acting on a verdict, and the monitor's outputs: the signal and its log line ([`deliver`]),
//! hooks ([`hook`]), breach profiles ([`profile`], written to a [`crate::sink`]), and the
//! metrics ([`metrics`]).

pub mod deliver;
pub mod hook;
pub mod metrics;
pub mod profile;
