//! Rules: which processes to watch, their limit, and what to do when one goes over it.
//!
//! The command line makes one rule; a rules file (`--config rules.toml`) makes several. A
//! process is watched under the first rule that selects it, so specific rules go first.
//!
//! ```toml
//! [[rule]]
//! name = "web"                 # label in logs and metrics (default: rule-N)
//! prefix = "my-app"            # or exact = / regex = / cmdline = ; and/or cgroup = "/x.slice"
//! max-memory = "500M"          # or "25%" of RAM, or "90% of cgroup"
//! signal = "TERM"
//! repeat = "10s"               # or "never"
//! kill-after = "30s"
//! exec = "logger -t oom-guard $MM_NAME"
//! profile-to = "dir:/var/lib/memory-monitor/profiles"
//! ```
//!
//! Every key is the name of the command-line option that means the same.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::cgroup::{self, CgroupPath};
use crate::config::{
    COMMAND_LINE_RULE, DEFAULT_PROFILE_AT_PERCENT, DEFAULT_PROFILE_BUDGET, ProfileSettings,
};
use crate::matcher::{CommVerdict, MatchMode, Matcher};
use crate::procfs::{self, ProcRoot};
use crate::signal::Signal;
use crate::sink::SinkSpec;
use crate::units::{self, SizeSpec};

pub use memory_monitor_ebpf::MAX_RULES;

/// Default for `exec-timeout`.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Which processes a rule selects: by name, by cgroup (both must hold when both are given), or
/// by PID.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// The process name.
    pub matcher: Option<Matcher>,
    /// The cgroup (v2) the process must be in, or below.
    pub cgroup: Option<CgroupPath>,
    /// Processes watched by PID, whatever their name or cgroup (sorted by PID).
    pub pids: Vec<Pinned>,
}

/// A process named by PID (`--pid`): the PID and the process's start time, taken when it was
/// named, so that another process given the PID after it exits is never taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    /// The process ID.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl Pinned {
    /// The process now at `pid`; `None` if there is none.
    pub fn now(proc: &ProcRoot, pid: i32) -> Option<Pinned> {
        let mut buf = [0u8; 1024];
        let stat = proc.read_file(pid, "stat", &mut buf).ok()?;
        let start_time = procfs::parse_stat(stat).ok()?.start_time;
        Some(Pinned { pid, start_time })
    }
}

impl Selector {
    /// Processes chosen by `matcher`.
    pub fn name(matcher: Matcher) -> Selector {
        Selector {
            matcher: Some(matcher),
            ..Selector::default()
        }
    }

    /// Whether it selects processes by what they are (name or cgroup), not only by PID.
    pub fn selects_by_kind(&self) -> bool {
        self.matcher.is_some() || self.cgroup.is_some()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match (&self.matcher, &self.cgroup) {
            (Some(matcher), Some(cgroup)) => parts.push(format!("{matcher} in cgroup {cgroup}")),
            (Some(matcher), None) => parts.push(matcher.to_string()),
            (None, Some(cgroup)) => parts.push(format!("processes in cgroup {cgroup}")),
            (None, None) => {}
        }
        if !self.pids.is_empty() {
            let pids: Vec<String> = self.pids.iter().map(|p| p.pid.to_string()).collect();
            parts.push(format!("PID {}", pids.join(", ")));
        }
        f.write_str(&parts.join(" and "))
    }
}

/// A command run on each breach (`--exec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// The shell command.
    pub command: String,
    /// Killed when still running after this long.
    pub timeout: Duration,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its label in logs and metrics.
    pub name: String,
    /// Which processes it selects.
    pub selector: Selector,
    /// The limit: a process is over when its RSS is strictly greater.
    pub limit: SizeSpec,
    /// Signal sent on breach.
    pub signal: Signal,
    /// Re-signal a process still over the limit this long after the last signal; `None`: never.
    pub repeat: Option<Duration>,
    /// Send SIGKILL if still over the limit this long after the first signal.
    pub kill_after: Option<Duration>,
    /// A command run on each breach.
    pub exec: Option<Exec>,
    /// Profiles on breach.
    pub profile: Option<ProfileSettings>,
}

