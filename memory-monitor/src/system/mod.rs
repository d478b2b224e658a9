//! What the monitor reads of the system besides the BPF programs: `/proc` ([`procfs`]), cgroups
//! ([`cgroup`]) and the containers they stand for ([`container`]), users' names ([`users`]), the
//! kernel's counts of its OOM kills and memory events ([`event_count`]), its memory pressure
//! triggers ([`psi`]), and the changes inotify reports under the monitor ([`inotify`]).

pub(crate) mod cgroup;
pub(crate) mod container;
pub(crate) mod event_count;
pub(crate) mod inotify;
pub(crate) mod procfs;
pub(crate) mod psi;
pub(crate) mod users;
