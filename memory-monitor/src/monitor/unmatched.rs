//! Rules that select no process: a name mistyped, a user with no process, a program not
//! started yet. Otherwise such a monitor would watch nothing and say nothing; instead it says
//! so at start, and once more if a rule still selects nothing a while later: one line each
//! time, never one a cycle.

use std::time::{Duration, Instant};

use crate::rules::RuleSet;
use crate::units::Period;

/// A rule that selected nothing at start is named again if it still selects nothing after
/// this many intervals (a minute at the default 2 s).
pub(crate) const AFTER_INTERVALS: u32 = 30;

/// How long after start the rules that selected nothing are looked at again.
pub(crate) fn delay(interval: Duration) -> Duration {
    interval.saturating_mul(AFTER_INTERVALS)
}

/// Says which rules select no process now (`per_rule`: how many each watches, in the rules'
/// order); when to look again, if one selects nothing.
pub(crate) fn at_start(
    rules: &RuleSet,
    per_rule: &[u32],
    interval: Duration,
    now: Instant,
) -> Option<Instant> {
    let again = format!(
        "; said again if none appears within {}",
        Period(delay(interval))
    );
    (say(rules, per_rule, "now", &again) > 0).then(|| now + delay(interval))
}

/// Says which rules still select no process, `delay(interval)` after start.
pub(crate) fn later(rules: &RuleSet, per_rule: &[u32], interval: Duration) {
    let when = format!("{} after start", Period(delay(interval)));
    say(rules, per_rule, &when, "");
}

/// One warning per rule that selects no process, but those whose cgroup is missing (their
/// own warning says why); how many.
fn say(rules: &RuleSet, per_rule: &[u32], when: &str, again: &str) -> usize {
    let mut said = 0;
    for (rule, watched) in rules.all().iter().zip(per_rule) {
        let cgroup_missing = rules.missing_cgroups().any(|r| r.name == rule.name);
        if *watched > 0 || cgroup_missing {
            continue;
        }
        said += 1;
        tracing::warn!(
            event = "no_match",
            rule = %rule.name,
            "rule '{}' selects no process {when}: {} (check it with --list{again})",
            rule.name,
            rule.selector
        );
    }
    said
}
