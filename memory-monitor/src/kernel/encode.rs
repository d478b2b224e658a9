//! What userspace writes into the kernel side's maps: each rule as a [`Rule`] record (with its
//! cgroup's directory), each followed process as a [`Watch`] record, and how near its limit a
//! process is reported ([`Judging`]).

use std::io;

use aya::maps::{Array, CgroupArray, MapData};
use memory_monitor_ebpf::{
    CGROUP_LIMIT, CGROUP_MEMBER, MAX_RULES, RULE_ANY, RULE_ASK, RULE_ASK_IF_EQUAL, RULE_EXACT,
    RULE_NEVER, RULE_NONE, RULE_PREFIX, Rule, Share, WATCH_ARMED, WATCH_BY_NAME, WATCH_COUNT_SWAP,
    WATCH_GROUPED, WATCH_SHARE_ARMED, WATCH_SUMS_CPUS, WATCH_WARN_ARMED, WATCH_WAYPOINTS, Watch,
    member,
};

use super::Target;
use crate::accounting::Accounting;
use crate::matcher::{MatchMode, Matcher};
use crate::rules::RuleSet;
use crate::system::procfs::{COMM_LEN, ResidentParts};

/// How the kernel side judges a watched process near its limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judging {
    /// How the kernel counts RSS: how far under the limit its counters may show a process
    /// that is over it.
    pub(crate) accounting: Accounting,
    /// Whether, within that margin, the RSS program sums the per-CPU parts itself and reports
    /// only an exact figure over the limit (`WATCH_SUMS_CPUS`).
    pub(crate) sums_cpus: bool,
}

impl Judging {
    /// The approximate RSS at which a process with `limit` is reported (or, summing per-CPU
    /// parts, at which summing starts): within the counters' error of it, one counter more
    /// when swap counts (the kernel side takes each thread's lag off that, where there is
    /// one).
    fn trigger(self, limit: u64, count_swap: bool) -> u64 {
        let swap = if count_swap {
            self.accounting.one_counter_error()
        } else {
            0
        };
        limit.saturating_sub(self.accounting.counter_error() + swap)
    }

    /// The `WATCH_*` flags of a watch under a rule that counts swap or not, has a group budget
    /// or not, and follows leak trends (reports waypoints) or not.
    fn watch_flags(self, count_swap: bool, grouped: bool, waypoints: bool) -> u32 {
        let swap = if count_swap { WATCH_COUNT_SWAP } else { 0 };
        let sums = if self.sums_cpus { WATCH_SUMS_CPUS } else { 0 };
        let grouped = if grouped { WATCH_GROUPED } else { 0 };
        let waypoints = if waypoints { WATCH_WAYPOINTS } else { 0 };
        swap | sums | grouped | waypoints
    }

    /// A process's share `at` of its group's budget, as the kernel side judges it: reported
    /// within the counters' error of it, as for a limit.
    pub(crate) fn share(self, at: u64, count_swap: bool) -> Share {
        Share {
            trigger: self.trigger(at, count_swap),
            at,
        }
    }
}

/// The record that has the kernel side follow a process as `target` says, from its exact
/// resident split `parts`, armed; the rule's signal only with `--kernel-signal`.
pub(crate) fn watch_record(
    target: Target,
    parts: ResidentParts,
    judging: Judging,
    kernel_signal: bool,
) -> Watch {
    let mut members = [0i64; member::COUNT];
    members[member::FILE] = parts.file as i64;
    members[member::ANON] = parts.anon as i64;
    members[member::SHMEM] = parts.shmem as i64;
    members[member::SWAPENTS] = parts.swap as i64;
    Watch {
        trigger: judging.trigger(target.limit, target.count_swap),
        limit: target.limit,
        members,
        last_event_ns: 0,
        mm: 0,
        flags: WATCH_ARMED
            | WATCH_WARN_ARMED
            | WATCH_SHARE_ARMED
            | if target.by_name { WATCH_BY_NAME } else { 0 }
            | judging.watch_flags(target.count_swap, target.grouped, target.waypoints),
        grown: 0,
        threads: parts.threads.max(1),
        waypoint: 0,
        mm_ptr: 0,
        group: 0,
        parts: 0,
        profile_from: target.profile_from.unwrap_or(u64::MAX),
        warn_below: warn_below(target.limit, target.warn),
        signal: if kernel_signal { target.signal } else { 0 },
        rule: target.rule as u32,
    }
}