impl Rule {
    /// Whether what it makes of a process depends on the process's cgroup: it selects by
    /// cgroup, or its limit is a share of the cgroup's.
    pub fn depends_on_cgroups(&self) -> bool {
        self.selector.cgroup.is_some() || self.limit.is_per_process()
    }

    /// A rule named `name` with the seed's defaults: SIGTERM, re-signalled every 2 s while over.
    pub fn new(name: &str, selector: Selector, limit: SizeSpec) -> Rule {
        Rule {
            name: name.to_string(),
            selector,
            limit,
            signal: Signal::TERM,
            repeat: Some(Duration::from_secs(2)),
            kill_after: None,
            exec: None,
            profile: None,
        }
    }
}

/// Why a set of rules cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A mistake in a rules file, at a line.
    #[error("{}:{line}: {}{message}", file.display(), field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    File {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key concerned, when there is one.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The file cannot be read.
    #[error("cannot read {}: {reason}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Nothing to watch, too many rules, or two with the same name.
    #[error("{0}")]
    Set(String),
}

/// The rules in force, in order, with what matching them needs.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Per rule: its cgroup exists (a rule whose cgroup does not matches nothing).
    cgroup_present: Vec<bool>,
    total_ram: u64,
}

impl RuleSet {
    /// Checks and orders `rules`: at least one, at most [`MAX_RULES`], distinct names.
    pub fn new(rules: Vec<Rule>) -> Result<RuleSet, RulesError> {
        if rules.is_empty() {
            return Err(RulesError::Set("no rules: nothing to watch".to_string()));
        }
        if rules.len() > MAX_RULES {
            return Err(RulesError::Set(format!(
                "{} rules; at most {MAX_RULES} are supported",
                rules.len()
            )));
        }
        let mut names = HashSet::new();
        if let Some(twice) = rules.iter().find(|rule| !names.insert(rule.name.as_str())) {
            return Err(RulesError::Set(format!(
                "two rules are named '{}'; names label logs and metrics, so they must differ",
                twice.name
            )));
        }
        if rules.iter().any(Rule::depends_on_cgroups) {
            cgroup::find_hierarchies();
        }
        let cgroup_present = rules.iter().map(cgroup_exists).collect();
        Ok(RuleSet {
            rules,
            cgroup_present,
            total_ram: procfs::total_ram(),
        })
    }

