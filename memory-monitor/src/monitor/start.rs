//! Start-up: which source the host allows, what is followed of the file system, how the
//! monitor hardens itself, and the lines that say what it watches and how.

use rustix::thread::CapabilitySet;

use crate::Error;
use crate::accounting::{Exact, POLLING_WALKS};
use crate::act::deliver;
use crate::config::{Config, Mode, RulesSource};
use crate::kernel::{self, Loaded, Setup};
use crate::policy::Policy;
use crate::rules::{Rule, RuleSet};
use crate::system::inotify::Changes;
use crate::units::{Bytes, Period};

/// The kernel side when it loads, else why the monitor polls.
pub(crate) fn choose_source(config: &Config) -> Result<Result<Loaded, String>, Error> {
    let settings = kernel::Settings {
        rules: &config.rules,
        max_processes: config.max_processes,
        kernel_signal: config.kernel_signal,
        bpf_stats: config.bpf_stats,
        attach: config.attach,
        debug_log: tracing::enabled!(tracing::Level::DEBUG),
    };
    match config.mode {
        Mode::Poll => Ok(Err("--mode poll".to_string())),
        _ if config.once => Ok(Err("--once".to_string())),
        Mode::Ebpf => kernel::load(&settings).map(Ok).map_err(Error::Ebpf),
        Mode::Auto => {
            Ok(kernel::load(&settings).map_err(|reason| format!("eBPF unavailable: {reason}")))
        }
    }
}

/// How the monitor runs, for its start line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Running<'a> {
    /// The kernel side (eBPF mode), or why it polls and how often.
    pub(crate) source: Result<&'a Setup, (&'a str, std::time::Duration)>,
    /// Nothing is acted on: `--dry-run`, or `--once`.
    pub(crate) dry_run: bool,
    /// `--once`: one check, then exit.
    pub(crate) once: bool,
    /// `--kernel-signal` in eBPF mode.
    pub(crate) kernel_signal: bool,
    /// How many processes each rule selects now, in the rules' order.
    pub(crate) matched: &'a [u32],
}

impl Running<'_> {
    /// What the start line adds to "watching …": how many processes now, and what is not done.
    fn note(&self) -> String {
        let matched: u32 = self.matched.iter().sum();
        let processes = match matched {
            1 => "1 process now".to_string(),
            n => format!("{n} processes now"),
        };
        let acting = match (self.once, self.dry_run) {
            (true, _) => "; one check: nothing is signalled or run",
            (false, true) => "; dry run: nothing is signalled or run",
            (false, false) => "",
        };
        format!(" ({processes}{acting})")
    }
}

/// The start line (what is watched and how many processes that is now, the limit, the action,
/// the mode), the hardening the host did not allow, and a line per rule when there are
/// several.
pub(crate) fn log_start(rules: &RuleSet, running: Running<'_>, hardening: &[Note]) {
    let target = match rules.all() {
        [only] => only.selector.to_string(),
        all => format!("{} rules", all.len()),
    };
    let note = running.note();
    let matched: u32 = running.matched.iter().sum();
    // Several rules each have a line of their own, with their limit and action.
    let (limit, action) = match rules.all().len() {
        1 => {
            let (limit, action) = summary(rules, 0, running);
            (Some(limit), Some(action))
        }
        _ => (None, None),
    };
    match running.source {
        Ok(kernel) => tracing::info!(event = "start",
            matched,
            limit = limit.as_deref(),
            action = action.as_deref(),
            mode = %"ebpf",
            attach = %kernel.attach(),
            fault_cost = kernel.fault_cost().as_deref(),
            decides = %kernel.exact().0,
            decides_why = kernel.exact().1,
            margin = %kernel.margin(),
            sums_in_kernel = kernel.sums_in_kernel(),
            "watching {target}{note}"
        ),
        Err((why, interval)) => tracing::info!(event = "start",
            matched,
            limit = limit.as_deref(),
            action = action.as_deref(),
            mode = %"poll",
            interval = %Period(interval),
            decides = %Exact::choose(None),
            decides_why = (Exact::choose(None) == Exact::SmapsRollup).then_some(POLLING_WALKS),
            why = why,
            "watching {target}{note}"
        ),
    }
    if let Err((_, interval)) = running.source
        && let Some(caution) = crate::rules::caution::of_interval(interval)
    {
        tracing::warn!(event = "caution", "{caution}");
    }
    for note in hardening {
        note.say();
    }
    log_rules(rules, running);
}