/// [`Watch::warn_below`] for a process at `limit` warned about at `warn`: the kernel side
/// derives the warning's trigger from the limit's with it, so both come from one place.
fn warn_below(limit: u64, warn: Option<u64>) -> u64 {
    warn.map_or(0, |warn| limit.saturating_sub(warn))
}

/// Writes `rules` into the kernel side's `RULES` and `CGROUPS` maps, in order, ending the list
/// after the last. What can be refused (opening the rules' cgroups) is done before the first
/// write, so a set that cannot be used leaves the kernel side's rules as they were; only a
/// map write failing partway (the kernel refusing a write like those it just took) would leave
/// a mix, until the next set. A program may read the table while it is written; whatever it
/// concludes then, userspace decides again on its event under the rules in force, and re-reads
/// `/proc` after writing.
pub(crate) fn write_rules(
    table: &mut Array<MapData, Rule>,
    cgroups: &mut CgroupArray<MapData>,
    rules: &RuleSet,
    kernel_signal: bool,
    judging: Judging,
) -> io::Result<()> {
    let error = |e: aya::maps::MapError| io::Error::other(e.to_string());
    let prepared = (0..rules.all().len())
        .map(|index| kernel_rule(rules, index, kernel_signal, judging))
        .collect::<io::Result<Vec<_>>>()?;
    for (slot, (kernel_rule, cgroup)) in (0u32..).zip(prepared) {
        match cgroup {
            Some(dir) => cgroups.set(slot, dir, 0).map_err(error)?,
            None => {
                let _ = cgroups.unset(slot);
            }
        }
        table.set(slot, kernel_rule, 0).map_err(error)?;
    }
    if rules.all().len() < MAX_RULES {
        table
            .set(rules.all().len() as u32, Rule::default(), 0)
            .map_err(error)?;
    }
    Ok(())
}

/// Rule `index` of `rules` as the kernel side applies it, and its cgroup's directory, opened,
/// when the rule names one that exists.
fn kernel_rule(
    rules: &RuleSet,
    index: usize,
    kernel_signal: bool,
    judging: Judging,
) -> io::Result<(Rule, Option<std::fs::File>)> {
    let rule = rules.get(index);
    let selector = &rule.selector;
    let mut kernel_rule = name_rule(selector.matcher.as_ref());
    // Users and exclusions are judged by userspace: where such a rule's name (or cgroup)
    // matches, the kernel side asks instead of watching, so it never follows a process the
    // rule leaves out; a rule by user alone asks about every exec.
    kernel_rule.defer = u32::from(!selector.users.is_empty() || !selector.exclude.is_empty());
    if selector.matcher.is_none() {
        kernel_rule.mode = if selector.cgroup.is_some() {
            RULE_ANY
        } else if !selector.users.is_empty() {
            RULE_ASK
        } else {
            RULE_NEVER
        };
    }
    let cgroup = match (&selector.cgroup, rules.cgroup_present(index)) {
        (Some(cgroup), true) => {
            let dir = cgroup.directory().map_err(io::Error::other)?;
            kernel_rule.cgroup = CGROUP_MEMBER;
            Some(std::fs::File::open(&dir)?)
        }
        (Some(_), false) => {
            kernel_rule.mode = RULE_NEVER;
            None
        }
        (None, _) => None,
    };
    if rule.limit.is_per_process() {
        kernel_rule.cgroup |= CGROUP_LIMIT;
    }
    let limit = rules.fixed_limit(index);
    kernel_rule.limit = limit.unwrap_or(u64::MAX);
    let count_swap = rule.count.swap();
    kernel_rule.trigger = limit.map_or(u64::MAX, |limit| judging.trigger(limit, count_swap));
    kernel_rule.watch_flags |=
        judging.watch_flags(count_swap, rule.group.is_some(), rule.leak.is_some());
    kernel_rule.warn_below = limit.map_or(0, |limit| warn_below(limit, rule.warn_level(limit)));
    kernel_rule.profile_from = limit
        .and_then(|limit| rule.growth_from(limit))
        .unwrap_or(u64::MAX);
    kernel_rule.signal = if kernel_signal {
        rule.signal.number() as u32
    } else {
        0
    };
    Ok((kernel_rule, cgroup))
}

