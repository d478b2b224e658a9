//! When to signal: the per-process breach state machine.
//!
//! A process is *over* when its RSS is strictly greater than the limit. Crossing over starts an
//! episode and earns the configured signal at once; while the episode lasts the signal is
//! repeated every `repeat` (by default, every interval) and, with `kill_after`,
//! escalated once to SIGKILL. Falling back to or under the limit ends the episode, so the next
//! crossing is a new breach. Time is passed in, so the machine is pure and testable.
//!
//! A warning level under the limit (`warn-at`) works the same way, one step lower: going over
//! it starts a warning episode, which earns one warning and no signal; falling back to or
//! under it ends the episode. A breach within a warning episode ends, when it does, back in
//! that episode, not in a new one.

use std::time::{Duration, Instant};

use crate::signal::Signal;

/// The rules applied to every watched process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// RSS limit in bytes.
    pub(crate) limit: u64,
    /// The warning level in bytes (under the limit), if any.
    pub(crate) warn: Option<u64>,
    /// Signal sent on breach and on repeats.
    pub(crate) signal: Signal,
    /// Re-signal period while over; `None`: once per episode.
    pub(crate) repeat: Option<Duration>,
    /// SIGKILL this long after the first signal if still over.
    pub(crate) kill_after: Option<Duration>,
}

/// Where one process stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Episode {
    /// At or under the limit, and the warning level if there is one.
    #[default]
    Under,
    /// Over the warning level, at or under the limit.
    Warned,
    /// Over the limit since `since`.
    Over {
        /// When the breach was first seen (and first signalled).
        since: Instant,
        /// When the last signal was sent.
        last_signal: Instant,
        /// Whether SIGKILL has been sent.
        killed: bool,
    },
}

impl Episode {
    /// Whether the process is in a breach episode.
    pub(crate) fn is_over(&self) -> bool {
        matches!(self, Episode::Over { .. })
    }

    /// The process came under another rule at `now` (the rules were reloaded, or it renamed
    /// itself or moved into a cgroup another rule names). A breach under way carries on (it
    /// was signalled once; the same breach is not a new one), but the new rule's `kill_after`
    /// counts from now: a rule that did not apply before cannot have been waited out already.
    pub(crate) fn rule_changed(&mut self, now: Instant) {
        if let Episode::Over { since, .. } = self {
            *since = now;
        }
    }
}

/// What to do after an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing (under, or over but nothing due).
    Quiet,
    /// Just crossed the warning level: warn, without a signal.
    Warn,
    /// Was over the warning level (not the limit), now back at or under it.
    WarnEnded,
    /// Just crossed the limit: send the signal.
    Breach,
    /// Still over a `repeat` after the last signal: send it again.
    Repeat,
    /// Still over `kill_after` after the first signal: send SIGKILL.
    Kill,
    /// Was over, now back at or under the limit.
    Recovered,
}

impl Verdict {
    /// Whether a signal is due.
    pub(crate) fn signals(self) -> bool {
        matches!(self, Verdict::Breach | Verdict::Repeat | Verdict::Kill)
    }
}

impl Policy {
    /// Updates `episode` with an RSS reading taken at `now` and says what is due.
    pub(crate) fn judge(&self, episode: &mut Episode, rss: u64, now: Instant) -> Verdict {
        let over = rss > self.limit;
        // Under the limit: in a warning episode or not, by the same rule, one step lower.
        let under = match self.warn {
            Some(warn) if rss > warn => Episode::Warned,
            _ => Episode::Under,
        };
        match episode {
            Episode::Under | Episode::Warned if over => {
                *episode = Episode::Over {
                    since: now,
                    last_signal: now,
                    killed: false,
                };
                Verdict::Breach
            }
            Episode::Under | Episode::Warned => {
                let verdict = match (*episode, under) {
                    (Episode::Under, Episode::Warned) => Verdict::Warn,
                    (Episode::Warned, Episode::Under) => Verdict::WarnEnded,
                    _ => Verdict::Quiet,
                };
                *episode = under;
                verdict
            }
            Episode::Over { .. } if !over => {
                *episode = under;
                Verdict::Recovered
            }
            Episode::Over { killed: true, .. } => Verdict::Quiet,
            Episode::Over {
                since,
                last_signal,
                killed,
            } => {
                if self.kill_after.is_some_and(|k| now >= *since + k) {
                    *killed = true;
                    *last_signal = now;
                    Verdict::Kill
                } else if self.repeat.is_some_and(|r| now >= *last_signal + r) {
                    *last_signal = now;
                    Verdict::Repeat
                } else {
                    Verdict::Quiet
                }
            }
        }
    }

