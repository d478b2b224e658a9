//! Budgets over a group (`group-limit`): every process a rule watches counts toward one sum,
//! and when the sum is over the budget one member is signalled, the largest or the
//! fastest-growing (`group-pick`), then the group is left to settle (`group-settle`) before
//! the next. oomd's `kill_by_memory_size_or_growth` and its `post_action_delay`, for a rule's
//! processes.
//!
//! The sum is of the members' exact readings, taken together, the way a check reads one
//! process. Poll mode reads the groups at every cycle. eBPF mode reads them when the kernel
//! side says a member crossed its share: each reading of a group under its budget shares out
//! what is left, a member's share being its RSS and an equal part of the rest, so the shares
//! add up to the budget and the group cannot go over it without a member going over its
//! share, which the kernel side reports as it reports a limit. The shares are written and
//! re-armed before a second, deciding reading, so no growth between the two goes unseen. A
//! group is read again too when its members may have changed (a fork, an exit, an exec), when
//! its settle time ends, and at every full look (start-up, reloads, lost events). Nothing here
//! allocates: the tallies are on the stack, each member's last reading is in its record.

use std::time::{Duration, Instant};

use super::check::{earliest, fire_hook};
use super::pick::{Candidate, Choice, Reading};
use super::{Monitor, REPORT_GAP};
use crate::act::deliver::Delivery;
use crate::act::hook::HookEvent;
use crate::kernel::Level;
use crate::rules::{ActOn, GroupBudget, MAX_RULES, Pick, PressureAction, Rule, RuleSet};
use crate::units::Bytes;

/// Where each rule's group stands between readings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Budgets {
    /// Whether any rule in force has a budget, or keeps readings for another pick.
    any: bool,
    /// Per rule: until when its group settles after its last signal.
    settling: [Option<Instant>; MAX_RULES],
    /// Per rule: whether its group was over its budget at its last reading.
    over: [bool; MAX_RULES],
    /// eBPF mode: when the groups are read next (a settle time's end, a held-back report's).
    next: Option<Instant>,
    /// eBPF mode: the groups are to be read once the events at hand are handled, and whether
    /// because a member crossed its share (then its next report is held back for a moment).
    due_now: Option<bool>,
}

impl Budgets {
    /// Budgets for `rules`, every group afresh.
    pub(crate) fn new(rules: &RuleSet) -> Budgets {
        Budgets {
            any: rules.all().iter().any(keeps_readings),
            ..Budgets::default()
        }
    }

    /// eBPF mode: when the groups are read next, if a reading waits on a deadline.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.next
    }

    /// eBPF mode: whether the groups are to be read now that the events at hand are handled.
    pub(crate) fn reading_due(&self) -> bool {
        self.due_now.is_some()
    }

    /// eBPF mode: a member crossed its share (`reported`), or the members may have changed:
    /// the groups are read once the events at hand are handled.
    pub(crate) fn read_soon(&mut self, reported: bool) {
        if self.any {
            self.due_now = Some(self.due_now.unwrap_or(false) || reported);
        }
    }
}

/// One group at one reading: its sum and the member its pick would signal.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// The sum of its members' RSS (bytes).
    rss: u64,
    /// How many members were read.
    members: u32,
    /// The member to signal.
    choice: Choice,
}

impl Tally {
    /// Counts a member at `reading`, and offers it to `pick` if it may be signalled (one
    /// never signalled, the monitor's parent say, still counts).
    fn add(&mut self, pick: Pick, reading: Reading) {
        self.rss = self.rss.saturating_add(reading.candidate.rss);
        self.members += 1;
        if reading.eligible {
            self.choice.offer(pick, reading.candidate);
        }
    }
}

/// A member's share of a budget: its `rss` and an equal part of what the group has left.
fn share(rss: u64, left: u64, members: u32) -> u64 {
    rss.saturating_add(left / u64::from(members.max(1)))
}

/// Which pass of a reading: the first remembers each member's figure (the next reading's
/// growth is from it), the deciding one after the shares were written only judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    First,
    Deciding,
}

