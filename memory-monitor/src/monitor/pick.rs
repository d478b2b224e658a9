//! The process under a rule to act on when the rule acts on its processes as a whole (a group
//! over its budget, a pressure or `memory.high` trigger): the largest, or the one that grew
//! the most per second since its last reading ([`Pick`], oomd's two strategies).
//!
//! Each is read exactly, the way a check reads one process: `statm` can be off by more than
//! the gap between two of them, and the wrong one would be signalled. A process the monitor
//! must never signal (PID 1, itself, its parent: [`Exclusions`]) is read and counted, never
//! picked; it can be watched when the monitor was re-parented to it after it was admitted.
//! Each reading is kept in the process's record, so the next one's growth is from it. The
//! signal goes through the process's pidfd, so a reused PID is never reached. Nothing here
//! allocates.

use std::time::Instant;

use rustix::io::Errno;

use super::Monitor;
use super::check::{self, Look};
use crate::act::deliver::{Delivery, Dispatch};
use crate::kernel::KernelLink;
use crate::rules::{Pick, RuleSet};
use crate::signal::Signal;
use crate::system::procfs::ProcRoot;
use crate::watch::process::WatchedProcess;
use crate::watch::scan::Exclusions;

/// A process read for a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Candidate {
    pub(super) pid: i32,
    /// Its exact RSS (bytes).
    pub(super) rss: u64,
    /// How fast it grew since its last reading (bytes per second).
    pub(super) growth: u64,
}

/// The candidate a pick prefers among those offered so far.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Choice(Option<Candidate>);

impl Choice {
    /// Keeps `candidate` if `pick` prefers it to the one kept: ties go to the larger, then to
    /// the one offered first.
    pub(super) fn offer(&mut self, pick: Pick, candidate: Candidate) {
        let better = match (self.0, pick) {
            (None, _) => true,
            (Some(best), Pick::Largest) => candidate.rss > best.rss,
            (Some(best), Pick::Fastest) => {
                candidate.growth > best.growth
                    || (candidate.growth == best.growth && candidate.rss > best.rss)
            }
        };
        if better {
            self.0 = Some(candidate);
        }
    }

    /// The candidate kept, if any was offered.
    pub(super) fn chosen(&self) -> Option<Candidate> {
        self.0
    }
}

/// How fast a process grew from its last reading, `last`, to `rss` at `now`: bytes per
/// second, 0 when it shrank or had no earlier reading.
fn growth(last: Option<(u64, Instant)>, rss: u64, now: Instant) -> u64 {
    let Some((before, at)) = last else {
        return 0;
    };
    let grown = rss.saturating_sub(before);
    let elapsed = now.saturating_duration_since(at).as_micros().max(1) as u64;
    ((u128::from(grown) * 1_000_000) / u128::from(elapsed)).min(u128::from(u64::MAX)) as u64
}

/// One process's reading for a pick.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    pub(super) candidate: Candidate,
    /// Whether it may be signalled (see [`Exclusions`]).
    pub(super) eligible: bool,
}

/// How a pass of readings goes: at `look`, leaving out what `exclusions` say.
#[derive(Debug, Clone, Copy)]
pub(super) struct Readings {
    pub(super) look: Look,
    exclusions: Exclusions,
}

impl Readings {
    /// `watched`'s reading, `None` once it has exited or cannot be read (the check's to
    /// forget). Kept in its record when `keep`, the next reading's growth being from it.
    pub(super) fn read(
        &self,
        watched: &mut WatchedProcess,
        rules: &RuleSet,
        proc: &ProcRoot,
        kernel: &mut dyn KernelLink,
        keep: bool,
    ) -> Option<Reading> {
        let rss = check::read(watched, rules, proc, self.look, kernel).ok()?;
        let now = self.look.now;
        let grew = growth(watched.last_reading, rss, now);
        if keep {
            watched.last_reading = Some((rss, now));
        }
        Some(Reading {
            candidate: Candidate {
                pid: watched.pid(),
                rss,
                growth: grew,
            },
            eligible: !self.exclusions.excludes(watched.pid()),
        })
    }
}

impl Monitor {
    /// A pass of readings at `now`, the look a check takes.
    pub(super) fn readings(&self, now: Instant) -> Readings {
        let (accounting, exact) = self.reading();
        Readings {
            look: Look {
                now,
                accounting,
                exact,
                rearm: None,
                reported: None,
            },
            exclusions: Exclusions::now(),
        }
    }

    /// Reads every process rule `index` watches at `now`, each reading kept; the one `pick`
    /// prefers among those that may be signalled.
    pub(super) fn pick(&mut self, index: usize, pick: Pick, now: Instant) -> Option<Candidate> {
        let readings = self.readings(now);
        let rules = &self.in_force.rules;
        let mut choice = Choice::default();
        self.watch.retain(|watched, proc, kernel| {
            if watched.rule() == index
                && let Some(reading) = readings.read(watched, rules, proc, kernel, true)
                && reading.eligible
            {
                choice.offer(pick, reading.candidate);
            }
            true
        });
        choice.chosen()
    }

    /// Sends rule `index`'s signal to the watched process `pid`, as the dispatch says, and
    /// counts it; the process and what became of the signal. The kernel side never sends
    /// this one: a signal it would send is the monitor's to send here.
    pub(super) fn signal_picked(
        &self,
        index: usize,
        pid: i32,
    ) -> Option<(&WatchedProcess, Delivery)> {
        let signal = self.in_force.rules.get(index).signal;
        let picked = self.watch.list().get(pid)?;
        let delivery = deliver(picked, signal, self.actions.dispatch);
        self.in_force
            .actions(index)
            .metrics
            .signalled(signal, delivery);
        Some((picked, delivery))
    }
}

/// Sends `signal` to `picked` as `dispatch` says; what became of it.
fn deliver(picked: &WatchedProcess, signal: Signal, dispatch: Dispatch) -> Delivery {
    match dispatch {
        Dispatch::DryRun => Delivery::DryRun,
        Dispatch::Send | Dispatch::SentByKernel => match picked.send(signal) {
            Ok(()) => Delivery::Sent,
            Err(Errno::SRCH) => Delivery::Exited,
            Err(errno) => Delivery::Failed(errno),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The choice among `candidates` (PID, RSS, growth), by `pick`.
    fn choose(pick: Pick, candidates: &[(i32, u64, u64)]) -> Option<(i32, u64, u64)> {
        let mut choice = Choice::default();
        for &(pid, rss, growth) in candidates {
            choice.offer(pick, Candidate { pid, rss, growth });
        }
        choice.chosen().map(|c| (c.pid, c.rss, c.growth))
    }

    #[test]
    fn the_largest_is_picked() {
        let candidates = [(10, 300, 0), (11, 500, 0), (12, 400, 900)];
        assert_eq!(choose(Pick::Largest, &candidates), Some((11, 500, 0)));
    }

    #[test]
    fn the_fastest_is_picked_by_growth_then_size() {
        let candidates = [(10, 900, 10), (11, 100, 50), (12, 200, 50)];
        assert_eq!(choose(Pick::Fastest, &candidates), Some((12, 200, 50)));
        assert_eq!(choose(Pick::Fastest, &[]), None);
    }

    #[test]
    fn growth_is_per_second_and_never_negative() {
        let start = Instant::now();
        let later = start + Duration::from_millis(500);
        assert_eq!(growth(Some((1000, start)), 2000, later), 2000);
        assert_eq!(growth(Some((3000, start)), 2000, later), 0);
        assert_eq!(growth(None, 2000, later), 0);
    }
}