/// The kernel side's view of a name match.
fn name_rule(matcher: Option<&Matcher>) -> Rule {
    let Some(matcher) = matcher else {
        return Rule::default();
    };
    let name = matcher.name();
    let mode = match matcher.mode() {
        MatchMode::Prefix | MatchMode::Exact if name.len() > COMM_LEN => RULE_ASK_IF_EQUAL,
        MatchMode::Prefix => RULE_PREFIX,
        MatchMode::Exact => RULE_EXACT,
        MatchMode::Regex | MatchMode::Cmdline | MatchMode::CmdlineRegex => RULE_ASK,
    };
    debug_assert_ne!(mode, RULE_NONE);
    Rule::named(mode, &name[..name.len().min(COMM_LEN)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Rule as RuleOfSet, Selector, WarnAt};
    use crate::units::SizeSpec;

    #[test]
    fn the_warning_level_is_written_with_the_trigger_from_the_rule() {
        const MIB: u64 = 1 << 20;
        let judging = Judging {
            accounting: Accounting::Atomic,
            sums_cpus: false,
        };
        let matcher = Matcher::new(MatchMode::Prefix, "app").unwrap();
        let mut warned = RuleOfSet::new("w", Selector::name(matcher), SizeSpec::Bytes(100 * MIB));
        warned.warn_at = Some(WarnAt::PercentOfLimit(80.0));
        let mut per_process = warned.clone();
        per_process.name = "p".to_string();
        per_process.limit = SizeSpec::PercentOfCgroup(90.0);
        let plain = RuleOfSet {
            name: "n".to_string(),
            warn_at: None,
            ..warned.clone()
        };
        let rules = RuleSet::new(vec![warned, per_process, plain]).unwrap();
        let (rule, _) = kernel_rule(&rules, 0, false, judging).unwrap();
        assert_eq!(rule.warn_below, 20 * MIB);
        assert_eq!(rule.trigger, judging.trigger(100 * MIB, false));
        // Worked out per process, with the limit, when the process is followed.
        let (rule, _) = kernel_rule(&rules, 1, false, judging).unwrap();
        assert_eq!((rule.trigger, rule.warn_below), (u64::MAX, 0));
        let (rule, _) = kernel_rule(&rules, 2, false, judging).unwrap();
        assert_eq!(rule.warn_below, 0);
    }

    #[test]
    fn name_rules_mirror_the_matcher() {
        let rule = |mode, name: &str| name_rule(Some(&Matcher::new(mode, name).unwrap()));
        assert_eq!(
            rule(MatchMode::Prefix, "my-app"),
            Rule::named(RULE_PREFIX, b"my-app")
        );
        assert_eq!(
            rule(MatchMode::Exact, "my-app"),
            Rule::named(RULE_EXACT, b"my-app")
        );
        assert_eq!(rule(MatchMode::Regex, "^a").mode, RULE_ASK);
        assert_eq!(rule(MatchMode::Cmdline, "--port").mode, RULE_ASK);
        assert_eq!(
            rule(MatchMode::CmdlineRegex, "--port=[0-9]+").mode,
            RULE_ASK
        );
        let long = rule(MatchMode::Prefix, "my-application-server");
        assert_eq!(long, Rule::named(RULE_ASK_IF_EQUAL, b"my-application-"));
        assert_eq!(name_rule(None).mode, RULE_NONE);
    }
}
