//! Acting on a verdict, and the monitor's outputs: the signal and its log line ([`deliver`]),
//! the group it reaches when a rule asks ([`group`]), the memory of those it kills reaped
//! ([`reap`]), hooks ([`hook`]), breach profiles ([`profile`], written to a
//! [`crate::sink`]), and the metrics ([`metrics`]).

pub(crate) mod deliver;
pub(crate) mod group;
pub(crate) mod hook;
pub(crate) mod metrics;
pub(crate) mod profile;
pub(crate) mod reap;