impl Monitor {
    /// Reads every group at `now` and acts on those over their budget: poll mode's cycles, eBPF
    /// mode's full looks, its members' share crossings and deadlines.
    pub(super) fn check_groups(&mut self, now: Instant) {
        let reported = self.budgets.due_now.take().unwrap_or(false);
        self.budgets.next = None;
        if !self.budgets.any {
            return;
        }
        let rules = self.in_force.rules.all().len();
        let event_driven = self.is_event_driven();
        let gap = if reported { REPORT_GAP } else { Duration::ZERO };
        let first = self.read_groups(now, Pass::First);
        let mut shared = [false; MAX_RULES];
        for (index, tally) in first.iter().enumerate().take(rules) {
            if !self.judge_group(index, tally, now) && event_driven {
                self.share_out(index, tally, gap);
                shared[index] = true;
            }
        }
        if shared.iter().any(|&shared| shared) {
            // Re-armed at their shares: a group found over now was over before a member's
            // report could come, and is judged now; one that grew meanwhile is read again
            // after the gap, as a member may have passed its share before it was re-armed.
            let deciding = self.read_groups(now, Pass::Deciding);
            for index in (0..rules).filter(|&index| shared[index]) {
                let limit = self.budget(index).map_or(u64::MAX, |budget| budget.limit);
                if deciding[index].rss > limit {
                    self.judge_group(index, &deciding[index], now);
                } else if deciding[index].rss > first[index].rss || reported {
                    let again = now + gap.max(REPORT_GAP);
                    self.budgets.next = earliest(self.budgets.next, Some(again));
                }
            }
        }
        for (index, tally) in first.iter().enumerate().take(rules) {
            let Some(budget) = self.budget(index) else {
                continue;
            };
            tracing::debug!(
                event = "group_read",
                rule = %self.in_force.rules.get(index).name,
                group_rss_bytes = tally.rss,
                group_limit_bytes = budget.limit,
                members = tally.members,
                "group read"
            );
        }
    }

    /// Rule `index`'s budget, if it has one.
    fn budget(&self, index: usize) -> Option<GroupBudget> {
        self.in_force.rules.get(index).group
    }

    /// Judges rule `index`'s group at `tally` at `now`, signalling a member when it is over
    /// and not settling; whether it is over (true for a rule without a budget, which has
    /// nothing to share out).
    fn judge_group(&mut self, index: usize, tally: &Tally, now: Instant) -> bool {
        let Some(budget) = self.budget(index) else {
            return true;
        };
        let over = tally.rss > budget.limit;
        let was_over = std::mem::replace(&mut self.budgets.over[index], over);
        if !over {
            if was_over {
                tracing::info!(
                    event = "group_recovered",
                    rule = %self.in_force.rules.get(index).name,
                    group_rss_bytes = tally.rss,
                    group_limit_bytes = budget.limit,
                    members = tally.members,
                    "the rule's processes are back under their group budget"
                );
            }
            self.budgets.settling[index] = None;
            return false;
        }
        let until = match self.budgets.settling[index] {
            Some(until) if now < until => until,
            _ => {
                let Some(chosen) = tally.choice.chosen() else {
                    return true;
                };
                self.signal_member(index, budget, *tally, chosen);
                let until = now + budget.settle;
                self.budgets.settling[index] = Some(until);
                until
            }
        };
        if self.is_event_driven() {
            self.budgets.next = earliest(self.budgets.next, Some(until));
        }
        true
    }

    /// eBPF mode: shares out what rule `index`'s group, at `tally`, has left under its budget
    /// among its members, each re-armed at its share after `gap`.
    fn share_out(&mut self, index: usize, tally: &Tally, gap: Duration) {
        let Some(budget) = self.budget(index) else {
            return;
        };
        let left = budget.limit.saturating_sub(tally.rss);
        self.watch.retain(|watched, _, kernel| {
            if watched.rule() == index
                && let Some((rss, _)) = watched.last_reading
            {
                kernel.share(watched.pid(), share(rss, left, tally.members));
                kernel.rearm(watched.pid(), Level::Share, gap);
            }
            true
        });
    }

