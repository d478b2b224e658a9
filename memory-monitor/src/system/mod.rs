//! What the monitor reads of the system besides the BPF programs: `/proc` ([`procfs`]), cgroups
//! ([`cgroup`]) and the containers they stand for ([`container`]), users' names ([`users`]), and
//! the changes inotify reports under the monitor ([`inotify`]).

pub mod cgroup;
pub mod container;
pub mod inotify;
pub mod procfs;
pub mod users;
