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
//! act-on = "process-group"     # or "cgroup" (with cgroup =); default "process"
//! group-limit = "2G"           # the sum over every process it watches; signals one member
//! profile-to = "dir:/var/lib/memory-monitor/profiles"
//! ```
//!
//! Every key is the name of the command-line option that means the same.

pub(crate) mod act_on;
pub(crate) mod budget;
pub mod caution;
pub(crate) mod count;
pub(crate) mod describe;
mod exclude;
mod facts;
mod file;
mod leak;
pub(crate) mod pressure;
mod spec;
mod warn_at;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::matcher::Matcher;
pub use crate::rules::act_on::ActOn;
pub use crate::rules::budget::{GroupBudget, Pick};
pub use crate::rules::count::Count;
pub use crate::rules::pressure::{PressureAction, PressureTrigger, Stall};
use crate::signal::Signal;
use crate::sink::SinkSpec;
use crate::system::cgroup;
pub use crate::system::cgroup::{CgroupError, CgroupPath};
use crate::system::procfs::{self, ProcRoot};
use crate::system::users::UserName;
use crate::units::SizeSpec;

pub use exclude::Exclude;
pub(crate) use facts::{Facts, read_uid};
#[cfg(test)]
pub(crate) use file::keys as file_keys;
pub use file::{load_file, parse_file};
pub use leak::{DEFAULT_LEAK_SUSTAIN, DEFAULT_LEAK_WARMUP, Leak};
pub use memory_monitor_ebpf::MAX_RULES;
pub use spec::{Repeat, RuleSpec, SpecError};
pub use warn_at::WarnAt;

/// The name of the rule the command line makes, in logs and metrics.
pub const COMMAND_LINE_RULE: &str = "command-line";

/// Default for `profile-budget`.
pub const DEFAULT_PROFILE_BUDGET: Duration = Duration::from_millis(50);
/// Default for `profile-at`.
pub const DEFAULT_PROFILE_AT_PERCENT: u32 = 80;

/// Where breach profiles go, and how long a signal may wait for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSettings {
    /// The writer.
    pub sink: SinkSpec,
    /// The longest a breach's signal waits for its profile's capture.
    pub budget: Duration,
    /// eBPF mode: sample the stacks that grow a process once it is above this percentage of
    /// its limit (the growth profile).
    pub growth_at_percent: u32,
}

impl ProfileSettings {
    /// The approximate RSS from which the growth profile samples, for a process with `limit`.
    pub(crate) fn growth_from(&self, limit: u64) -> u64 {
        (u128::from(limit) * u128::from(self.growth_at_percent) / 100) as u64
    }
}

