//! Acting on a verdict: sending the signal (or, in a dry run, not) and the one log line per
//! event that an operator reads.

use std::fmt;

use rustix::io::Errno;

use super::group::{self, Group, Reached};
use super::reap::Reaping;
use crate::choice::Choice as _;
use crate::policy::{Policy, Verdict};
use crate::rules::ActOn;
use crate::signal::Signal;
use crate::system::procfs::ProcRoot;
use crate::system::users::UserName;
use crate::units::{Bytes, Period};
use crate::watch::process::WatchedProcess;

/// The kernel report a breach was found on (eBPF mode): when the kernel side made it and when
/// the monitor read it, `CLOCK_MONOTONIC` nanoseconds. The breach's line says how long the
/// report waited to be read and how long until the signal went, so a slow reaction can be told
/// apart: a report read late waited for the monitor to be scheduled; one read at once and
/// signalled late was the monitor's own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reported {
    /// When the kernel side wrote the report.
    pub(crate) at_ns: u64,
    /// When the monitor took it from the ring buffer.
    pub(crate) read_ns: u64,
}

/// How a due signal is to be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dispatch {
    /// Send it.
    Send,
    /// `--dry-run`: only say so.
    DryRun,
    /// `--kernel-signal` already sent it from the kernel side: do not send it twice.
    SentByKernel,
}

/// What became of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The kernel accepted it.
    Sent,
    /// The kernel side sent it in the process's own context (`--kernel-signal`).
    SentByKernel,
    /// `--dry-run`: not sent.
    DryRun,
    /// The process exited first.
    Exited,
    /// The kernel refused (e.g. EPERM: another user's process, unprivileged).
    Failed(Errno),
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Sent => f.write_str("sent"),
            Delivery::SentByKernel => f.write_str("sent by the kernel"),
            Delivery::DryRun => f.write_str("not sent (dry run)"),
            Delivery::Exited => f.write_str("process already exited"),
            Delivery::Failed(errno) => write!(f, "failed: {errno}"),
        }
    }
}

/// Sends `signal` to `target`, or not, as `dispatch` says.
pub(crate) fn deliver(target: &WatchedProcess, signal: Signal, dispatch: Dispatch) -> Delivery {
    match dispatch {
        Dispatch::DryRun => return Delivery::DryRun,
        Dispatch::SentByKernel => return Delivery::SentByKernel,
        Dispatch::Send => {}
    }
    match target.send(signal) {
        Ok(()) => Delivery::Sent,
        Err(Errno::SRCH) => Delivery::Exited,
        Err(errno) => Delivery::Failed(errno),
    }
}