    /// Reads every member of every group at `now` (the look a check takes); the tallies, by
    /// rule. The first pass keeps each member's reading for the next growth, for the rules
    /// that pick the fastest under pressure too.
    fn read_groups(&mut self, now: Instant, pass: Pass) -> [Tally; MAX_RULES] {
        let readings = self.readings(now);
        let rules = &self.in_force.rules;
        let mut tallies = [Tally::default(); MAX_RULES];
        self.watch.retain(|watched, proc, kernel| {
            let index = watched.rule();
            let rule = rules.get(index);
            if !keeps_readings(rule) {
                return true;
            }
            let keep = pass == Pass::First;
            // One that has exited, or cannot be read, is the check's to forget.
            if let Some(reading) = readings.read(watched, rules, proc, kernel, keep) {
                let pick = rule.group.map_or(Pick::Largest, |budget| budget.pick);
                tallies[index].add(pick, reading);
            }
            true
        });
        tallies
    }

    /// Signals the member `chosen` of rule `index`'s group, over its budget at `tally`;
    /// logged, counted and handed to the rule's hook.
    fn signal_member(&self, index: usize, budget: GroupBudget, tally: Tally, chosen: Candidate) {
        let Some((member, delivery)) = self.signal_picked(index, chosen.pid) else {
            return;
        };
        let rules: &RuleSet = &self.in_force.rules;
        let rule = rules.get(index);
        self.in_force.actions(index).metrics.group_breaches.inc();
        tracing::warn!(
            event = "group_breach",
            rule = %rule.name,
            group_rss_bytes = tally.rss,
            group_limit_bytes = budget.limit,
            members = tally.members,
            pid = chosen.pid,
            name = %member.comm(),
            rss_bytes = chosen.rss,
            growth_bytes_per_s = chosen.growth,
            pick = %budget.pick,
            signal = %rule.signal,
            result = %delivery,
            settle_ms = budget.settle.as_millis() as u64,
            "the rule's processes together are over their group budget ({} > {}): signalled its {} member",
            Bytes(tally.rss),
            Bytes(budget.limit),
            budget.pick,
        );
        let signal = || match delivery {
            Delivery::Sent => rule.signal.to_string(),
            other => other.to_string(),
        };
        // The pick alone is signalled, whatever the rule's `act-on`.
        let acted_on = Some(ActOn::Process);
        let at = (tally.rss, budget.limit);
        let event = HookEvent::GroupBreach;
        fire_hook(
            &self.actions,
            rule,
            member,
            event,
            at,
            (signal, acted_on),
            None,
        );
    }
}

/// Whether `rule`'s processes keep a reading at each reading of the groups: for its budget,
/// or for the growth a pressure trigger's pick of the fastest goes by.
pub(super) fn keeps_readings(rule: &Rule) -> bool {
    rule.group.is_some() || rule.pressure_action == PressureAction::SignalFastest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tally of `members` (PID, RSS, growth, eligible), by `pick`.
    fn tally(pick: Pick, members: &[(i32, u64, u64, bool)]) -> Tally {
        let mut tally = Tally::default();
        for &(pid, rss, growth, eligible) in members {
            let candidate = Candidate { pid, rss, growth };
            tally.add(
                pick,
                Reading {
                    candidate,
                    eligible,
                },
            );
        }
        tally
    }

    #[test]
    fn the_sum_counts_every_member() {
        let members = [(10, 300, 0, true), (11, 500, 0, true), (12, 400, 900, true)];
        let largest = tally(Pick::Largest, &members);
        assert_eq!((largest.rss, largest.members), (1200, 3));
        assert_eq!(largest.choice.chosen().map(|c| c.pid), Some(11));
    }

    #[test]
    fn a_member_never_signalled_still_counts() {
        let members = [(1, 900, 0, false), (20, 100, 0, true)];
        let largest = tally(Pick::Largest, &members);
        assert_eq!(largest.rss, 1000);
        assert_eq!(largest.choice.chosen().map(|c| c.pid), Some(20));
    }
}
