//! What acting on a breach needs, per rule: its profiler (which profiles a breaching process
//! before its signal) and its metrics; and the hook runners, and whether signals go out at all.
//! A dry run (`--dry-run`, `--once`) acts on nothing: no signal, no hook, no profile, so that
//! trying a rule out can never touch the processes it selects.

use std::sync::Arc;

use crate::Error;
use crate::act::deliver::Dispatch;
use crate::act::hook::ExecHook;
use crate::act::metrics::{Metrics, RuleMetrics};
use crate::act::profile::{ProfileCounts, Profiler};
use crate::rules::RuleSet;
use crate::sink;

/// Per rule, in the rules' order: the profiler (when the rule profiles) and the metrics.
#[derive(Debug, Default)]
pub struct RuleActions {
    /// Each rule's profiler, if it profiles.
    pub profilers: Vec<Option<Profiler>>,
    /// Each rule's metrics.
    pub metrics: Vec<RuleMetrics>,
}

impl RuleActions {
    /// Starts what `rules` need: a profiler per profiling rule (none in a dry run), and their
    /// metrics (to be put in force, or retired, by the caller). The profile destinations are
    /// opened first, in a dry run too: one that cannot be used refuses the rules before
    /// anything else is made for them.
    pub fn start(rules: &RuleSet, metrics: &Metrics, dry_run: bool) -> Result<RuleActions, Error> {
        let writers = rules
            .rules()
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
        let rule_metrics = metrics.for_rules(rules);
        let profilers = writers
            .into_iter()
            .zip(&rule_metrics)
            .map(|(writer, counts)| {
                let Some((writer, budget)) = writer.filter(|_| !dry_run) else {
                    return Ok(None);
                };
                let counts = ProfileCounts {
                    written: counts.profiles_written.clone(),
                    failed: counts.profiles_failed.clone(),
                };
                Profiler::start(writer, budget, counts)
                    .map(Some)
                    .map_err(|e| Error::ProfileWriter(e.into()))
            })
            .collect::<Result<_, Error>>()?;
        Ok(RuleActions {
            profilers,
            metrics: rule_metrics,
        })
    }
}

/// Everything a check acts with.
#[derive(Debug)]
pub struct Actions {
    /// Per rule.
    pub rules: RuleActions,
    /// Runs hooks (`exec`) on breaches; started once a rule has one, never in a dry run.
    pub hook: Option<ExecHook>,
    /// Whether signals are sent (`--dry-run` says not).
    pub dispatch: Dispatch,
    /// The monitor's metrics, which the rules' are part of.
    pub metrics: Arc<Metrics>,
}

impl Actions {
    /// What `rules` need, counted in `metrics`; in a dry run, nothing that acts.
    pub fn start(rules: &RuleSet, metrics: Arc<Metrics>, dry_run: bool) -> Result<Actions, Error> {
        let per_rule = RuleActions::start(rules, &metrics, dry_run)?;
        metrics.put_in_force(rules, &[]);
        Ok(Actions {
            rules: per_rule,
            hook: match dry_run {
                true => None,
                false => start_hook(rules)?,
            },
            dispatch: match dry_run {
                true => Dispatch::DryRun,
                false => Dispatch::Send,
            },
            metrics,
        })
    }

    /// Puts `rules`'s actions in force in place of the old ones' (their metrics retired); the
    /// hook runners start the first time a rule has a hook.
    pub fn replace(&mut self, rules: &RuleSet, actions: RuleActions) {
        self.metrics.put_in_force(rules, &self.rules.metrics);
        self.rules = actions;
        if self.hook.is_none() && !self.dry_run() {
            match start_hook(rules) {
                Ok(hook) => self.hook = hook,
                Err(error) => {
                    tracing::error!(
                        event = "exec_failed",
                        "exec hooks cannot run: {:#}",
                        anyhow::Error::new(error)
                    )
                }
            }
        }
    }

    /// Whether nothing is acted on (`--dry-run`, `--once`).
    pub fn dry_run(&self) -> bool {
        self.dispatch == Dispatch::DryRun
    }

    /// Brings the per-rule watched gauges up to date (a few atomic stores).
    pub fn publish(&self, per_rule: &[u32]) {
        for (metrics, count) in self.rules.metrics.iter().zip(per_rule) {
            metrics.watched.set(i64::from(*count));
        }
    }
}

/// The hook runners, when a rule has a hook.
fn start_hook(rules: &RuleSet) -> Result<Option<ExecHook>, Error> {
    if rules.rules().iter().all(|rule| rule.exec.is_none()) {
        return Ok(None);
    }
    ExecHook::start().map(Some).map_err(Error::Runtime)
}
