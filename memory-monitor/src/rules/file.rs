//! Rules files (`--config rules.toml`): TOML, one `[[rule]]` table per rule, each key the name
//! of the command-line option that means the same. A mistake is said in one line naming the
//! file, the line and the key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::spec::{Repeat, RuleSpec};
use super::{COMMAND_LINE_RULE, Defaults, Exclude, MAX_RULES, Rule, RulesError, SetFault, WarnAt};
use crate::choice::Choice as _;
use crate::matcher::{MatchMode, Matcher};
use crate::rules::act_on::ActOn;
use crate::rules::budget::Pick;
use crate::rules::count::Count;
use crate::rules::pressure::{PressureAction, PressureTrigger};
use crate::signal::Signal;
use crate::sink::SinkSpec;
use crate::system::cgroup::CgroupPath;
use crate::system::users;
use crate::units;

/// A string or a number: sizes, durations, signals and percentages may be written either way
/// (`max-memory = 500` is 500 MiB, as `-m 500`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(text) => text.clone(),
            Scalar::Integer(n) => n.to_string(),
            Scalar::Float(x) => x.to_string(),
        }
    }
}

/// One value or a list of them (`user = "www-data"`, `user = ["www-data", 33]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalars {
    One(Scalar),
    Many(Vec<Scalar>),
}

