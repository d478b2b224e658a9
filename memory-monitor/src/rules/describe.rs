//! What `--check-config` prints: the rules in words, and what is doubtful about them.

use crate::rules::RuleSet;
use crate::units;

/// What `--check-config` prints: the rules in force, one paragraph each.
pub fn describe_rules(rules: &RuleSet) -> String {
    let mut text = String::new();
    for rule in rules.all() {
        text += &format!(
            "rule '{}': {}
",
            rule.name, rule.selector
        );
        text += &format!(
            "  limit: {}
",
            rule.limit
        );
        if let Some(warn_at) = rule.warn_at {
            text += &format!(
                "  warning: at {warn_at}, once per episode, no signal
"
            );
        }
        if let Some(leak) = rule.leak {
            text += &format!(
                "  leak trend: named when the limit is {} away or less, growth sustained {}, after a warm-up of {}\n",
                units::Period(leak.horizon),
                units::Period(leak.sustain),
                units::Period(leak.warmup)
            );
        }
        let mut action = rule.signal.to_string();
        if let Some(reach) = rule.act_on.phrase() {
            action += &format!(" {reach}");
        }
        match rule.repeat {
            Some(period) => {
                action += &format!(", again every {} while over", units::Period(period))
            }
            None => action += ", once per breach",
        }
        if let Some(kill_after) = rule.kill_after {
            action += &format!(", SIGKILL {} after the first", units::Period(kill_after));
        }
        text += &format!(
            "  action: {action}
"
        );
        if let Some(group) = &rule.group {
            text += &format!(
                "  group: {}
",
                group.phrase()
            );
        }
        if let Some(trigger) = rule.on_pressure {
            let scope = match &rule.selector.cgroup {
                Some(cgroup) => format!("cgroup {cgroup}"),
                None => "the host".to_string(),
            };
            text += &format!(
                "  on pressure: {trigger} of {scope}, {}\n",
                rule.pressure_action
            );
        }
        if let (true, Some(cgroup)) = (rule.on_high, &rule.selector.cgroup) {
            text += &format!(
                "  on memory.high: cgroup {cgroup} throttled, {}\n",
                rule.pressure_action
            );
        }
        if let Some(exec) = &rule.exec {
            text += &format!(
                "  exec: {} (timeout {})
",
                exec.command,
                units::Period(exec.timeout)
            );
        }
        if let Some(profile) = &rule.profile {
            text += &format!(
                "  profile: to {}
",
                profile.sink
            );
        }
    }
    for rule in rules.missing_cgroups() {
        text += &format!(
            "warning: rule '{}': its cgroup does not exist (yet); the monitor waits for it, and the rule selects nothing until it is made\n",
            rule.name
        );
    }
    for rule in rules.all() {
        for caution in &rule.cautions {
            text += &format!("warning: rule '{}': {caution}\n", rule.name);
        }
    }
    text
}
