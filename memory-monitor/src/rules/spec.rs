//! One rule as it is given, on the command line or in a rules file, and the one place where
//! it is checked and completed: [`RuleSpec::build`]. Each front end parses the values its own
//! way (clap's parsers, the file's scalars) and says a mistake its own way (an option; a line
//! and a key), but what makes a rule whole is decided here, once.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    DEFAULT_EXEC_TIMEOUT, DEFAULT_PROFILE_AT_PERCENT, DEFAULT_PROFILE_BUDGET, Defaults, Exclude,
    Exec, Leak, Pinned, ProfileSettings, Rule, Selector, WarnAt,
};
use crate::matcher::Matcher;
use crate::rules::act_on::ActOn;
use crate::rules::budget::{DEFAULT_GROUP_SETTLE, GroupBudget, Pick};
use crate::rules::count::Count;
use crate::rules::pressure::{PressureAction, PressureTrigger};
use crate::signal::Signal;
use crate::sink::SinkSpec;
use crate::system::cgroup::CgroupPath;
use crate::units::{self, SizeSpec};

/// `repeat`: a period, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Again this long after the last signal.
    Every(Duration),
    /// Once per breach.
    Never,
}

impl Repeat {
    /// `never` (any case), or a duration.
    pub fn parse(text: &str) -> Result<Repeat, units::UnitError> {
        if text.trim().eq_ignore_ascii_case("never") {
            return Ok(Repeat::Never);
        }
        units::parse_duration(text).map(Repeat::Every)
    }
}

/// One rule as given: every value parsed, nothing combined or defaulted yet. Each field is
/// the setting of the same name: the rules file's key, the command line's option.
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    /// `name`: its label in logs and metrics.
    pub name: String,
    /// `prefix`, `exact`, `regex` or `cmdline` (NAME and `--match`).
    pub matcher: Option<Matcher>,
    /// `cgroup`.
    pub cgroup: Option<CgroupPath>,
    /// `user`: uids, in any order.
    pub users: Vec<u32>,
    /// `--pid` (the command line only).
    pub pids: Vec<Pinned>,
    /// `exclude-name`, `exclude-regex`, `exclude-user`, `exclude-cgroup`.
    pub exclude: Exclude,
    /// `max-memory`.
    pub max_memory: Option<SizeSpec>,
    /// `warn-at`.
    pub warn_at: Option<WarnAt>,
    /// `leak-horizon`.
    pub leak_horizon: Option<Duration>,
    /// `leak-warmup`.
    pub leak_warmup: Option<Duration>,
    /// `leak-sustain`.
    pub leak_sustain: Option<Duration>,
    /// `signal`.
    pub signal: Option<Signal>,
    /// `repeat`.
    pub repeat: Option<Repeat>,
    /// `kill-after`.
    pub kill_after: Option<Duration>,
    /// `exec`.
    pub exec: Option<String>,
    /// `exec-timeout`.
    pub exec_timeout: Option<Duration>,
    /// `profile-dir`.
    pub profile_dir: Option<PathBuf>,
    /// `profile-to`.
    pub profile_to: Option<SinkSpec>,
    /// `profile-budget`.
    pub profile_budget: Option<Duration>,
    /// `profile-at`.
    pub profile_at: Option<u32>,
    /// `count`.
    pub count: Option<Count>,
    /// `act-on`.
    pub act_on: Option<ActOn>,
    /// `group-limit`.
    pub group_limit: Option<SizeSpec>,
    /// `group-pick`.
    pub group_pick: Option<Pick>,
    /// `group-settle`.
    pub group_settle: Option<Duration>,
    /// `on-pressure`.
    pub on_pressure: Option<PressureTrigger>,
    /// `on-high`.
    pub on_high: bool,
    /// `pressure-action`.
    pub pressure_action: Option<PressureAction>,
    /// The decimal unit `max-memory` was written with (`MB`), which is read as binary: said
    /// as a caution (see [`crate::units::decimal_unit`]).
    pub decimal_unit: Option<String>,
}

/// Why a spec makes no rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// It selects no process: no name match, no user, no cgroup, no PID.
    SelectsNothing,
    /// A setting every rule needs is missing.
    Missing(&'static str),
    /// A setting that works only with one of `needs` was given without any.
    Needs {
        /// The setting given.
        setting: &'static str,
        /// The settings it needs one of.
        needs: &'static [&'static str],
    },
    /// Two settings that exclude each other were both given.
    Conflict(&'static str, &'static str),
    /// `act-on = cgroup` on a rule that selects by no cgroup: the cgroup acted on is only
    /// ever the one the rule names.
    NoCgroupToActOn,
    /// A setting's value cannot work.
    Invalid {
        /// The setting.
        setting: &'static str,
        /// Why.
        why: String,
    },
}