impl Scalars {
    fn texts(&self) -> Vec<String> {
        match self {
            Scalars::One(one) => vec![one.text()],
            Scalars::Many(many) => many.iter().map(Scalar::text).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRule {
    name: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    exact: Option<Spanned<String>>,
    regex: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    cmdline_regex: Option<Spanned<String>>,
    cgroup: Option<Spanned<String>>,
    user: Option<Spanned<Scalars>>,
    exclude_name: Option<Spanned<Scalars>>,
    exclude_regex: Option<Spanned<Scalars>>,
    exclude_user: Option<Spanned<Scalars>>,
    exclude_cgroup: Option<Spanned<Scalars>>,
    max_memory: Option<Spanned<Scalar>>,
    warn_at: Option<Spanned<Scalar>>,
    leak_horizon: Option<Spanned<Scalar>>,
    leak_warmup: Option<Spanned<Scalar>>,
    leak_sustain: Option<Spanned<Scalar>>,
    signal: Option<Spanned<Scalar>>,
    repeat: Option<Spanned<Scalar>>,
    kill_after: Option<Spanned<Scalar>>,
    exec: Option<Spanned<String>>,
    exec_timeout: Option<Spanned<Scalar>>,
    profile_dir: Option<Spanned<String>>,
    profile_to: Option<Spanned<String>>,
    profile_budget: Option<Spanned<Scalar>>,
    profile_at: Option<Spanned<Scalar>>,
    count: Option<Spanned<String>>,
    act_on: Option<Spanned<String>>,
    group_limit: Option<Spanned<Scalar>>,
    group_pick: Option<Spanned<String>>,
    group_settle: Option<Spanned<Scalar>>,
    on_pressure: Option<Spanned<String>>,
    on_high: Option<Spanned<bool>>,
    pressure_action: Option<Spanned<String>>,
}

/// Reads the rules in the file at `path`, once it is trusted: its `exec` entries run as the
/// monitor's user, so a file someone else may change is refused (see `host::trust`).
pub fn load_file(path: &Path, defaults: Defaults) -> Result<Vec<Rule>, RulesError> {
    let read = |reason: String| RulesError::Read {
        file: path.to_path_buf(),
        reason,
    };
    let mut file = crate::host::trust::open_trusted_file(path).map_err(|e| read(e.to_string()))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(|e| read(e.to_string()))?;
    parse_file(path, &text, defaults)
}

/// Parses the text of rules file `path`.
pub fn parse_file(path: &Path, text: &str, defaults: Defaults) -> Result<Vec<Rule>, RulesError> {
    let file = FileText { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| file.toml_error(&e))?;
    if raw.rule.is_empty() {
        return Err(file.error(
            0..0,
            None,
            "no [[rule]] tables: nothing to watch".to_string(),
        ));
    }
    let rules = raw
        .rule
        .iter()
        .enumerate()
        .map(|(index, raw)| file.rule(index, raw, defaults))
        .collect::<Result<Vec<Rule>, _>>()?;
    let at = |index: usize| {
        let raw = &raw.rule[index];
        raw.get_ref()
            .name
            .as_ref()
            .map_or_else(|| raw.span(), Spanned::span)
    };
    if let Some(index) = rules.iter().position(|rule| rule.name == COMMAND_LINE_RULE) {
        return Err(file.error(
            at(index),
            Some("name"),
            format!("'{COMMAND_LINE_RULE}' names the command line's rule; choose another"),
        ));
    }
    if let Some(fault) = SetFault::of(&rules) {
        let (span, field) = match fault {
            SetFault::TooMany(_) => (raw.rule[MAX_RULES].span(), None),
            SetFault::NameTwice { index, .. } => (at(index), Some("name")),
            SetFault::Empty => (0..0, None),
        };
        return Err(file.error(span, field, fault.to_string()));
    }
    Ok(rules)
}

/// serde's "unknown field `maxmemory`, expected one of `name`, …" (every key: over 400
/// characters) in words a person reads at a glance: the key, and the known one nearest to it.
fn unknown_key(message: &str) -> Option<String> {
    let (key, rest) = message.strip_prefix("unknown field `")?.split_once('`')?;
    let nearest = quoted(rest)
        .map(|known| (strsim::jaro_winkler(key, known), known))
        .filter(|(likeness, _)| *likeness >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let every = "every key is in the man page's RULES FILE section (memory-monitor --manual)";
    Some(match nearest {
        Some((_, known)) => format!("unknown key '{key}': did you mean '{known}'? ({every})"),
        None => format!("unknown key '{key}' ({every})"),
    })
}

/// The names serde quotes in `text` (`name`, `prefix`, …).
fn quoted(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

/// Every key a rule may have, as the reader knows them: serde names them all when it meets a
/// key it does not know.
#[cfg(test)]
pub(crate) fn keys() -> Vec<String> {
    let error = toml::from_str::<RawFile>("[[rule]]\n\"?\" = 0\n").expect_err("no key is '?'");
    let message = error.message().to_string();
    let (_, known) = message.split_once("expected one of").expect("the keys");
    quoted(known).map(str::to_string).collect()
}

/// A rules file being read, for errors that point into it.
struct FileText<'a> {
    path: &'a Path,
    text: &'a str,
}

impl FileText<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text[..offset].matches('\n').count() + 1
    }

    fn error(&self, span: Range<usize>, field: Option<&str>, message: String) -> RulesError {
        RulesError::File {
            file: self.path.to_path_buf(),
            line: self.line_of(span.start),
            field: field.map(str::to_string),
            message,
        }
    }

    /// A TOML error on one line: names the key written at the start of that line, if any.
    fn toml_error(&self, error: &toml::de::Error) -> RulesError {
        let span = error.span().unwrap_or(0..0);
        let line = self.line_of(span.start);
        let key = self
            .text
            .lines()
            .nth(line - 1)
            .and_then(|text| text.split_once('='))
            .map(|(key, _)| key.trim().trim_matches('"').to_string())
            .filter(|key| !key.is_empty() && !key.contains([' ', '[']));
        let message = error.message().trim().replace('\n', " ");
        let message = unknown_key(&message).unwrap_or(message);
        self.error(span, key.as_deref(), message)
    }

    /// Rule `index` of the file (`raw`), checked and completed by [`RuleSpec::build`].
    fn rule(
        &self,
        index: usize,
        raw: &Spanned<RawRule>,
        defaults: Defaults,
    ) -> Result<Rule, RulesError> {
        let span = raw.span();
        let raw = raw.get_ref();
        let name = match &raw.name {
            Some(name) => name.get_ref().trim().to_string(),
            None => format!("rule-{}", index + 1),
        };
        let fail = |span: Range<usize>, key: &str, message: String| {
            self.error(span, Some(&format!("rule '{name}': {key}")), message)
        };
        let duration = |value: &Option<Spanned<Scalar>>, key: &str| {
            value
                .as_ref()
                .map(|value| {
                    parse_scalar(value, |t| {
                        units::parse_duration(t).map_err(|e| e.to_string())
                    })
                    .map_err(|(span, why)| fail(span, key, why))
                })
                .transpose()
        };
        let user = |text: &str| users::parse_user(text).map_err(|e| format!("'{text}': {e}"));
        let named = |mode| move |text: &str| Matcher::new(mode, text).map_err(|e| e.to_string());
        let cgroup = |text: &str| CgroupPath::parse(text).map_err(|e| e.to_string());
        let spec = RuleSpec {
            name: name.clone(),
            matcher: self.matcher(raw, &fail)?,
            users: each(&raw.user, "user", &fail, user)?,
            exclude: Exclude {
                names: each(
                    &raw.exclude_name,
                    "exclude-name",
                    &fail,
                    named(MatchMode::Exact),
                )?,
                regexes: each(
                    &raw.exclude_regex,
                    "exclude-regex",
                    &fail,
                    named(MatchMode::Regex),
                )?,
                users: each(&raw.exclude_user, "exclude-user", &fail, user)?,
                cgroups: each(&raw.exclude_cgroup, "exclude-cgroup", &fail, cgroup)?,
            },
            cgroup: match &raw.cgroup {
                Some(value) => Some(
                    CgroupPath::parse(value.get_ref())
                        .map_err(|e| fail(value.span(), "cgroup", e.to_string()))?,
                ),
                None => None,
            },
            pids: Vec::new(),
            max_memory: match &raw.max_memory {
                Some(value) => Some(
                    parse_scalar(value, |t| units::parse_size(t).map_err(|e| e.to_string()))
                        .map_err(|(span, why)| fail(span, "max-memory", why))?,
                ),
                None => None,
            },
            warn_at: match &raw.warn_at {
                Some(value) => Some(
                    parse_scalar(value, WarnAt::parse)
                        .map_err(|(span, why)| fail(span, "warn-at", why))?,
                ),
                None => None,
            },
            signal: match &raw.signal {
                Some(value) => Some(
                    parse_scalar(value, |t| t.parse::<Signal>().map_err(|e| e.to_string()))
                        .map_err(|(span, why)| fail(span, "signal", why))?,
                ),
                None => None,
            },
            repeat: match &raw.repeat {
                Some(value) => Some(
                    parse_scalar(value, |t| Repeat::parse(t).map_err(|e| e.to_string()))
                        .map_err(|(span, why)| fail(span, "repeat", why))?,
                ),
                None => None,
            },
            kill_after: duration(&raw.kill_after, "kill-after")?,
            leak_horizon: duration(&raw.leak_horizon, "leak-horizon")?,
            leak_warmup: duration(&raw.leak_warmup, "leak-warmup")?,
            leak_sustain: duration(&raw.leak_sustain, "leak-sustain")?,
            exec: raw.exec.as_ref().map(|command| command.get_ref().clone()),
            exec_timeout: duration(&raw.exec_timeout, "exec-timeout")?,
            profile_dir: raw
                .profile_dir
                .as_ref()
                .map(|dir| PathBuf::from(dir.get_ref())),
            profile_to: match &raw.profile_to {
                Some(to) => Some(
                    to.get_ref()
                        .parse::<SinkSpec>()
                        .map_err(|e| fail(to.span(), "profile-to", e.to_string()))?,
                ),
                None => None,
            },
            profile_budget: duration(&raw.profile_budget, "profile-budget")?,
            profile_at: match &raw.profile_at {
                Some(value) => Some(
                    parse_scalar(value, units::parse_percent)
                        .map_err(|(span, why)| fail(span, "profile-at", why))?,
                ),
                None => None,
            },
            count: match &raw.count {
                Some(count) => Some(
                    Count::parse(count.get_ref())
                        .map_err(|e| fail(count.span(), "count", e.to_string()))?,
                ),
                None => None,
            },
            act_on: match &raw.act_on {
                Some(act_on) => Some(
                    ActOn::parse(act_on.get_ref())
                        .map_err(|e| fail(act_on.span(), "act-on", e.to_string()))?,
                ),
                None => None,
            },
            group_limit: match &raw.group_limit {
                Some(value) => Some(
                    parse_scalar(value, |t| units::parse_size(t).map_err(|e| e.to_string()))
                        .map_err(|(span, why)| fail(span, "group-limit", why))?,
                ),
                None => None,
            },
            group_pick: match &raw.group_pick {
                Some(pick) => Some(
                    Pick::parse(pick.get_ref())
                        .map_err(|e| fail(pick.span(), "group-pick", e.to_string()))?,
                ),
                None => None,
            },
            group_settle: duration(&raw.group_settle, "group-settle")?,
            on_pressure: match &raw.on_pressure {
                Some(on) => Some(
                    PressureTrigger::parse(on.get_ref())
                        .map_err(|why| fail(on.span(), "on-pressure", why))?,
                ),
                None => None,
            },
            on_high: raw.on_high.as_ref().is_some_and(|on| *on.get_ref()),
            pressure_action: match &raw.pressure_action {
                Some(action) => Some(
                    PressureAction::parse(action.get_ref())
                        .map_err(|e| fail(action.span(), "pressure-action", e.to_string()))?,
                ),
                None => None,
            },
            decimal_unit: raw
                .max_memory
                .as_ref()
                .and_then(|value| units::decimal_unit(&value.get_ref().text())),
        };
        spec.build(defaults).map_err(|error| {
            // At the key it is about, or at the rule.
            let at = error.setting().and_then(|key| raw.span_of(key));
            match at {
                Some(at) => fail(at, error.setting().unwrap_or_default(), error.to_string()),
                None => self.error(span, Some(&format!("rule '{name}'")), error.to_string()),
            }
        })
    }

    /// The rule's name match: at most one of `prefix`, `exact`, `regex`, `cmdline` and
    /// `cmdline-regex`.
    fn matcher(
        &self,
        raw: &RawRule,
        fail: &dyn Fn(Range<usize>, &str, String) -> RulesError,
    ) -> Result<Option<Matcher>, RulesError> {
        let matches = [
            ("prefix", MatchMode::Prefix, &raw.prefix),
            ("exact", MatchMode::Exact, &raw.exact),
            ("regex", MatchMode::Regex, &raw.regex),
            ("cmdline", MatchMode::Cmdline, &raw.cmdline),
            ("cmdline-regex", MatchMode::CmdlineRegex, &raw.cmdline_regex),
        ];
        let mut given = matches.iter().filter(|(_, _, value)| value.is_some());
        match (given.next(), given.next()) {
            (Some((a, _, _)), Some((b, _, value))) => {
                let span = value.as_ref().expect("given").span();
                Err(fail(
                    span,
                    b,
                    format!("a rule matches names one way: '{a}' or '{b}', not both"),
                ))
            }
            (Some((key, mode, value)), None) => {
                let value = value.as_ref().expect("given");
                Matcher::new(*mode, value.get_ref())
                    .map(Some)
                    .map_err(|e| fail(value.span(), key, e.to_string()))
            }
            (None, _) => Ok(None),
        }
    }
}

impl RawRule {
    /// Where the value of `key` is written, when it is.
    fn span_of(&self, key: &str) -> Option<Range<usize>> {
        let text = |value: &Option<Spanned<String>>| value.as_ref().map(Spanned::span);
        let scalar = |value: &Option<Spanned<Scalar>>| value.as_ref().map(Spanned::span);
        match key {
            "exclude-user" => self.exclude_user.as_ref().map(Spanned::span),
            "name" => text(&self.name),
            "max-memory" => scalar(&self.max_memory),
            "warn-at" => scalar(&self.warn_at),
            "leak-horizon" => scalar(&self.leak_horizon),
            "leak-warmup" => scalar(&self.leak_warmup),
            "leak-sustain" => scalar(&self.leak_sustain),
            "signal" => scalar(&self.signal),
            "repeat" => scalar(&self.repeat),
            "exec" => text(&self.exec),
            "exec-timeout" => scalar(&self.exec_timeout),
            "profile-dir" => text(&self.profile_dir),
            "profile-to" => text(&self.profile_to),
            "profile-budget" => scalar(&self.profile_budget),
            "profile-at" => scalar(&self.profile_at),
            "count" => text(&self.count),
            "act-on" => text(&self.act_on),
            "group-limit" => scalar(&self.group_limit),
            "group-pick" => text(&self.group_pick),
            "group-settle" => scalar(&self.group_settle),
            "on-pressure" => text(&self.on_pressure),
            "on-high" => self.on_high.as_ref().map(Spanned::span),
            "pressure-action" => text(&self.pressure_action),
            _ => None,
        }
    }
}

/// Each value of list key `key` (one value or an array), parsed by `parse`; a mistake is
/// said by `fail` at the key.
fn each<T>(
    value: &Option<Spanned<Scalars>>,
    key: &str,
    fail: &dyn Fn(Range<usize>, &str, String) -> RulesError,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, RulesError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .get_ref()
        .texts()
        .iter()
        .map(|text| parse(text).map_err(|why| fail(value.span(), key, why)))
        .collect()
}

/// Parses a scalar value with `parse`; on failure, where it is and why.
fn parse_scalar<T, E: fmt::Display>(
    value: &Spanned<Scalar>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, (Range<usize>, String)> {
    let text = value.get_ref().text();
    parse(&text).map_err(|why| (value.span(), format!("'{text}': {why}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rules::{DEFAULT_PROFILE_BUDGET, Exec};
    use crate::units::SizeSpec;

    const DEFAULTS: Defaults = Defaults {
        repeat: Some(Duration::from_secs(2)),
    };

    fn parse(text: &str) -> Result<Vec<Rule>, RulesError> {
        parse_file(Path::new("rules.toml"), text, DEFAULTS)
    }

    fn error(text: &str) -> String {
        let error = parse(text).unwrap_err().to_string();
        assert!(!error.contains('\n'), "one line: {error}");
        error
    }

    #[test]
    fn a_full_rule() {
        let rules = parse(
            r#"
            # the web tier
            [[rule]]
            name = "web"
            prefix = "my-app"
            max-memory = "500M"
            warn-at = "80%"
            leak-horizon = "6h"
            leak-sustain = "1h"
            signal = "USR1"
            repeat = "never"
            kill-after = "30s"
            exec = "echo $MM_PID"
            exec-timeout = 5
            profile-to = "dir:/tmp/profiles"
            profile-at = "50%"
            act-on = "process-group"

            [[rule]]
            cmdline = "app.jar"
            max-memory = 100
            "#,
        )
        .unwrap();
        let web = &rules[0];
        assert_eq!(web.name, "web");
        assert_eq!(
            web.selector.to_string(),
            "processes whose name starts with 'my-app'"
        );
        assert_eq!(web.limit, SizeSpec::Bytes(500 << 20));
        assert_eq!(
            web.warn_at,
            Some(crate::rules::WarnAt::PercentOfLimit(80.0))
        );
        assert_eq!(
            web.leak,
            Some(crate::rules::Leak {
                horizon: Duration::from_secs(6 * 3600),
                warmup: crate::rules::DEFAULT_LEAK_WARMUP,
                sustain: Duration::from_secs(3600),
            })
        );
        assert_eq!(web.signal.number(), libc::SIGUSR1);
        assert_eq!(web.repeat, None);
        assert_eq!(web.kill_after, Some(Duration::from_secs(30)));
        assert_eq!(
            web.exec,
            Some(Exec {
                command: "echo $MM_PID".to_string(),
                timeout: Duration::from_secs(5)
            })
        );
        let profile = web.profile.as_ref().unwrap();
        assert_eq!(profile.growth_at_percent, 50);
        assert_eq!(profile.budget, DEFAULT_PROFILE_BUDGET);
        let second = &rules[1];
        assert_eq!(second.name, "rule-2");
        assert_eq!(second.limit, SizeSpec::Bytes(100 << 20));
        assert_eq!(second.signal, Signal::TERM);
        assert_eq!(second.repeat, DEFAULTS.repeat);
        assert_eq!(web.act_on, ActOn::ProcessGroup);
        assert_eq!(second.act_on, ActOn::Process);
        assert_eq!(second.warn_at, None);
        assert_eq!(second.leak, None);
    }

    #[test]
    fn cgroup_rules() {
        let rules = parse(
            "[[rule]]\ncgroup = \"/system.slice/web.service\"\nmax-memory = \"90% of cgroup\"\n",
        )
        .unwrap();
        let rule = &rules[0];
        assert_eq!(
            rule.selector.to_string(),
            "processes in cgroup /system.slice/web.service"
        );
        assert!(rule.limit.is_per_process());
        let whole =
            parse("[[rule]]\ncgroup = \"/web.service\"\nmax-memory = 1\nact-on = \"cgroup\"\n");
        assert_eq!(whole.unwrap()[0].act_on, ActOn::Cgroup);
    }

    #[test]
    fn pressure_and_memory_high_triggers() {
        let rules = parse(
            "[[rule]]\ncgroup = \"/batch\"\nmax-memory = 1\non-pressure = \"full:100ms/2s\"\non-high = true\npressure-action = \"signal-largest\"\n\n[[rule]]\nprefix = \"a\"\nmax-memory = 1\non-pressure = \"some:150ms/1s\"\n\n[[rule]]\nprefix = \"b\"\nmax-memory = 1\non-pressure = \"some:150ms/1s\"\npressure-action = \"signal-fastest\"\n",
        )
        .unwrap();
        let batch = &rules[0];
        assert_eq!(batch.on_pressure.unwrap().to_string(), "full:100ms/2s");
        assert!(batch.on_high);
        assert_eq!(batch.pressure_action, PressureAction::SignalLargest);
        assert!(!rules[1].on_high);
        assert_eq!(rules[1].pressure_action, PressureAction::Report);
        assert_eq!(rules[2].pressure_action, PressureAction::SignalFastest);
        let rule = |lines: &str| {
            format!("[[rule]]\nname = \"r\"\nprefix = \"a\"\nmax-memory = 1\n{lines}\n")
        };
        for (lines, said) in [
            (
                "on-pressure = \"some:1s/20s\"",
                "rules.toml:5: rule 'r': on-pressure: 'some:1s/20s': the kernel takes a window from 500ms to 10s",
            ),
            (
                "on-high = true",
                "rules.toml:5: rule 'r': on-high: follows the memory.high of the cgroup the rule selects by, and it selects by none: add a cgroup",
            ),
            (
                "pressure-action = \"signal-largest\"",
                "rules.toml:5: rule 'r': pressure-action: needs on-pressure or on-high",
            ),
            (
                "on-pressure = \"some:1s/2s\"\npressure-action = \"kill-all\"",
                "rules.toml:6: rule 'r': pressure-action: 'kill-all' is not one of report, signal-largest, signal-fastest",
            ),
        ] {
            assert_eq!(error(&rule(lines)), said);
        }
    }

    #[test]
    fn users_exclusions_and_command_line_regexes() {
        let rules = parse(
            r#"
            [[rule]]
            name = "web"
            prefix = "my-app"
            user = ["root", 4242]
            exclude-name = "my-app-cron"
            exclude-regex = ["^my-app-t[0-9]+$"]
            exclude-user = 4243
            exclude-cgroup = ["/system.slice/backup.service"]
            max-memory = "500M"

            [[rule]]
            user = "root"
            max-memory = 100

            [[rule]]
            cmdline-regex = "java .*-jar app-[0-9]+[.]jar"
            max-memory = 100
            "#,
        )
        .unwrap();
        let web = &rules[0].selector;
        assert_eq!(web.users, [0, 4242]);
        assert_eq!(web.exclude.names.len(), 1);
        assert_eq!(web.exclude.regexes.len(), 1);
        assert_eq!(web.exclude.users, [4243]);
        assert_eq!(web.exclude.cgroups.len(), 1);
        assert_eq!(
            web.to_string(),
            "processes whose name starts with 'my-app' of user root, 4242, except processes named 'my-app-cron', processes whose name matches /^my-app-t[0-9]+$/, processes of user 4243, processes in cgroup /system.slice/backup.service"
        );
        assert_eq!(rules[1].selector.to_string(), "processes of user root");
        assert_eq!(
            rules[2].selector.to_string(),
            "processes whose command line matches /java .*-jar app-[0-9]+[.]jar/"
        );
    }

    #[test]
    fn bad_users_exclusions_and_regexes_name_the_line_and_the_key() {
        let rule = |line: &str| {
            format!("[[rule]]\nname = \"r\"\nprefix = \"a\"\n{line}\nmax-memory = 100\n")
        };
        let cases = [
            (
                "user = \"no-such-user-here\"",
                "rules.toml:4: rule 'r': user: 'no-such-user-here': no such user in /etc/passwd",
            ),
            (
                "user = [\"root\", \"\"]",
                "rules.toml:4: rule 'r': user: '': is empty; give a user name or a uid",
            ),
            (
                "exclude-user = [\"no-such-user-here\"]",
                "rules.toml:4: rule 'r': exclude-user: 'no-such-user-here': no such user in /etc/passwd",
            ),
            (
                "exclude-regex = \"a(\"",
                "rules.toml:4: rule 'r': exclude-regex: invalid value 'a('",
            ),
            (
                "exclude-name = \" \"",
                "rules.toml:4: rule 'r': exclude-name: NAME is empty",
            ),
            (
                "exclude-cgroup = \"/a/../b\"",
                "rules.toml:4: rule 'r': exclude-cgroup: ",
            ),
            (
                "user = 0\nexclude-user = \"root\"",
                "rules.toml:5: rule 'r': exclude-user: leaves out uid 0, which the rule selects by user",
            ),
            (
                "cmdline-regex = \"x(\"",
                "rules.toml:4: rule 'r': cmdline-regex: a rule matches names one way: 'prefix' or 'cmdline-regex', not both",
            ),
            ("user = { name = 1 }", "rules.toml:4: user: "),
        ];
        for (line, expected) in cases {
            let message = error(&rule(line));
            assert!(
                message.starts_with(expected),
                "{line}\n  gave {message}\n  not {expected}"
            );
        }
        let only = error("[[rule]]\ncmdline-regex = \"x(\"\nmax-memory = 1\n");
        assert!(
            only.starts_with("rules.toml:2: rule 'rule-1': cmdline-regex: invalid value 'x('"),
            "{only}"
        );
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        // The table of bad files (which the end-to-end tests also run through the binary).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/bad-rules");
        let table = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
        let cases: Vec<(&str, &str)> = table.lines().filter_map(|l| l.split_once('\t')).collect();
        assert!(cases.len() >= 17, "{} cases", cases.len());
        for (name, after_path) in cases {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let message = error(&text);
            let expected = format!("rules.toml{after_path}");
            assert!(
                message.starts_with(&expected),
                "{name}\n  gave {message}\n  not {expected}"
            );
        }
    }
}
