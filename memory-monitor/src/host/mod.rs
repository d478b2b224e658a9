//! The monitor's own process on its host: hardening ([`harden`], with the resource limits it
//! started with in [`rlimits`]), systemd's notifications ([`systemd`]), logging ([`logging`]),
//! other monitors with the same rules ([`peers`]), which files it trusts ([`trust`]), and
//! how it runs a command ([`shell`]).

pub mod harden;
pub mod logging;
pub mod peers;
pub mod rlimits;
pub mod shell;
pub mod systemd;
pub mod trust;