    /// Looks again whether each rule's cgroup exists; returns the rules whose cgroup appeared
    /// (`true`) or went (`false`) since the last look.
    pub fn recheck_cgroups(&mut self) -> Vec<(usize, bool)> {
        let mut changed = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let present = cgroup_exists(rule);
            if present != std::mem::replace(&mut self.cgroup_present[index], present) {
                changed.push((index, present));
            }
        }
        changed
    }

    /// The cgroups the rules name.
    pub fn cgroups(&self) -> impl Iterator<Item = &CgroupPath> {
        self.rules
            .iter()
            .filter_map(|rule| rule.selector.cgroup.as_ref())
    }

    /// Whether any rule's limit is a share of the process's cgroup's limit.
    pub fn limits_per_process(&self) -> bool {
        self.rules.iter().any(|rule| rule.limit.is_per_process())
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rule `index`.
    pub fn get(&self, index: usize) -> &Rule {
        &self.rules[index]
    }

    /// The rules whose cgroup does not exist (they match nothing until it does and the rules
    /// are loaded again).
    pub fn missing_cgroups(&self) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .zip(&self.cgroup_present)
            .filter(|(_, present)| !**present)
            .map(|(rule, _)| rule)
    }

    /// Whether rule `index`'s cgroup exists (or it names none).
    pub fn cgroup_present(&self, index: usize) -> bool {
        self.cgroup_present[index]
    }

    /// Whether any rule selects processes by name or cgroup (not only by PID).
    pub fn selects_by_kind(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.selector.selects_by_kind())
    }

    /// The first rule that selects process `pid` named `comm`, and whether it selects it by
    /// PID. Reads `/proc/PID/cmdline` and `/proc/PID/cgroup` only when a rule needs them
    /// (`buf` holds them).
    pub fn select(
        &self,
        proc: &ProcRoot,
        pid: i32,
        comm: &[u8],
        buf: &mut [u8],
    ) -> Option<(usize, bool)> {
        let mut cgroup_buf = [0u8; 4096];
        // `/proc/PID/cgroup`, read once when a rule needs it: its length, or none if unreadable.
        let mut cgroup_len: Option<Option<usize>> = None;
        for (index, rule) in self.rules.iter().enumerate() {
            let selector = &rule.selector;
            if let Ok(at) = selector.pids.binary_search_by_key(&pid, |p| p.pid)
                && Pinned::now(proc, pid) == Some(selector.pids[at])
            {
                return Some((index, true));
            }
            if !selector.selects_by_kind() || !self.cgroup_present[index] {
                continue;
            }
            let name_matches = match &selector.matcher {
                None => true,
                Some(matcher) => match matcher.check_comm(comm) {
                    CommVerdict::Yes => true,
                    CommVerdict::No => false,
                    CommVerdict::AskCmdline => match proc.read_file(pid, "cmdline", buf) {
                        Ok(cmdline) => {
                            let len = cmdline.len();
                            matcher.matches_cmdline(&mut buf[..len])
                        }
                        Err(_) => false,
                    },
                },
            };
            if !name_matches {
                continue;
            }
            if let Some(cgroup) = &selector.cgroup {
                let len = *cgroup_len.get_or_insert_with(|| {
                    proc.read_file(pid, "cgroup", &mut cgroup_buf)
                        .ok()
                        .map(<[u8]>::len)
                });
                let mut placed = [0u8; 4096];
                let path = len.and_then(|len| cgroup::cgroup_of(&cgroup_buf[..len], &mut placed));
                if !path.is_some_and(|path| cgroup.contains(path)) {
                    continue;
                }
            }
            return Some((index, false));
        }
        None
    }

    /// The limit in bytes of process `pid` under rule `index` (reading its cgroup's limit when
    /// the rule's limit is a share of it).
    pub fn limit_of(&self, index: usize, proc: &ProcRoot, pid: i32) -> u64 {
        let spec = self.rules[index].limit;
        let cgroup_limit = spec.is_per_process().then(|| {
            let mut buf = [0u8; 4096];
            proc.read_file(pid, "cgroup", &mut buf)
                .ok()
                .and_then(|text| cgroup::memory_limit(text, |_| {}))
        });
        spec.resolve(self.total_ram, cgroup_limit.flatten()).max(1)
    }

    /// The limit of rule `index` when it is the same for every process.
    pub fn fixed_limit(&self, index: usize) -> Option<u64> {
        let spec = self.rules[index].limit;
        (!spec.is_per_process()).then(|| spec.resolve(self.total_ram, None))
    }
}

/// Whether `rule`'s cgroup exists (or it names none).
fn cgroup_exists(rule: &Rule) -> bool {
    match &rule.selector.cgroup {
        None => true,
        Some(cgroup) => cgroup.directory().is_ok_and(|dir| dir.is_dir()),
    }
}

/// What a rules file's rules take from the command line when they do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// `repeat`: the seed re-signalled every interval.
    pub repeat: Option<Duration>,
}

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
    cgroup: Option<Spanned<String>>,
    max_memory: Option<Spanned<Scalar>>,
    signal: Option<Spanned<Scalar>>,
    repeat: Option<Spanned<Scalar>>,
    kill_after: Option<Spanned<Scalar>>,
    exec: Option<Spanned<String>>,
    exec_timeout: Option<Spanned<Scalar>>,
    profile_dir: Option<Spanned<String>>,
    profile_to: Option<Spanned<String>>,
    profile_budget: Option<Spanned<Scalar>>,
    profile_at: Option<Spanned<Scalar>>,
}

