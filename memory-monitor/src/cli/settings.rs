//! What a parsed command line means: the monitor's [`Config`] (with the rule the options make,
//! built and checked by the rules, as a rules file's are) and how to log.

use super::{Cli, Settings, UsageError};
use crate::config::{Config, Hardening, Mode, RulesSource};
use crate::host::logging::LogSettings;
use crate::matcher::Matcher;
use crate::rules::{COMMAND_LINE_RULE, Defaults, Exclude, Pinned, Rule, RuleSpec};
use crate::units::SizeSpec;

impl Cli {
    pub(super) fn into_settings(self) -> Result<Settings, UsageError> {
        let usage = |message: &str| UsageError(message.to_string());
        let command_line = self.command_line_rule()?;
        let source = RulesSource {
            command_line,
            file: self.config.clone(),
            defaults: self.defaults(),
            watch: self.watch_config,
        };
        let rules = source.load().map_err(|e| UsageError(e.to_string()))?;
        if self.kernel_signal && self.mode == Mode::Poll {
            return Err(usage("--kernel-signal needs eBPF mode, not --mode poll"));
        }
        if self.bpf_stats && self.mode == Mode::Poll {
            return Err(usage("--bpf-stats needs eBPF mode, not --mode poll"));
        }
        let verbosity = self.verbose.min(2) as i8 - self.quiet.min(2) as i8;
        Ok(Settings {
            config: Config {
                rules,
                source,
                interval: self.interval,
                dry_run: self.dry_run,
                once: self.once,
                max_processes: self.max_processes,
                mode: self.mode,
                kernel_signal: self.kernel_signal,
                bpf_stats: self.bpf_stats,
                attach: self.attach,
                metrics_addr: self.metrics_addr,
                harden: Some(Hardening {
                    oom_score_adj: self.oom_score_adj,
                }),
            },
            log: LogSettings {
                verbosity,
                format: self.log_format,
            },
            check_only: self.check_config,
            list: self.list,
        })
    }

    /// The rule NAME, --pid and --cgroup make with the options that shape a rule; none when
    /// they are not given (then a rules file must be).
    fn command_line_rule(&self) -> Result<Option<Rule>, UsageError> {
        let selects = self.name.is_some()
            || !self.pids.is_empty()
            || self.cgroup.is_some()
            || !self.users.is_empty();
        if !selects {
            let rule_options = [
                ("--exclude-name", !self.exclude_names.is_empty()),
                ("--exclude-regex", !self.exclude_regexes.is_empty()),
                ("--exclude-user", !self.exclude_users.is_empty()),
                ("--exclude-cgroup", !self.exclude_cgroups.is_empty()),
                ("--max-memory", self.max_memory.is_some()),
                ("--warn-at", self.warn_at.is_some()),
                ("--leak-horizon", self.leak_horizon.is_some()),
                ("--leak-warmup", self.leak_warmup.is_some()),
                ("--leak-sustain", self.leak_sustain.is_some()),
                ("--signal", self.signal.is_some()),
                ("--repeat", self.repeat.is_some()),
                ("--kill-after", self.kill_after.is_some()),
                ("--exec", self.exec.is_some()),
                ("--exec-timeout", self.exec_timeout.is_some()),
                ("--profile-dir", self.profile_dir.is_some()),
                ("--profile-to", self.profile_to.is_some()),
                ("--profile-budget", self.profile_budget.is_some()),
                ("--profile-at", self.profile_at.is_some()),
                ("--count", self.count.is_some()),
                ("--act-on", self.act_on.is_some()),
                ("--group-limit", self.group_limit.is_some()),
                ("--group-pick", self.group_pick.is_some()),
                ("--group-settle", self.group_settle.is_some()),
                ("--on-pressure", self.on_pressure.is_some()),
                ("--on-high", self.on_high),
                ("--pressure-action", self.pressure_action.is_some()),
            ];
            if let Some((option, _)) = rule_options.iter().find(|(_, given)| *given) {
                return Err(UsageError(format!(
                    "{option} shapes the command line's rule, which needs NAME, --user, --pid or --cgroup; with --config alone, set it in the rules file"
                )));
            }
            return Ok(None);
        }
        let matcher = match &self.name {
            Some(name) => {
                Some(Matcher::new(self.match_mode, name).map_err(|e| UsageError(e.to_string()))?)
            }
            None => None,
        };
        let spec = RuleSpec {
            name: COMMAND_LINE_RULE.to_string(),
            matcher,
            cgroup: self.cgroup.clone(),
            users: self.users.clone(),
            pids: self.pinned()?,
            exclude: Exclude {
                names: self.exclude_names.clone(),
                regexes: self.exclude_regexes.clone(),
                users: self.exclude_users.clone(),
                cgroups: self.exclude_cgroups.clone(),
            },
            // --list needs no limit: its USED column is then the share of RAM.
            max_memory: match (self.max_memory, self.list) {
                (None, true) => Some(SizeSpec::PercentOfRam(100.0)),
                (limit, _) => limit,
            },
            warn_at: self.warn_at,
            leak_horizon: self.leak_horizon,
            leak_warmup: self.leak_warmup,
            leak_sustain: self.leak_sustain,
            signal: self.signal,
            repeat: self.repeat,
            kill_after: self.kill_after,
            exec: self.exec.clone(),
            exec_timeout: self.exec_timeout,
            profile_dir: self.profile_dir.clone(),
            profile_to: self.profile_to.clone(),
            profile_budget: self.profile_budget,
            profile_at: self.profile_at,
            count: self.count,
            act_on: self.act_on,
            group_limit: self.group_limit,
            group_pick: self.group_pick,
            group_settle: self.group_settle,
            on_pressure: self.on_pressure,
            on_high: self.on_high,
            pressure_action: self.pressure_action,
            decimal_unit: self.decimal_unit.clone(),
        };
        spec.build(self.defaults())
            .map(Some)
            .map_err(|e| UsageError(e.as_options()))
    }

    /// What the rules take from the command line when they do not say.
    fn defaults(&self) -> Defaults {
        Defaults {
            repeat: Some(self.interval),
        }
    }

    /// The `--pid` processes, each known from now on by its PID and start time.
    fn pinned(&self) -> Result<Vec<Pinned>, UsageError> {
        if self.pids.is_empty() {
            return Ok(Vec::new());
        }
        let proc = crate::system::procfs::ProcRoot::open()
            .map_err(|e| UsageError(format!("--pid: cannot read /proc: {e}")))?;
        let mut pids = self
            .pids
            .iter()
            .map(|&pid| {
                Pinned::now(&proc, pid).ok_or_else(|| {
                    UsageError(format!(
                        "invalid value '{pid}' for '--pid <PID>': no such process"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        pids.sort_unstable_by_key(|p| p.pid);
        pids.dedup();
        Ok(pids)
    }
}
