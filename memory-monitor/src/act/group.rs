//! Acting on a group (`--act-on`): the signal the process over its limit gets goes on to the
//! rest of its process group, or to every process of the cgroup its rule selects it by.
//!
//! Never by PID alone: a group's members are found in `/proc`, each is held by a pidfd, and
//! only then checked again to be a member, so a member that exits and whose PID is taken by
//! another process meanwhile is never signalled in its place (the pidfd names the process it
//! was opened on, and fails once that one has been reaped). `kill(-pgid)` has no such check:
//! once the group's last member exits, its number may be another process's and another group's.
//!
//! The cgroup acted on is only ever the one the rule names, and only while the process is in
//! it: never one read from the process's own `/proc/PID/cgroup` (which it may have moved, or
//! whose name it may have chosen). A process group is never group 1 (init's) nor the
//! monitor's own, and neither the monitor, its parent nor PID 1 is ever a member signalled.
//!
//! A walk of `/proc` per action, allocating nothing: a group acted on every repeat stays
//! within the steady path's rule (a SIGKILL's members, held for reaping, are the kill's own:
//! [`super::reap`]). A member that forks while its group is walked may leave a child
//! unsignalled; SIGKILL to a cgroup, through `cgroup.kill`, has no such gap.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};

use super::deliver::{Delivery, Dispatch};
use super::reap::{self, Reaping};
use crate::rules::{ActOn, CgroupPath, Rule};
use crate::signal::Signal;
use crate::system::cgroup;
use crate::system::procfs::{self, Comm, ProcRoot};
use crate::watch::process::WatchedProcess;
use crate::watch::scan::Exclusions;

/// The group a rule's signals reach besides the process over its limit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Group<'a> {
    /// The process's process group.
    ProcessGroup,
    /// The rule's cgroup.
    Cgroup(&'a CgroupPath),
}

impl Group<'_> {
    /// The group `rule` acts on, if it acts on one.
    pub(crate) fn of(rule: &Rule) -> Option<Group<'_>> {
        match rule.act_on {
            ActOn::Process => None,
            ActOn::ProcessGroup => Some(Group::ProcessGroup),
            // A rule acting on its cgroup always names one (checked when it is built).
            ActOn::Cgroup => rule.selector.cgroup.as_ref().map(Group::Cgroup),
        }
    }
}

/// What a signal reached, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reached<'a> {
    /// What was acted on: the process alone, its process group, or the cgroup.
    pub(crate) acted_on: ActOn,
    /// The process group acted on.
    pub(crate) pgid: Option<i32>,
    /// The cgroup acted on.
    pub(crate) cgroup: Option<&'a str>,
    /// How many processes were signalled one by one, the process over its limit included.
    pub(crate) members: Option<u32>,
    /// `cgroup.kill`, when the kernel killed the cgroup at once.
    pub(crate) via: Option<&'static str>,
    /// Why a group was asked for and only the process was acted on.
    pub(crate) refused: Option<&'static str>,
}

impl Reached<'_> {
    /// The process alone, as asked.
    pub(crate) const PROCESS: Reached<'static> = Reached {
        acted_on: ActOn::Process,
        pgid: None,
        cgroup: None,
        members: None,
        via: None,
        refused: None,
    };
}

/// Where a signal is to go, found before it goes: a process SIGKILLed first would be gone, its
/// process group and cgroup with it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Aim<'a> {
    /// The process alone, as asked.
    Process,
    /// The process alone, though a group was asked for: why not.
    Refused(&'static str),
    /// This process group too.
    ProcessGroup(i32),
    /// The rule's cgroup too, which holds the process.
    Cgroup(&'a CgroupPath),
}

/// Where a signal to `target` is to go under `group`, read while it lives.
pub(crate) fn aim<'a>(
    proc: &ProcRoot,
    target: &WatchedProcess,
    group: Option<Group<'a>>,
) -> Aim<'a> {
    match group {
        None => Aim::Process,
        Some(Group::ProcessGroup) => {
            let pgid = pgrp_of(proc, target.pid());
            // Read by PID: the process's own group only if it still lives.
            match pgid.filter(|_| !target.has_exited()) {
                None => Aim::Refused("the process exited"),
                Some(pgid) if pgid <= 1 => Aim::Refused("process group 0 or 1 is never signalled"),
                Some(pgid) if pgid == rustix::process::getpgrp().as_raw_nonzero().get() => {
                    Aim::Refused("it is in the monitor's own process group")
                }
                Some(pgid) => Aim::ProcessGroup(pgid),
            }
        }
        Some(Group::Cgroup(path)) => {
            if !cgroup::holds(path, proc, target.pid()) || target.has_exited() {
                return Aim::Refused("it is no longer in the rule's cgroup");
            }
            Aim::Cgroup(path)
        }
    }
}