/// One line per rule when there are several, and a warning for each caution about a rule's
/// values and for each rule whose cgroup does not exist.
pub(crate) fn log_rules(rules: &RuleSet, running: Running<'_>) {
    if rules.all().len() > 1 {
        for (index, rule) in rules.all().iter().enumerate() {
            let (limit, action) = summary(rules, index, running);
            let matched = running.matched.get(index).copied().unwrap_or(0);
            tracing::info!(event = "rule", rule = %rule.name, matched, limit = %limit, action = %action, "rule: {}", rule.selector);
        }
    }
    for rule in rules.all() {
        for caution in &rule.cautions {
            tracing::warn!(event = "caution", rule = %rule.name, "rule '{}': {caution}", rule.name);
        }
    }
    for rule in rules.missing_cgroups() {
        tracing::warn!(event = "cgroup_missing",
            rule = %rule.name,
            "cgroup {} does not exist (yet): it is waited for, and its processes are watched from the moment it is made",
            rule.selector.cgroup.as_ref().map(ToString::to_string).unwrap_or_default()
        );
    }
}

/// A rule's limit and what it does on breach, for the log.
fn summary(rules: &RuleSet, index: usize, running: Running<'_>) -> (String, String) {
    let rule = rules.get(index);
    let mut limit = match rules.fixed_limit(index) {
        Some(limit) => Bytes(limit).to_string(),
        None => rule.limit.to_string(),
    };
    if rule.count.swap() {
        limit += " of rss+swap";
    }
    if let Some(warn_at) = rule.warn_at {
        limit += &format!(", warning at {warn_at}");
    }
    if let Some(group) = &rule.group {
        limit += &format!(", {}", group.phrase());
    }
    let policy = Policy {
        limit: 0,
        warn: None,
        signal: rule.signal,
        repeat: rule.repeat,
        kill_after: rule.kill_after,
    };
    if running.once {
        return (limit, "none: --once only checks".to_string());
    }
    let mut action = deliver::describe(&policy, rule.act_on, running.kernel_signal);
    if let Some(profile) = &rule.profile {
        action = format!("profile to {}, then {action}", profile.sink);
    }
    if let Some(exec) = &rule.exec {
        action = format!("{action}; on breach run '{}'", exec.command);
    }
    if running.dry_run {
        action = format!("none (dry run); would be: {action}");
    }
    (limit, action)
}

/// What to follow of the file system's changes for `rules`, read from `source` (see
/// [`crate::system::inotify`]): the rules' cgroups and limits, and with `--watch-config` the
/// rules file; nothing for a single check (`once`). A rules file may name cgroups after a
/// reload, so with one there is always something to follow.
pub(crate) fn follow_changes(rules: &RuleSet, source: &RulesSource, once: bool) -> Option<Changes> {
    let wanted = rules.all().iter().any(Rule::depends_on_cgroups) || source.file.is_some();
    if !wanted || once {
        return None;
    }
    let mut changes = match Changes::new() {
        Ok(changes) => changes,
        Err(error) => {
            tracing::warn!(
                event = "changes_unfollowed",
                "cannot follow changes of cgroups and the rules file ({error}); they are seen on reload"
            );
            return None;
        }
    };
    if let (true, Some(file)) = (source.watch, &source.file)
        && let Err(error) = changes.follow_rules_file(file)
    {
        tracing::warn!(event = "changes_unfollowed", file = %file.display(), "cannot follow changes of the rules file ({error}); SIGHUP reads it again");
    }
    Some(changes)
}

