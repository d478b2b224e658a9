//! The rules in force, each with what acting on it needs (its profiler and its metrics), owned
//! as one. A reload builds a whole new set beside the old one, hands its rules to the watch
//! (and so to the kernel side), and swaps it in with one assignment: no per-rule list is ever
//! kept in step with another by hand.

use crate::Error;
use crate::act::metrics::{Metrics, RuleMetrics};
use crate::act::profile::{ProfileCounts, Profiler};
use crate::rules::RuleSet;
use crate::sink;

/// What acting on one rule's breaches needs.
#[derive(Debug)]
pub(crate) struct RuleActions {
    /// Its profiler, if it profiles (none in a dry run).
    pub(crate) profiler: Option<Profiler>,
    /// Its metrics.
    pub(crate) metrics: RuleMetrics,
}

/// The rules in force and, for each in the same order, what acting on it needs.
#[derive(Debug)]
pub(crate) struct InForce {
    /// The rules.
    pub(crate) rules: RuleSet,
    per_rule: Vec<RuleActions>,
}

impl InForce {
    /// Puts together `rules` and what they need: a profiler per profiling rule (none in a dry
    /// run), and their metrics (to be put in force, or retired, by the caller). The profile
    /// destinations are opened first, in a dry run too: one that cannot be used refuses the
    /// rules before anything else is made for them.
    pub(crate) fn build(
        rules: RuleSet,
        metrics: &Metrics,
        dry_run: bool,
    ) -> Result<InForce, Error> {
        let writers = rules
            .all()
            .iter()
            .map(|rule| {
                rule.profile
                    .as_ref()
                    .map(|settings| {
                        sink::open(&settings.sink).map(|writer| (writer, settings.budget))
                    })
                    .transpose()
                    .map_err(Error::ProfileWriter)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let per_rule = writers
            .into_iter()
            .zip(metrics.for_rules(&rules))
            .map(|(writer, metrics)| {
                let profiler = match writer.filter(|_| !dry_run) {
                    None => None,
                    Some((writer, budget)) => {
                        let counts = ProfileCounts {
                            written: metrics.profiles_written.clone(),
                            failed: metrics.profiles_failed.clone(),
                        };
                        let profiler = Profiler::start(writer, budget, counts)
                            .map_err(|e| Error::ProfileWriter(e.into()))?;
                        Some(profiler)
                    }
                };
                Ok(RuleActions { profiler, metrics })
            })
            .collect::<Result<_, Error>>()?;
        Ok(InForce { rules, per_rule })
    }

    /// What acting on rule `index` needs.
    pub(crate) fn actions(&self, index: usize) -> &RuleActions {
        &self.per_rule[index]
    }

    /// Every rule's metrics, in the rules' order.
    pub(crate) fn metrics(&self) -> impl Iterator<Item = &RuleMetrics> {
        self.per_rule.iter().map(|actions| &actions.metrics)
    }

    /// Brings the per-rule watched gauges up to date from `per_rule`, the processes watched
    /// under each rule (a few atomic stores).
    pub(crate) fn publish(&self, per_rule: &[u32]) {
        for (metrics, count) in self.metrics().zip(per_rule) {
            metrics.watched.set(i64::from(*count));
        }
    }
}