impl SpecError {
    /// The setting the mistake is about (where a rules file points), if one is.
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            SpecError::SelectsNothing | SpecError::Missing(_) => None,
            SpecError::NoCgroupToActOn => Some("act-on"),
            SpecError::Needs { setting, .. } | SpecError::Invalid { setting, .. } => Some(setting),
            SpecError::Conflict(_, second) => Some(second),
        }
    }

    /// The same mistake in the command line's words: its options with their dashes.
    pub fn as_options(&self) -> String {
        match self {
            SpecError::SelectsNothing => {
                "the command line's rule selects nothing: give NAME, --user, --pid or --cgroup"
                    .to_string()
            }
            SpecError::Missing(setting) => {
                format!(
                    "the command line's rule (NAME, --user, --pid or --cgroup) needs --{setting}"
                )
            }
            SpecError::Needs { setting, needs } => {
                let needs: Vec<String> = needs.iter().map(|n| format!("--{n}")).collect();
                format!("--{setting} needs {}", needs.join(" or "))
            }
            SpecError::Conflict(first, second) => {
                format!("give --{first} or --{second}, not both")
            }
            SpecError::NoCgroupToActOn => {
                "--act-on cgroup acts on the cgroup the rule selects by, and it selects by none: add --cgroup PATH, or use --act-on process-group".to_string()
            }
            SpecError::Invalid { setting, why } => format!("--{setting} {why}"),
        }
    }
}

/// In a rules file's words: what follows the key it is about (see [`SpecError::setting`]),
/// or the rule.
impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::SelectsNothing => {
                f.write_str("selects nothing: give prefix, exact, regex, cmdline, cmdline-regex, user or cgroup")
            }
            SpecError::Missing(setting) => write!(f, "{setting} is missing"),
            SpecError::Needs { needs, .. } => write!(f, "needs {}", needs.join(" or ")),
            SpecError::Conflict(first, second) => write!(f, "give {first} or {second}, not both"),
            SpecError::NoCgroupToActOn => f.write_str(
                "'cgroup' acts on the cgroup the rule selects by, and it selects by none: add cgroup = \"/path\", or act-on = \"process-group\"",
            ),
            SpecError::Invalid { why, .. } => f.write_str(why),
        }
    }
}

/// Refuses a warning level that is not under the limit where the limit is known now (a size,
/// or a share of RAM); a limit that differs from process to process is checked per process.
fn check_warn_at(warn_at: Option<WarnAt>, limit: SizeSpec) -> Result<(), SpecError> {
    let Some(WarnAt::Bytes(level)) = warn_at else {
        return Ok(());
    };
    if limit.is_per_process() {
        return Ok(());
    }
    let resolved = limit.resolve(crate::system::procfs::total_ram(), None);
    if level < resolved {
        return Ok(());
    }
    Err(SpecError::Invalid {
        setting: "warn-at",
        why: format!(
            "{} is not under the limit ({}): give a smaller size, or a share of the limit such as 80%",
            crate::units::Bytes(level),
            crate::units::Bytes(resolved)
        ),
    })
}

/// The group's budget, if the spec sets one: a size or a share of RAM, the same for every
/// member (a share of each one's cgroup would differ from member to member).
fn group_budget(
    limit: Option<SizeSpec>,
    pick: Option<Pick>,
    settle: Option<Duration>,
) -> Result<Option<GroupBudget>, SpecError> {
    let Some(limit) = limit else {
        return match (pick, settle) {
            (Some(_), _) => Err(SpecError::Needs {
                setting: "group-pick",
                needs: &["group-limit"],
            }),
            (None, Some(_)) => Err(SpecError::Needs {
                setting: "group-settle",
                needs: &["group-limit"],
            }),
            (None, None) => Ok(None),
        };
    };
    if limit.is_per_process() {
        return Err(SpecError::Invalid {
            setting: "group-limit",
            why: "cannot be a share of each process's cgroup, which differs from member to member: give a size, or a share of RAM such as 25%".to_string(),
        });
    }
    let bytes = limit.resolve(crate::system::procfs::total_ram(), None);
    if bytes == 0 {
        return Err(SpecError::Invalid {
            setting: "group-limit",
            why: "resolves to 0 bytes on this machine".to_string(),
        });
    }
    let settle = settle.unwrap_or(DEFAULT_GROUP_SETTLE);
    if settle.is_zero() {
        return Err(SpecError::Invalid {
            setting: "group-settle",
            why: "is 0: give the signalled member time to give its memory back, such as 10s"
                .to_string(),
        });
    }
    Ok(Some(GroupBudget {
        limit: bytes,
        pick: pick.unwrap_or_default(),
        settle,
    }))
}