/// Default for `exec-timeout`.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Which processes a rule selects: by name, by user, by cgroup (all that are given must
/// hold), or by PID; less those it leaves out.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// The process name.
    pub matcher: Option<Matcher>,
    /// The cgroup (v2) the process must be in, or below.
    pub cgroup: Option<CgroupPath>,
    /// The uids one of which the process must run as (its effective uid; sorted).
    pub users: Vec<u32>,
    /// Processes watched by PID, whatever their name, user or cgroup (sorted by PID).
    pub pids: Vec<Pinned>,
    /// What the rule leaves out, whichever way the rest selected it.
    pub exclude: Exclude,
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
    pub(crate) fn now(proc: &ProcRoot, pid: i32) -> Option<Pinned> {
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

    /// Whether it selects processes by what they are (name, user or cgroup), not only by PID.
    pub(crate) fn selects_by_kind(&self) -> bool {
        self.matcher.is_some() || self.cgroup.is_some() || !self.users.is_empty()
    }

    /// Whether it selects `process` by what it is (not by PID): name, user and cgroup
    /// match, and nothing leaves it out.
    fn selects(&self, process: &mut Facts<'_>) -> bool {
        self.matcher.as_ref().is_none_or(|m| process.named(m))
            && (self.users.is_empty()
                || process
                    .uid()
                    .is_some_and(|uid| self.users.binary_search(&uid).is_ok()))
            && self.cgroup.as_ref().is_none_or(|c| process.in_cgroup(c))
            && !self.exclude.leaves_out(process)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.selects_by_kind() {
            let mut kind = match &self.matcher {
                Some(matcher) => matcher.to_string(),
                None => "processes".to_string(),
            };
            if !self.users.is_empty() {
                let users: Vec<String> = self
                    .users
                    .iter()
                    .map(|&u| UserName(u).to_string())
                    .collect();
                kind += &format!(" of user {}", users.join(", "));
            }
            if let Some(cgroup) = &self.cgroup {
                kind += &format!(" in cgroup {cgroup}");
            }
            parts.push(kind);
        }
        if !self.pids.is_empty() {
            let pids: Vec<String> = self.pids.iter().map(|p| p.pid.to_string()).collect();
            parts.push(format!("PID {}", pids.join(", ")));
        }
        f.write_str(&parts.join(" and "))?;
        if !self.exclude.is_empty() {
            write!(f, ", {}", self.exclude)?;
        }
        Ok(())
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
    /// Where a process is warned about, once per episode, before it reaches the limit.
    pub warn_at: Option<WarnAt>,
    /// Leak trends: when a process on its way to the limit is named, if ever.
    pub leak: Option<Leak>,
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
    /// What counts toward the limit.
    pub count: Count,
    /// What its signals reach: the process, its process group, or its cgroup.
    pub act_on: ActOn,
    /// A budget over the sum of every process it watches (`group-limit`).
    pub group: Option<GroupBudget>,
    /// Memory pressure (PSI) that fires it, on the host or in its cgroup.
    pub on_pressure: Option<PressureTrigger>,
    /// Whether its cgroup's `memory.events` `high` rising fires it.
    pub on_high: bool,
    /// What its pressure and `memory.high` triggers do.
    pub pressure_action: PressureAction,
    /// Values it holds that are seldom what was meant (see [`caution`]): said at start and by
    /// `--check-config`, not refused.
    pub cautions: Vec<String>,
}

impl Rule {
    /// Whether what it makes of a process depends on the process's cgroup: it selects by
    /// cgroup, or its limit is a share of the cgroup's.
    pub(crate) fn depends_on_cgroups(&self) -> bool {
        self.selector.cgroup.is_some() || self.limit.is_per_process()
    }

    /// Its warning level in bytes for a process whose limit is `limit`, if it has one there:
    /// what userspace judges by and what the kernel side's trigger is derived from alike.
    pub(crate) fn warn_level(&self, limit: u64) -> Option<u64> {
        self.warn_at.and_then(|warn_at| warn_at.level(limit))
    }

    /// The approximate RSS from which the growth profile samples a process whose limit is
    /// `limit`, if the rule profiles: from the start under a rule that follows leak trends,
    /// so that the profile taken when a leak is named holds the stacks that grew it.
    pub(crate) fn growth_from(&self, limit: u64) -> Option<u64> {
        let profile = self.profile.as_ref()?;
        Some(match self.leak {
            Some(_) => 0,
            None => profile.growth_from(limit),
        })
    }

    /// A rule named `name` with the defaults: SIGTERM, re-signalled every 2 s while over.
    pub fn new(name: &str, selector: Selector, limit: SizeSpec) -> Rule {
        Rule {
            name: name.to_string(),
            selector,
            limit,
            warn_at: None,
            leak: None,
            signal: Signal::TERM,
            repeat: Some(Duration::from_secs(2)),
            kill_after: None,
            exec: None,
            profile: None,
            count: Count::Rss,
            act_on: ActOn::Process,
            group: None,
            on_pressure: None,
            on_high: false,
            pressure_action: PressureAction::Report,
            cautions: Vec::new(),
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

/// Why rules cannot be in force together. Decided here only: a rules file reports the same
/// faults at the line of the rule they are found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetFault {
    /// No rule at all.
    Empty,
    /// More than [`MAX_RULES`]; the rule at `MAX_RULES` is the first too many.
    TooMany(usize),
    /// The rule at this index has the name of an earlier one.
    NameTwice { index: usize, name: String },
}

impl SetFault {
    /// What is wrong with `rules` as one set, if anything.
    pub(crate) fn of(rules: &[Rule]) -> Option<SetFault> {
        if rules.is_empty() {
            return Some(SetFault::Empty);
        }
        if rules.len() > MAX_RULES {
            return Some(SetFault::TooMany(rules.len()));
        }
        let mut names = HashSet::new();
        rules
            .iter()
            .position(|rule| !names.insert(rule.name.as_str()))
            .map(|index| SetFault::NameTwice {
                index,
                name: rules[index].name.clone(),
            })
    }
}

impl fmt::Display for SetFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetFault::Empty => write!(f, "no rules: nothing to watch"),
            SetFault::TooMany(count) => {
                write!(f, "{count} rules; at most {MAX_RULES} are supported")
            }
            SetFault::NameTwice { name, .. } => write!(
                f,
                "two rules are named '{name}'; names label logs and metrics, so they must differ"
            ),
        }
    }
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
        if let Some(fault) = SetFault::of(&rules) {
            return Err(RulesError::Set(fault.to_string()));
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
    pub(crate) fn recheck_cgroups(&mut self) -> Vec<(usize, bool)> {
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
    pub(crate) fn cgroups(&self) -> impl Iterator<Item = &CgroupPath> {
        self.rules
            .iter()
            .filter_map(|rule| rule.selector.cgroup.as_ref())
    }

    /// Whether any rule's limit is a share of the process's cgroup's limit.
    pub(crate) fn limits_per_process(&self) -> bool {
        self.rules.iter().any(|rule| rule.limit.is_per_process())
    }

    /// Every rule, in order.
    pub fn all(&self) -> &[Rule] {
        &self.rules
    }

    /// Rule `index`.
    pub(crate) fn get(&self, index: usize) -> &Rule {
        &self.rules[index]
    }

    /// The rules whose cgroup does not exist (they match nothing until it does and the rules
    /// are loaded again).
    pub(crate) fn missing_cgroups(&self) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .zip(&self.cgroup_present)
            .filter(|(_, present)| !**present)
            .map(|(rule, _)| rule)
    }

    /// Whether rule `index`'s cgroup exists (or it names none).
    pub(crate) fn cgroup_present(&self, index: usize) -> bool {
        self.cgroup_present[index]
    }

    /// Whether any rule selects processes by name or cgroup (not only by PID).
    pub(crate) fn selects_by_kind(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.selector.selects_by_kind())
    }

    /// The first rule that selects process `pid` named `comm`, and whether it selects it by
    /// PID. Reads `/proc/PID/cmdline`, `status` and `cgroup` only when a rule needs them, each
    /// once at most (`buf` holds the command line).
    pub(crate) fn select(
        &self,
        proc: &ProcRoot,
        pid: i32,
        comm: &[u8],
        buf: &mut [u8],
    ) -> Option<(usize, bool)> {
        let mut process = Facts::new(proc, pid, comm, buf);
        for (index, rule) in self.rules.iter().enumerate() {
            let selector = &rule.selector;
            if let Ok(at) = selector.pids.binary_search_by_key(&pid, |p| p.pid)
                && Pinned::now(proc, pid) == Some(selector.pids[at])
                && !selector.exclude.leaves_out(&mut process)
            {
                return Some((index, true));
            }
            if selector.selects_by_kind()
                && self.cgroup_present[index]
                && selector.selects(&mut process)
            {
                return Some((index, false));
            }
        }
        None
    }

    /// The limit in bytes of process `pid` under rule `index` (reading its cgroup's limit when
    /// the rule's limit is a share of it).
    pub(crate) fn limit_of(&self, index: usize, proc: &ProcRoot, pid: i32) -> u64 {
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
    pub(crate) fn fixed_limit(&self, index: usize) -> Option<u64> {
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
    /// `repeat`: how often a breach is signalled again (by default, every interval).
    pub repeat: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::MatchMode;

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
