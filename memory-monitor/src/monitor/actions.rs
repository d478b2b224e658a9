//! What acting on a breach needs besides each rule's own (see [`super::in_force`]): the hook
//! runners, whether signals go out at all, and the monitor's metrics. A dry run (`--dry-run`,
//! `--once`) acts on nothing: no signal, no hook, no profile, so that trying a rule out can
//! never touch the processes it selects.

use std::sync::Arc;

use crate::Error;
use crate::act::deliver::Dispatch;
use crate::act::hook::ExecHook;
use crate::act::metrics::{Metrics, RuleMetrics};
use crate::rules::RuleSet;

/// Everything a check acts with.
#[derive(Debug)]
pub(crate) struct Actions {
    /// Runs hooks (`exec`) on breaches; started once a rule has one, never in a dry run.
    pub(crate) hook: Option<ExecHook>,
    /// Whether signals are sent (`--dry-run` says not).
    pub(crate) dispatch: Dispatch,
    /// The monitor's metrics, which the rules' are part of.
    pub(crate) metrics: Arc<Metrics>,
}

impl Actions {
    /// What `rules` (the first in force) need, counted in `metrics`; in a dry run, nothing
    /// that acts.
    pub(crate) fn start(
        rules: &RuleSet,
        metrics: Arc<Metrics>,
        dry_run: bool,
    ) -> Result<Actions, Error> {
        metrics.put_in_force(rules, []);
        Ok(Actions {
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

    /// `rules` were put in force in place of those `replaced` measured (whose series are
    /// retired); the hook runners start the first time a rule has a hook.
    pub(crate) fn rules_replaced<'a>(
        &mut self,
        rules: &RuleSet,
        replaced: impl IntoIterator<Item = &'a RuleMetrics>,
    ) {
        self.metrics.put_in_force(rules, replaced);
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
    pub(crate) fn dry_run(&self) -> bool {
        self.dispatch == Dispatch::DryRun
    }
}

/// The hook runners, when a rule has a hook.
fn start_hook(rules: &RuleSet) -> Result<Option<ExecHook>, Error> {
    if rules.all().iter().all(|rule| rule.exec.is_none()) {
        return Ok(None);
    }
    ExecHook::start().map(Some).map_err(Error::Runtime)
}