/// Reads the rules in the file at `path`.
pub fn load_file(path: &Path, defaults: Defaults) -> Result<Vec<Rule>, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|e| RulesError::Read {
        file: path.to_path_buf(),
        reason: e.to_string(),
    })?;
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
    if let Some(extra) = raw.rule.get(MAX_RULES) {
        return Err(file.error(
            extra.span(),
            None,
            format!(
                "{} rules; at most {MAX_RULES} are supported",
                raw.rule.len()
            ),
        ));
    }
    let rules = raw
        .rule
        .iter()
        .enumerate()
        .map(|(index, raw)| file.rule(index, raw, defaults))
        .collect::<Result<Vec<Rule>, _>>()?;
    for (index, rule) in rules.iter().enumerate() {
        let raw = &raw.rule[index];
        let span = raw
            .get_ref()
            .name
            .as_ref()
            .map_or_else(|| raw.span(), Spanned::span);
        if rule.name == COMMAND_LINE_RULE {
            return Err(file.error(
                span,
                Some("name"),
                format!("'{COMMAND_LINE_RULE}' names the command line's rule; choose another"),
            ));
        }
        if rules[..index]
            .iter()
            .any(|earlier| earlier.name == rule.name)
        {
            return Err(file.error(
                span,
                Some("name"),
                format!(
                    "a rule before this one is named '{}' too; names label logs and metrics, so they must differ",
                    rule.name
                ),
            ));
        }
    }
    Ok(rules)
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
        self.error(span, key.as_deref(), message)
    }

    fn rule(
        &self,
        index: usize,
        raw: &Spanned<RawRule>,
        defaults: Defaults,
    ) -> Result<Rule, RulesError> {
        let span = raw.span();
        let raw = raw.get_ref();
        let name = match &raw.name {
            Some(name) if name.get_ref().trim().is_empty() => {
                return Err(self.error(name.span(), Some("name"), "is empty".to_string()));
            }
            Some(name) => name.get_ref().trim().to_string(),
            None => format!("rule-{}", index + 1),
        };
        let in_rule = |field: &str| format!("rule '{name}': {field}");
        let fail = |span: Range<usize>, field: &str, message: String| {
            self.error(span, Some(&in_rule(field)), message)
        };
        let matches = [
            ("prefix", MatchMode::Prefix, &raw.prefix),
            ("exact", MatchMode::Exact, &raw.exact),
            ("regex", MatchMode::Regex, &raw.regex),
            ("cmdline", MatchMode::Cmdline, &raw.cmdline),
        ];
        let mut given = matches.iter().filter(|(_, _, value)| value.is_some());
        let matcher = match (given.next(), given.next()) {
            (Some((a, _, _)), Some((b, _, value))) => {
                let span = value.as_ref().expect("given").span();
                return Err(fail(
                    span,
                    b,
                    format!("a rule matches names one way: '{a}' or '{b}', not both"),
                ));
            }
            (Some((key, mode, value)), None) => {
                let value = value.as_ref().expect("given");
                Some(
                    Matcher::new(*mode, value.get_ref())
                        .map_err(|e| fail(value.span(), key, e.to_string()))?,
                )
            }
            (None, _) => None,
        };
        let cgroup = match &raw.cgroup {
            Some(value) => Some(
                CgroupPath::parse(value.get_ref())
                    .map_err(|e| fail(value.span(), "cgroup", e.to_string()))?,
            ),
            None => None,
        };
        if matcher.is_none() && cgroup.is_none() {
            return Err(self.error(
                span,
                Some(&format!("rule '{name}'")),
                "selects nothing: give prefix, exact, regex, cmdline or cgroup".to_string(),
            ));
        }
        let limit = match &raw.max_memory {
            Some(value) => parse_scalar(value, |t| units::parse_size(t).map_err(|e| e.to_string()))
                .map_err(|(span, why)| fail(span, "max-memory", why))?,
            None => {
                return Err(self.error(
                    span,
                    Some(&format!("rule '{name}'")),
                    "max-memory is missing".to_string(),
                ));
            }
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
        let signal = match &raw.signal {
            Some(value) => parse_scalar(value, |t| t.parse::<Signal>().map_err(|e| e.to_string()))
                .map_err(|(span, why)| fail(span, "signal", why))?,
            None => Signal::TERM,
        };
        let repeat = match &raw.repeat {
            Some(value) if value.get_ref().text().trim().eq_ignore_ascii_case("never") => None,
            Some(_) => duration(&raw.repeat, "repeat")?,
            None => defaults.repeat,
        };
        let kill_after = duration(&raw.kill_after, "kill-after")?;
        let exec_timeout = duration(&raw.exec_timeout, "exec-timeout")?;
        let exec = match (&raw.exec, exec_timeout) {
            (Some(command), timeout) if !command.get_ref().trim().is_empty() => Some(Exec {
                command: command.get_ref().clone(),
                timeout: timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT),
            }),
            (Some(command), _) => {
                return Err(fail(command.span(), "exec", "is empty".to_string()));
            }
            (None, Some(_)) => {
                let value = raw.exec_timeout.as_ref().expect("given");
                return Err(fail(value.span(), "exec-timeout", "needs exec".to_string()));
            }
            (None, None) => None,
        };
        let sink = match (&raw.profile_dir, &raw.profile_to) {
            (Some(_), Some(to)) => {
                return Err(fail(
                    to.span(),
                    "profile-to",
                    "give profile-dir or profile-to, not both".to_string(),
                ));
            }
            (Some(dir), None) => Some(SinkSpec::Dir(PathBuf::from(dir.get_ref()))),
            (None, Some(to)) => Some(
                to.get_ref()
                    .parse::<SinkSpec>()
                    .map_err(|e| fail(to.span(), "profile-to", e.to_string()))?,
            ),
            (None, None) => None,
        };
        let budget = duration(&raw.profile_budget, "profile-budget")?;
        let growth_at = match &raw.profile_at {
            Some(value) => Some(
                parse_scalar(value, crate::config::parse_percent)
                    .map_err(|(span, why)| fail(span, "profile-at", why))?,
            ),
            None => None,
        };
        let profile = match sink {
            Some(sink) => Some(ProfileSettings {
                sink,
                budget: budget.unwrap_or(DEFAULT_PROFILE_BUDGET),
                growth_at_percent: growth_at.unwrap_or(DEFAULT_PROFILE_AT_PERCENT),
            }),
            None if budget.is_some() || growth_at.is_some() => {
                return Err(self.error(
                    span,
                    Some(&format!("rule '{name}'")),
                    "profile-budget and profile-at need profile-dir or profile-to".to_string(),
                ));
            }
            None => None,
        };
        Ok(Rule {
            name,
            selector: Selector {
                matcher,
                cgroup,
                pids: Vec::new(),
            },
            limit,
            signal,
            repeat,
            kill_after,
            exec,
            profile,
        })
    }
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
    use super::*;

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
            signal = "USR1"
            repeat = "never"
            kill-after = "30s"
            exec = "echo $MM_PID"
            exec-timeout = 5
            profile-to = "dir:/tmp/profiles"
            profile-at = "50%"

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

    #[test]
    fn sets_need_distinct_names_and_a_bounded_count() {
        let rule = |name: &str| {
            Rule::new(
                name,
                Selector::name(Matcher::new(MatchMode::Prefix, "a").unwrap()),
                SizeSpec::Bytes(1),
            )
        };
        assert!(RuleSet::new(vec![rule("a"), rule("b")]).is_ok());
        let twice = RuleSet::new(vec![rule("a"), rule("a")]).unwrap_err();
        assert!(twice.to_string().contains("two rules are named 'a'"));
        let many = (0..=MAX_RULES).map(|i| rule(&i.to_string())).collect();
        assert!(RuleSet::new(many).is_err());
        assert!(RuleSet::new(Vec::new()).is_err());
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rule = |name: &str, mode, pattern: &str| {
            Rule::new(
                name,
                Selector::name(Matcher::new(mode, pattern).unwrap()),
                SizeSpec::Bytes(1),
            )
        };
        let set = RuleSet::new(vec![
            rule("exact", MatchMode::Exact, "cargo"),
            rule("any-c", MatchMode::Prefix, "c"),
        ])
        .unwrap();
        let proc = ProcRoot::open().unwrap();
        let me = std::process::id() as i32;
        let mut buf = vec![0; 4096];
        assert_eq!(set.select(&proc, me, b"cargo", &mut buf), Some((0, false)));
        assert_eq!(set.select(&proc, me, b"cc", &mut buf), Some((1, false)));
        assert_eq!(set.select(&proc, me, b"rustc", &mut buf), None);
    }
}
