//! Following what changes under the monitor (see [`crate::system::inotify`]): a rules file that
//! changed is read once it settles; a rule's cgroup made or removed matches again, or no
//! longer; a rewritten cgroup limit changes the limits given as a share of it.

use std::time::Instant;

use super::{Monitor, RULES_FILE_SETTLE};
use crate::system::inotify::Changes;

impl Monitor {
    /// Acts on what changed under the monitor since the last look (see [`crate::system::inotify`]):
    /// a rules file that changed is read once it settles; a rule's cgroup made or removed
    /// matches again or no longer (a look at every process follows); a rewritten cgroup limit
    /// changes the limits given as a share of it, and those processes are judged at once.
    pub(super) fn on_changes(&mut self, now: Instant) {
        let Some(changed) = self.changes.as_mut().map(Changes::take) else {
            return;
        };
        if changed.rules_file {
            self.reload_at = Some(now + RULES_FILE_SETTLE);
        }
        if changed.cgroups {
            self.follow_cgroups();
            let _ = self.cycle(now);
        }
        if changed.limits {
            self.watch.limits_changed(&self.in_force.rules, now);
            self.check_watched(now, None, |_, watched| {
                watched.recheck.is_some_and(|due| due <= now)
            });
        }
    }

    /// Follows the rules' cgroups and says which appeared or went.
    pub(super) fn follow_cgroups(&mut self) {
        let Some(changes) = self.changes.as_mut() else {
            return;
        };
        let changed = match self
            .watch
            .recheck_cgroups(&mut self.in_force.rules, changes)
        {
            Ok(changed) => changed,
            Err(error) => {
                tracing::warn!(
                    event = "cgroup_missing",
                    "the kernel side cannot follow the rules' cgroups: {error}"
                );
                return;
            }
        };
        if !changed.is_empty() {
            self.arm_pressure();
        }
        let rules = &self.in_force.rules;
        for (index, present) in changed {
            let rule = rules.get(index);
            let cgroup = rule
                .selector
                .cgroup
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            match present {
                true => {
                    tracing::info!(event = "cgroup_appeared", rule = %rule.name, "cgroup {cgroup} exists now; its processes are watched")
                }
                false => {
                    tracing::warn!(event = "cgroup_missing", rule = %rule.name, "cgroup {cgroup} was removed; the rule matches nothing until it exists again")
                }
            }
        }
    }
}
