//! Putting new rules in force (SIGHUP, or a changed rules file with `--watch-config`), all at
//! once or not at all: a rules file that cannot be used leaves the rules in force as they are.

use std::time::Instant;

use super::Monitor;
use super::in_force::InForce;
use super::start;
use crate::host::systemd::Service;

impl Monitor {
    /// Tells systemd a reload is under way, reloads, and says it is ready again (with what is
    /// watched now) whatever came of it.
    pub(super) fn reload(&mut self, now: Instant, service: &Service) {
        service.reloading();
        self.reload_rules(now);
        service.ready(self.watch.list().len(), self.is_event_driven());
    }

    /// Reads the rules again, builds the new set in force beside the old one (each rule with
    /// its profiler and metrics), has the watch (and so the kernel side) apply its rules, and
    /// swaps it in.
    fn reload_rules(&mut self, now: Instant) {
        let metrics = &self.actions.metrics;
        let Some(file) = self.settings.rules.file.clone() else {
            tracing::warn!(
                event = "reload_failed",
                "SIGHUP: there is no rules file (--config) to read again"
            );
            return;
        };
        let built = self
            .settings
            .rules
            .load()
            .map_err(|e| e.to_string())
            .and_then(|rules| {
                InForce::build(rules, metrics, self.actions.dry_run())
                    .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
            });
        let new = match built {
            Ok(new) => new,
            Err(why) => {
                metrics.reloaded(false);
                tracing::error!(event = "reload_failed", file = %file.display(), "rules not reloaded (the rules in force stay): {why}");
                return;
            }
        };
        // Where each rule in force is among the new ones, by name: a rule is the same rule by
        // its name, wherever it is in the file now.
        let moved: Vec<Option<usize>> = self
            .in_force
            .rules
            .all()
            .iter()
            .map(|old| {
                new.rules
                    .all()
                    .iter()
                    .position(|rule| rule.name == old.name)
            })
            .collect();
        let profiles = new.rules.all().iter().any(|r| r.profile.is_some());
        let counts_swap = new.rules.all().iter().any(|r| r.count.swap());
        let renumbered = |old: usize| moved.get(old).copied().flatten();
        if let Err(error) = self.watch.apply_rules(&new.rules, now, &renumbered) {
            metrics.retire(new.metrics(), &self.in_force.rules);
            metrics.reloaded(false);
            tracing::error!(
                event = "reload_failed",
                "rules not reloaded: the kernel side refused them: {error}"
            );
            return;
        }
        if self.is_event_driven() && profiles && !self.watch.can_profile_growth() {
            tracing::warn!(
                event = "growth_profile_needs_restart",
                "growth profiles need a restart (their kernel maps are made at start-up); mapping profiles are taken meanwhile"
            );
        }
        if self.is_event_driven() && counts_swap && !self.watch.can_count_swap() {
            tracing::warn!(
                event = "count_swap_needs_restart",
                "rss+swap needs a restart in eBPF mode (the kernel side follows swap entries when a rule counts them at start-up); until then swap counts only when a process is looked at for its RSS"
            );
        }
        // Rules are renumbered and their budgets may have changed: every group starts afresh.
        self.budgets = super::budget::Budgets::new(&new.rules);
        let replaced = std::mem::replace(&mut self.in_force, new);
        self.actions
            .rules_replaced(&self.in_force.rules, replaced.metrics());
        // The old rules' profilers stop now.
        drop(replaced);
        self.follow_cgroups();
        self.arm_pressure();
        self.actions.metrics.reloaded(true);
        let count = self.in_force.rules.all().len();
        tracing::info!(event = "reload", file = %file.display(), rules = count, "rules reloaded");
        // Admits what the new rules select, and (eBPF mode) has the kernel side follow anew.
        if let Err(error) = self.cycle(now) {
            tracing::error!(
                event = "reload_failed",
                "after reloading the rules: {:#}",
                anyhow::Error::new(error)
            );
        }
        start::log_rules(&self.in_force.rules, self.running());
    }
}