/// Sends `signal` on to the group `aim` names, besides `target`, the process over its limit
/// (which `delivery` says it got), as `dispatch` says: in a dry run the members are counted,
/// not signalled. Each member sent SIGKILL is held in `reap`, when given, before its kill.
pub(crate) fn reach<'a>(
    proc: &ProcRoot,
    target: i32,
    aim: Aim<'a>,
    signal: Signal,
    dispatch: Dispatch,
    delivery: Delivery,
    mut reap: Option<&mut Reaping>,
) -> Reached<'a> {
    let send = dispatch != Dispatch::DryRun;
    let itself = u32::from(matches!(
        delivery,
        Delivery::Sent | Delivery::SentByKernel | Delivery::DryRun
    ));
    match aim {
        Aim::Process => Reached::PROCESS,
        Aim::Refused(why) => Reached {
            refused: Some(why),
            ..Reached::PROCESS
        },
        Aim::ProcessGroup(pgid) => {
            let in_group = |proc: &ProcRoot, pid| pgrp_of(proc, pid) == Some(pgid);
            let others = signal_members(proc, target, in_group, signal, send, reap);
            Reached {
                acted_on: ActOn::ProcessGroup,
                pgid: Some(pgid),
                members: Some(itself + others),
                ..Reached::PROCESS
            }
        }
        Aim::Cgroup(path) => {
            let reached = Reached {
                acted_on: ActOn::Cgroup,
                cgroup: Some(path.as_str()),
                ..Reached::PROCESS
            };
            let in_cgroup = |proc: &ProcRoot, pid| cgroup::holds(path, proc, pid);
            // cgroup.kill would take the monitor too, were it in the cgroup.
            let me = rustix::process::getpid().as_raw_nonzero().get();
            if signal == Signal::KILL && send && !cgroup::holds(path, proc, me) {
                // Held before the kill: after it, their PIDs may be others'. One that joins
                // the cgroup meanwhile is killed, not reaped.
                if let Some(reap) = reap.take() {
                    each_member(proc, target, in_cgroup, |proc, pid, pidfd| {
                        reap.hold(pid, || reap::name_of(proc, pid), pidfd);
                        true
                    });
                }
                match cgroup::kill(path) {
                    Ok(()) => {
                        return Reached {
                            via: Some("cgroup.kill"),
                            ..reached
                        };
                    }
                    // No cgroup.kill (before 5.14): one by one.
                    Err(Errno::NOENT) => {}
                    Err(errno) => {
                        tracing::debug!(
                            cgroup = path.as_str(),
                            "cgroup.kill failed ({errno}): killing its processes one by one"
                        );
                    }
                }
            }
            let others = signal_members(proc, target, in_cgroup, signal, send, reap);
            Reached {
                members: Some(itself + others),
                ..reached
            }
        }
    }
}

/// Sends `signal` (or, unless `send`, only counts) to every member but `except`, as
/// [`each_member`] finds them; returns how many. Each one signalled is held in `reap`, if
/// given, by the pidfd its signal went through.
fn signal_members(
    proc: &ProcRoot,
    except: i32,
    member: impl Fn(&ProcRoot, i32) -> bool,
    signal: Signal,
    send: bool,
    mut reap: Option<&mut Reaping>,
) -> u32 {
    each_member(proc, except, member, |proc, pid, pidfd| {
        if !send {
            return true;
        }
        // Its name before its kill: once it is dead and waited for, its PID may be another's.
        let name = reap
            .as_ref()
            .filter(|reap| reap.has_room())
            .map(|_| reap::name_of(proc, pid));
        if rustix::process::pidfd_send_signal(&pidfd, signal.to_rustix()).is_err() {
            return false;
        }
        if let Some(reap) = reap.as_deref_mut() {
            // Read above whenever there was room, and asked for only then.
            reap.hold(pid, || name.unwrap_or(Comm::new(b"")), pidfd);
        }
        true
    })
}

/// Process `pid`'s process group, if its `stat` can be read (0 for a kernel thread).
fn pgrp_of(proc: &ProcRoot, pid: i32) -> Option<i32> {
    let mut buf = [0u8; 1024];
    let stat = proc.read_file(pid, "stat", &mut buf).ok()?;
    procfs::parse_stat(stat).ok().map(|stat| stat.pgrp)
}

/// Hands `deed` every process in `/proc` that `member` says is one, but `except` and those
/// never signalled, with a pidfd of it; returns how many `deed` counted. Each is held by its
/// pidfd and asked again before `deed`: a PID reused between the two reads names another
/// process, but then the one the pidfd holds has been reaped and takes no signal.
fn each_member(
    proc: &ProcRoot,
    except: i32,
    member: impl Fn(&ProcRoot, i32) -> bool,
    mut deed: impl FnMut(&ProcRoot, i32, OwnedFd) -> bool,
) -> u32 {
    // A descriptor of its own: an action may come in the middle of a scan of `/proc`.
    let proc = match proc.reopen() {
        Ok(proc) => proc,
        Err(error) => {
            tracing::warn!(
                event = "unreadable",
                "cannot list /proc to signal a group ({error})"
            );
            return 0;
        }
    };
    let never = Exclusions::now();
    let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
    let mut count = 0;
    let listed = proc.for_each_pid(&mut buf, |pid| {
        if pid == except || never.excludes(pid) || !member(&proc, pid) {
            return;
        }
        let Some(raw) = Pid::from_raw(pid) else {
            return;
        };
        let Ok(pidfd) = rustix::process::pidfd_open(raw, PidfdFlags::empty()) else {
            return;
        };
        if member(&proc, pid) && deed(&proc, pid, pidfd) {
            count += 1;
        }
    });
    if let Err(error) = listed {
        tracing::warn!(
            event = "unreadable",
            "cannot list /proc to signal a group ({error})"
        );
    }
    count
}
