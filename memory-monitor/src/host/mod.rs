//! The monitor's own process on its host: hardening ([`harden`], with the resource limits it
//! started with in [`rlimits`]), systemd's notifications ([`systemd`]), logging ([`logging`]),
//! other monitors with the same rules ([`peers`]), which files it trusts ([`trust`]), and
//! how it runs a command ([`shell`]).

pub(crate) mod harden;
pub(crate) mod logging;
pub(crate) mod peers;
pub(crate) mod rlimits;
pub(crate) mod shell;
pub(crate) mod systemd;
pub(crate) mod trust;