/// Where profiles go: either setting, one of them.
const PROFILE_DESTINATIONS: &[&str] = &["profile-dir", "profile-to"];

impl RuleSpec {
    /// Checks the spec and completes it with the defaults: SIGTERM, repeats every
    /// `defaults.repeat`, hooks killed after 30 s, profiles captured within 50 ms and growth
    /// sampled from 80 % of the limit.
    pub fn build(self, defaults: Defaults) -> Result<Rule, SpecError> {
        if self.name.trim().is_empty() {
            return Err(SpecError::Invalid {
                setting: "name",
                why: "is empty".to_string(),
            });
        }
        if self.matcher.is_none()
            && self.cgroup.is_none()
            && self.users.is_empty()
            && self.pids.is_empty()
        {
            return Err(SpecError::SelectsNothing);
        }
        let limit = self.max_memory.ok_or(SpecError::Missing("max-memory"))?;
        if limit.resolve(crate::system::procfs::total_ram(), None) == 0 {
            return Err(SpecError::Invalid {
                setting: "max-memory",
                why: "resolves to 0 bytes on this machine".to_string(),
            });
        }
        check_warn_at(self.warn_at, limit)?;
        let leak = Leak::build(self.leak_horizon, self.leak_warmup, self.leak_sustain)?;
        let signal = self.signal.unwrap_or(Signal::TERM);
        if signal.stops() {
            return Err(SpecError::Invalid {
                setting: "signal",
                why: format!(
                    "{signal} stops the process, which keeps all its memory: choose one that ends it (TERM, INT, KILL) or one the program handles"
                ),
            });
        }
        let repeat = match self.repeat {
            Some(Repeat::Every(period)) => Some(period),
            Some(Repeat::Never) => None,
            None => defaults.repeat,
        };
        let exec = match (self.exec, self.exec_timeout) {
            (Some(command), _) if command.trim().is_empty() => {
                return Err(SpecError::Invalid {
                    setting: "exec",
                    why: "is empty".to_string(),
                });
            }
            (Some(command), timeout) => Some(Exec {
                command,
                timeout: timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT),
            }),
            (None, Some(_)) => {
                return Err(SpecError::Needs {
                    setting: "exec-timeout",
                    needs: &["exec"],
                });
            }
            (None, None) => None,
        };
        let sink = match (self.profile_dir, self.profile_to) {
            (Some(_), Some(_)) => return Err(SpecError::Conflict("profile-dir", "profile-to")),
            (Some(dir), None) => Some(SinkSpec::Dir(dir)),
            (None, to) => to,
        };
        let profile = match (sink, self.profile_budget, self.profile_at) {
            (Some(sink), budget, at) => Some(ProfileSettings {
                sink,
                budget: budget.unwrap_or(DEFAULT_PROFILE_BUDGET),
                growth_at_percent: at.unwrap_or(DEFAULT_PROFILE_AT_PERCENT),
            }),
            (None, Some(_), _) => {
                return Err(SpecError::Needs {
                    setting: "profile-budget",
                    needs: PROFILE_DESTINATIONS,
                });
            }
            (None, _, Some(_)) => {
                return Err(SpecError::Needs {
                    setting: "profile-at",
                    needs: PROFILE_DESTINATIONS,
                });
            }
            (None, None, None) => None,
        };
        let (mut users, mut exclude) = (self.users, self.exclude);
        for uids in [&mut users, &mut exclude.users] {
            uids.sort_unstable();
            uids.dedup();
        }
        if let Some(uid) = users
            .iter()
            .find(|uid| exclude.users.binary_search(uid).is_ok())
        {
            return Err(SpecError::Invalid {
                setting: "exclude-user",
                why: format!("leaves out uid {uid}, which the rule selects by user"),
            });
        }
        let act_on = self.act_on.unwrap_or_default();
        if act_on == ActOn::Cgroup {
            let cgroup = self.cgroup.as_ref().ok_or(SpecError::NoCgroupToActOn)?;
            if cgroup.split_last().is_none() {
                return Err(SpecError::Invalid {
                    setting: "act-on",
                    why: "'cgroup' with the root cgroup would signal every process of the host: select by the cgroup below it that is meant".to_string(),
                });
            }
            // cgroup.kill takes the whole cgroup: it cannot spare what the rule leaves out.
            if let Some(inside) = exclude
                .cgroups
                .iter()
                .find(|left_out| cgroup.contains(left_out.as_str().as_bytes()))
            {
                return Err(SpecError::Invalid {
                    setting: "act-on",
                    why: format!(
                        "'cgroup' would reach {inside} too, which the rule leaves out: act on process-group, or stop leaving it out"
                    ),
                });
            }
        }
        let group = group_budget(self.group_limit, self.group_pick, self.group_settle)?;
        if self.on_high && self.cgroup.is_none() {
            return Err(SpecError::Invalid {
                setting: "on-high",
                why: "follows the memory.high of the cgroup the rule selects by, and it selects by none: add a cgroup".to_string(),
            });
        }
        if self.pressure_action.is_some() && self.on_pressure.is_none() && !self.on_high {
            return Err(SpecError::Needs {
                setting: "pressure-action",
                needs: &["on-pressure", "on-high"],
            });
        }
        let cautions = super::caution::of(limit, self.decimal_unit.as_deref(), signal, repeat);
        Ok(Rule {
            name: self.name.trim().to_string(),
            selector: Selector {
                matcher: self.matcher,
                cgroup: self.cgroup,
                users,
                pids: self.pids,
                exclude,
            },
            limit,
            warn_at: self.warn_at,
            leak,
            signal,
            repeat,
            kill_after: self.kill_after,
            exec,
            profile,
            count: self.count.unwrap_or_default(),
            act_on,
            group,
            on_pressure: self.on_pressure,
            on_high: self.on_high,
            pressure_action: self.pressure_action.unwrap_or_default(),
            cautions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::MatchMode;

    const DEFAULTS: Defaults = Defaults {
        repeat: Some(Duration::from_secs(2)),
    };

    fn spec() -> RuleSpec {
        RuleSpec {
            name: "web".to_string(),
            matcher: Some(Matcher::new(MatchMode::Prefix, "my-app").unwrap()),
            max_memory: Some(SizeSpec::Bytes(500 << 20)),
            ..RuleSpec::default()
        }
    }

    #[test]
    fn the_defaults_complete_a_rule() {
        let rule = spec().build(DEFAULTS).unwrap();
        assert_eq!(rule.signal, Signal::TERM);
        assert_eq!(rule.repeat, DEFAULTS.repeat);
        assert_eq!(rule.kill_after, None);
        assert!(rule.exec.is_none() && rule.profile.is_none());
        assert_eq!(rule.act_on, ActOn::Process);
        let never = RuleSpec {
            repeat: Some(Repeat::Never),
            exec: Some("true".to_string()),
            profile_dir: Some(PathBuf::from("/tmp/p")),
            ..spec()
        };
        let rule = never.build(DEFAULTS).unwrap();
        assert_eq!(rule.repeat, None);
        assert_eq!(rule.exec.unwrap().timeout, DEFAULT_EXEC_TIMEOUT);
        let profile = rule.profile.unwrap();
        assert_eq!(profile.sink, SinkSpec::Dir(PathBuf::from("/tmp/p")));
        assert_eq!(profile.budget, DEFAULT_PROFILE_BUDGET);
        assert_eq!(profile.growth_at_percent, DEFAULT_PROFILE_AT_PERCENT);
    }

    #[test]
    fn a_group_budget_is_completed_with_its_defaults_and_refused_when_it_cannot_work() {
        assert_eq!(spec().build(DEFAULTS).unwrap().group, None);
        let budget = RuleSpec {
            group_limit: Some(SizeSpec::Bytes(2 << 30)),
            ..spec()
        };
        assert_eq!(
            budget.build(DEFAULTS).unwrap().group,
            Some(GroupBudget {
                limit: 2 << 30,
                pick: Pick::Largest,
                settle: DEFAULT_GROUP_SETTLE,
            })
        );
        let refused = |spec: RuleSpec| spec.build(DEFAULTS).unwrap_err();
        let pick_alone = refused(RuleSpec {
            group_pick: Some(Pick::Fastest),
            ..spec()
        });
        assert_eq!(pick_alone.as_options(), "--group-pick needs --group-limit");
        let settle_alone = refused(RuleSpec {
            group_settle: Some(Duration::from_secs(5)),
            ..spec()
        });
        assert_eq!(settle_alone.to_string(), "needs group-limit");
        let per_cgroup = refused(RuleSpec {
            group_limit: Some(SizeSpec::PercentOfCgroup(50.0)),
            ..spec()
        });
        assert_eq!(per_cgroup.setting(), Some("group-limit"));
        let no_settle = refused(RuleSpec {
            group_limit: Some(SizeSpec::Bytes(1 << 30)),
            group_settle: Some(Duration::ZERO),
            ..spec()
        });
        assert_eq!(no_settle.setting(), Some("group-settle"));
    }

    #[test]
    fn what_makes_no_rule_is_said_in_the_words_of_each_front_end() {
        let cases = [
            (
                RuleSpec {
                    matcher: None,
                    ..spec()
                },
                "selects nothing: give prefix, exact, regex, cmdline, cmdline-regex, user or cgroup",
                "the command line's rule selects nothing: give NAME, --user, --pid or --cgroup",
            ),
            (
                RuleSpec {
                    max_memory: None,
                    ..spec()
                },
                "max-memory is missing",
                "the command line's rule (NAME, --user, --pid or --cgroup) needs --max-memory",
            ),
            (
                RuleSpec {
                    exec_timeout: Some(Duration::from_secs(1)),
                    ..spec()
                },
                "needs exec",
                "--exec-timeout needs --exec",
            ),
            (
                RuleSpec {
                    profile_at: Some(50),
                    ..spec()
                },
                "needs profile-dir or profile-to",
                "--profile-at needs --profile-dir or --profile-to",
            ),
            (
                RuleSpec {
                    profile_dir: Some(PathBuf::from("/a")),
                    profile_to: Some(SinkSpec::Dir(PathBuf::from("/b"))),
                    ..spec()
                },
                "give profile-dir or profile-to, not both",
                "give --profile-dir or --profile-to, not both",
            ),
            (
                RuleSpec {
                    exec: Some("  ".to_string()),
                    ..spec()
                },
                "is empty",
                "--exec is empty",
            ),
            (
                RuleSpec {
                    max_memory: Some(SizeSpec::Bytes(0)),
                    ..spec()
                },
                "resolves to 0 bytes on this machine",
                "--max-memory resolves to 0 bytes on this machine",
            ),
            (
                RuleSpec {
                    users: vec![33, 0],
                    exclude: Exclude {
                        users: vec![33],
                        ..Exclude::default()
                    },
                    ..spec()
                },
                "leaves out uid 33, which the rule selects by user",
                "--exclude-user leaves out uid 33, which the rule selects by user",
            ),
            (
                RuleSpec {
                    act_on: Some(ActOn::Cgroup),
                    ..spec()
                },
                "'cgroup' acts on the cgroup the rule selects by, and it selects by none: add cgroup = \"/path\", or act-on = \"process-group\"",
                "--act-on cgroup acts on the cgroup the rule selects by, and it selects by none: add --cgroup PATH, or use --act-on process-group",
            ),
            (
                RuleSpec {
                    act_on: Some(ActOn::Cgroup),
                    cgroup: Some(CgroupPath::parse("/").unwrap()),
                    ..spec()
                },
                "'cgroup' with the root cgroup would signal every process of the host: select by the cgroup below it that is meant",
                "--act-on 'cgroup' with the root cgroup would signal every process of the host: select by the cgroup below it that is meant",
            ),
            (
                RuleSpec {
                    act_on: Some(ActOn::Cgroup),
                    cgroup: Some(CgroupPath::parse("/app").unwrap()),
                    exclude: Exclude {
                        cgroups: vec![CgroupPath::parse("/app/backup").unwrap()],
                        ..Exclude::default()
                    },
                    ..spec()
                },
                "'cgroup' would reach /app/backup too, which the rule leaves out: act on process-group, or stop leaving it out",
                "--act-on 'cgroup' would reach /app/backup too, which the rule leaves out: act on process-group, or stop leaving it out",
            ),
            (
                RuleSpec {
                    on_high: true,
                    ..spec()
                },
                "follows the memory.high of the cgroup the rule selects by, and it selects by none: add a cgroup",
                "--on-high follows the memory.high of the cgroup the rule selects by, and it selects by none: add a cgroup",
            ),
            (
                RuleSpec {
                    pressure_action: Some(PressureAction::SignalLargest),
                    ..spec()
                },
                "needs on-pressure or on-high",
                "--pressure-action needs --on-pressure or --on-high",
            ),
            (
                RuleSpec {
                    warn_at: Some(WarnAt::Bytes(500 << 20)),
                    ..spec()
                },
                "500.0MiB is not under the limit (500.0MiB): give a smaller size, or a share of the limit such as 80%",
                "--warn-at 500.0MiB is not under the limit (500.0MiB): give a smaller size, or a share of the limit such as 80%",
            ),
        ];
        for (spec, in_file, on_command_line) in cases {
            let error = spec.build(DEFAULTS).unwrap_err();
            assert_eq!(error.to_string(), in_file);
            assert_eq!(error.as_options(), on_command_line);
        }
    }
}