    /// When this episode next needs a look (a repeat or a kill falling due), if ever. Sources
    /// that are not woken by time (eBPF) sleep until the earliest of these.
    pub(crate) fn deadline(&self, episode: &Episode) -> Option<Instant> {
        match *episode {
            Episode::Under | Episode::Warned | Episode::Over { killed: true, .. } => None,
            Episode::Over {
                since, last_signal, ..
            } => {
                let repeat = self.repeat.map(|r| last_signal + r);
                let kill = self.kill_after.map(|k| since + k);
                repeat.into_iter().chain(kill).min()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 100;

    fn policy(repeat: Option<u64>, kill_after: Option<u64>) -> Policy {
        Policy {
            limit: LIMIT,
            warn: None,
            signal: Signal::TERM,
            repeat: repeat.map(Duration::from_secs),
            kill_after: kill_after.map(Duration::from_secs),
        }
    }

    /// Feeds (seconds, rss) readings and collects the verdicts.
    fn run(policy: Policy, readings: &[(u64, u64)]) -> Vec<Verdict> {
        let start = Instant::now();
        let mut episode = Episode::default();
        readings
            .iter()
            .map(|&(t, rss)| policy.judge(&mut episode, rss, start + Duration::from_secs(t)))
            .collect()
    }

    use Verdict::*;

    #[test]
    fn the_limit_itself_is_not_over() {
        assert_eq!(
            run(policy(None, None), &[(0, LIMIT), (1, LIMIT + 1)]),
            [Quiet, Breach]
        );
    }

    #[test]
    fn one_signal_per_episode_without_repeat() {
        let verdicts = run(policy(None, None), &[(0, 50), (1, 150), (2, 160), (9, 170)]);
        assert_eq!(verdicts, [Quiet, Breach, Quiet, Quiet]);
    }

    #[test]
    fn repeats_while_over_then_recovers_and_breaches_again() {
        let verdicts = run(
            policy(Some(2), None),
            &[
                (0, 150),
                (1, 150),
                (2, 150),
                (3, 150),
                (4, 150),
                (5, 90),
                (6, 150),
            ],
        );
        assert_eq!(
            verdicts,
            [Breach, Quiet, Repeat, Quiet, Repeat, Recovered, Breach]
        );
    }

    #[test]
    fn kill_after_escalates_once() {
        let verdicts = run(
            policy(Some(1), Some(3)),
            &[(0, 150), (1, 150), (2, 150), (3, 150), (4, 150), (10, 150)],
        );
        assert_eq!(verdicts, [Breach, Repeat, Repeat, Kill, Quiet, Quiet]);
    }

    #[test]
    fn kill_clock_restarts_with_each_episode() {
        let verdicts = run(
            policy(None, Some(3)),
            &[(0, 150), (2, 50), (4, 150), (6, 150), (7, 150)],
        );
        assert_eq!(verdicts, [Breach, Recovered, Breach, Quiet, Kill]);
    }

    #[test]
    fn under_a_new_rule_a_breach_carries_on_and_its_kill_clock_starts_again() {
        let (old, new) = (policy(None, None), policy(None, Some(2)));
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut episode = Episode::default();
        assert_eq!(old.judge(&mut episode, 150, at(0)), Breach);
        episode.rule_changed(at(10));
        assert_eq!(
            new.judge(&mut episode, 150, at(11)),
            Quiet,
            "not a second breach"
        );
        assert_eq!(new.judge(&mut episode, 150, at(12)), Kill);
        let mut under = Episode::default();
        under.rule_changed(at(1));
        assert_eq!(under, Episode::Under);
    }

    #[test]
    fn one_warning_per_episode_and_never_a_signal() {
        let warning = Policy {
            warn: Some(80),
            ..policy(None, None)
        };
        let verdicts = run(
            warning,
            &[
                (0, 50),
                (1, 81),
                (2, 90),
                (3, 80),
                (4, 85),
                (5, 150),
                (6, 90),
                (7, 150),
                (8, 20),
                (9, 150),
            ],
        );
        assert_eq!(
            verdicts,
            [
                Quiet, Warn, Quiet, WarnEnded, Warn, Breach, Recovered, Breach, Recovered, Breach
            ]
        );
        assert!(!Warn.signals());
        let start = Instant::now();
        let mut episode = Episode::default();
        warning.judge(&mut episode, 90, start);
        assert_eq!(episode, Episode::Warned);
        assert_eq!(warning.deadline(&episode), None, "nothing falls due");
        assert!(!episode.is_over());
    }

    #[test]
    fn deadlines_follow_the_earliest_due_action() {
        let p = policy(Some(5), Some(3));
        let start = Instant::now();
        let mut episode = Episode::default();
        assert_eq!(p.deadline(&episode), None);
        p.judge(&mut episode, 150, start);
        assert_eq!(p.deadline(&episode), Some(start + Duration::from_secs(3)));
        p.judge(&mut episode, 150, start + Duration::from_secs(3));
        assert_eq!(p.deadline(&episode), None, "nothing follows SIGKILL");
        assert_eq!(
            policy(None, None).deadline(&Episode::Over {
                since: start,
                last_signal: start,
                killed: false
            }),
            None
        );
    }
}