/// Carries out `verdict` for `target` (whose RSS was just read as `rss`, watched under the
/// rule named `rule`, its signals reaching `group` too) and logs it. After a SIGKILL, every
/// process it killed is reaped (see [`super::reap`]). Returns the delivery, and what it
/// reached, when a signal was due.
#[allow(
    clippy::too_many_arguments,
    reason = "one process's verdict and all it reaches, each part decided by the caller"
)]
pub(crate) fn act(
    rule: &str,
    policy: &Policy,
    verdict: Verdict,
    target: &WatchedProcess,
    group: Option<Group<'_>>,
    proc: &ProcRoot,
    rss: u64,
    dispatch: Dispatch,
    reported: Option<Reported>,
) -> Option<(Delivery, ActOn)> {
    let pid = target.pid();
    let name = target.comm();
    let (uid, user) = (target.uid(), UserName(target.uid()));
    // Absent, not empty, for a process in no container.
    let (container_id, pod_uid) = (target.identity().container(), target.identity().pod());
    // Each size twice: for people (`500.1MiB`) and, exact, for programs (`rss_bytes`).
    let (rss_bytes, limit_bytes) = (rss, policy.limit);
    let (rss, limit) = (Bytes(rss_bytes), Bytes(limit_bytes));
    // Only a breach or a warning is found on a report; repeats and kills fall due on the
    // monitor's timer.
    let reported = reported.filter(|_| matches!(verdict, Verdict::Breach | Verdict::Warn));
    let queued_us = reported.map(|r| r.read_ns.saturating_sub(r.at_ns) / 1000);
    let reaction_us =
        reported.map(|r| crate::system::procfs::monotonic_ns().saturating_sub(r.at_ns) / 1000);
    let signal = match verdict {
        Verdict::Quiet => return None,
        Verdict::Recovered => {
            tracing::info!(event = "recovered", rule, pid, %name, uid, %user, container_id, pod_uid, %rss, rss_bytes, %limit, limit_bytes, "back under the limit");
            return None;
        }
        Verdict::Warn => {
            let warn_at_bytes = policy.warn.unwrap_or(limit_bytes);
            let warn_at = Bytes(warn_at_bytes);
            tracing::warn!(event = "warn", rule, pid, %name, uid, %user, container_id, pod_uid, %rss, rss_bytes, %limit, limit_bytes, %warn_at, warn_at_bytes, queued_us, reaction_us, "over the warning level; no signal");
            return None;
        }
        Verdict::WarnEnded => {
            tracing::debug!(event = "warn_ended", rule, pid, %name, %rss, rss_bytes, "back under the warning level");
            return None;
        }
        Verdict::Breach | Verdict::Repeat => policy.signal,
        Verdict::Kill => Signal::KILL,
    };
    let aim = group::aim(proc, target, group);
    let result = deliver(target, signal, dispatch);
    // Once SIGKILL is on its way, nothing the processes do can keep their memory.
    let kill = signal == Signal::KILL && dispatch != Dispatch::DryRun;
    let mut reaping = Reaping::default();
    if kill && matches!(result, Delivery::Sent | Delivery::SentByKernel) {
        reaping.hold_target(target);
    }
    let reap = kill.then_some(&mut reaping);
    let reached = group::reach(proc, target.pid(), aim, signal, dispatch, result, reap);
    let Reached {
        acted_on,
        pgid,
        cgroup,
        members,
        via,
        refused: group_refused,
    } = reached;
    // A text field, quoted like the others.
    let acted_on_name = acted_on.name();
    let message = match (verdict, dispatch) {
        (Verdict::Breach, Dispatch::DryRun) => "over the limit; would signal (dry run)",
        (Verdict::Breach, _) => "over the limit",
        (Verdict::Repeat, Dispatch::DryRun) => "still over the limit; would signal again (dry run)",
        (Verdict::Repeat, _) => "still over the limit, signalled again",
        (_, Dispatch::DryRun) => "still over the limit after --kill-after; would kill (dry run)",
        _ => "still over the limit after --kill-after, killed",
    };
    let event = match verdict {
        Verdict::Breach => "breach",
        Verdict::Repeat => "repeat",
        _ => "kill",
    };
    match result {
        Delivery::Failed(_) => {
            tracing::error!(event, rule, pid, %name, uid, %user, container_id, pod_uid, %rss, rss_bytes, %limit, limit_bytes, %signal, %result, acted_on = acted_on_name, pgid, cgroup, members, via, group_refused, queued_us, reaction_us, "{message}");
        }
        _ => {
            tracing::warn!(event, rule, pid, %name, uid, %user, container_id, pod_uid, %rss, rss_bytes, %limit, limit_bytes, %signal, %result, acted_on = acted_on_name, pgid, cgroup, members, via, group_refused, queued_us, reaction_us, "{message}");
        }
    }
    reaping.start(rule);
    Some((result, acted_on))
}

/// Describes the policy for the start-up line: `SIGTERM, again every 2s while over`.
pub(crate) fn describe(policy: &Policy, act_on: ActOn, kernel_signal: bool) -> String {
    let mut text = policy.signal.to_string();
    if let Some(reach) = act_on.phrase() {
        text += &format!(" {reach}");
    }
    if kernel_signal {
        text += " from the kernel";
    }
    match policy.repeat {
        Some(period) => text += &format!(", again every {} while over", Period(period)),
        None => text += ", once per breach",
    }
    if let Some(kill_after) = policy.kill_after {
        text += &format!(", SIGKILL {} after the first", Period(kill_after));
    }
    text
}