/// Another monitor with the same rules (see [`crate::host::peers`]): the lock that tells the next
/// one of this monitor, or the warning naming the one that holds it. Only a monitor that acts
/// takes it: a dry run or a check may run beside one with its rules.
pub(crate) fn notice_peers(rules: &RuleSet) -> (Option<crate::host::peers::Lock>, Option<Note>) {
    use crate::host::peers::{self, Found};
    let text = crate::rules::describe::describe_rules(rules);
    match peers::take(std::path::Path::new(peers::DIR), &text) {
        Found::Taken(lock) => (Some(lock), None),
        Found::Held(said) => (None, Some(Note::warning_of("other_monitor", said))),
        Found::Unknown => (None, None),
    }
}

/// Start-up hardening (see [`crate::host::harden`]): the OOM score, the memlock limit, then the
/// capabilities no longer needed and `no_new_privs`. Each that cannot be done is said once and
/// the monitor goes on.
pub(crate) fn harden_start(
    hardening: crate::config::Hardening,
    keep_for_maps: CapabilitySet,
) -> Vec<Note> {
    use crate::host::harden;
    let mut notes = Vec::new();
    // Lowering the score needs CAP_SYS_RESOURCE, which roots in containers often lack: said
    // once, not a warning; the score stays what the service manager set.
    if let Err(error) = harden::set_oom_score_adj(hardening.oom_score_adj) {
        notes.push(Note::info(harden::oom_score_refused(
            hardening.oom_score_adj,
            &error,
        )));
    }
    let _ = harden::lift_memlock_limit();
    if !keep_for_maps.is_empty() {
        notes.push(Note::info(
            "keeping CAP_BPF: this kernel asks for it on every BPF map access, not only at load (kernel.unprivileged_bpf_disabled)".to_string(),
        ));
    }
    match harden::drop_capabilities(keep_for_maps) {
        Ok(true) => {}
        // Said once, like the OOM score: no_new_privs (below) covers what the set still holds.
        Ok(false) => notes.push(Note::info(
            "capability bounding set not reduced (that needs CAP_SETPCAP); no_new_privs keeps execs from gaining what it holds".to_string(),
        )),
        Err(error) => notes.push(Note::warning(format!("cannot drop capabilities ({error})"))),
    }
    if let Err(error) = harden::forbid_new_privileges() {
        notes.push(Note::warning(format!("cannot set no_new_privs ({error})")));
    }
    notes
}

/// A hardening step the host did not allow, said after the start line (which says first what
/// the monitor watches and how).
#[derive(Debug)]
pub(crate) struct Note {
    event: &'static str,
    warning: bool,
    text: String,
}

impl Note {
    fn info(text: String) -> Note {
        Note {
            event: "harden",
            warning: false,
            text,
        }
    }

    fn warning(text: String) -> Note {
        Note {
            event: "harden",
            warning: true,
            text,
        }
    }

    /// A warning of another kind than hardening's, said after the start line too.
    pub(crate) fn warning_of(event: &'static str, text: String) -> Note {
        Note {
            event,
            warning: true,
            text,
        }
    }

    pub(crate) fn say(&self) {
        let (event, text) = (self.event, &self.text);
        match self.warning {
            true => tracing::warn!(event, "{text}"),
            false => tracing::info!(event, "{text}"),
        }
    }
}

/// Locks the monitor's memory, when that can never make an allocation fail.
pub(crate) fn lock_memory() {
    if !crate::host::harden::can_lock_memory() {
        // Said once, like the OOM score: the host decides, the monitor goes on.
        tracing::info!(
            event = "harden",
            "memory not locked: RLIMIT_MEMLOCK is limited and CAP_IPC_LOCK is missing (locking could make the monitor's own allocations fail)"
        );
        return;
    }
    if let Err(error) = crate::host::harden::lock_memory() {
        tracing::warn!(event = "harden", "cannot lock memory ({error})");
    }
}
