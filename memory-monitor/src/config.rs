//! What a monitor is told to do: the rules and the settings that are not a rule's, checked.
//! The `memory-monitor` program makes one from its command line; [`Config::new`] makes one in
//! code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::choice::{self, Choice};
pub use crate::kernel::Attach;
use crate::rules::{self, Defaults, Rule, RuleSet, RulesError};

/// A validated monitor configuration; build one with [`Config::new`] or from a command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The rules in force: which processes to watch and what to do.
    pub rules: RuleSet,
    /// Where the rules came from, to read them again on SIGHUP.
    pub source: RulesSource,
    /// How often the poll source looks at `/proc`.
    pub interval: Duration,
    /// Log what would be signalled, send nothing.
    pub dry_run: bool,
    /// One pass, then stop.
    pub once: bool,
    /// Most processes watched at once; more are skipped (and counted).
    pub max_processes: usize,
    /// Where RSS changes come from.
    pub mode: Mode,
    /// In eBPF mode, have the kernel side send the signal itself at the crossing.
    pub kernel_signal: bool,
    /// In eBPF mode, have the kernel count the RSS program's runs and run time while the
    /// monitor runs, for its metrics. Off by default: counting costs about 20 ns a run.
    pub bpf_stats: bool,
    /// In eBPF mode, how the RSS program attaches to `kmem:rss_stat`.
    pub attach: Attach,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<SocketAddr>,
    /// Harden the process once started: drop the capabilities no longer needed, lock its
    /// memory, set its OOM score adjustment to this. For the
    /// `memory-monitor` program; a library user's process is left as it is (`None`).
    pub harden: Option<Hardening>,
}

/// How the monitor's own process is hardened once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: i32,
}

/// Where a configuration's rules come from: the command line's rule, a rules file, or both
/// (the command line's first).
#[derive(Debug, Clone)]
pub struct RulesSource {
    /// The rule the command-line options make, if they make one.
    pub command_line: Option<Rule>,
    /// The rules file (`--config`).
    pub file: Option<PathBuf>,
    /// What the file's rules take from the command line (by default, a repeat every
    /// [`DEFAULT_INTERVAL`]).
    pub defaults: Defaults,
    /// Read the file again whenever it changes (`--watch-config`), not only on SIGHUP.
    pub watch: bool,
}

impl Default for RulesSource {
    fn default() -> RulesSource {
        RulesSource {
            command_line: None,
            file: None,
            defaults: Defaults {
                repeat: Some(DEFAULT_INTERVAL),
            },
            watch: false,
        }
    }
}

impl RulesSource {
    /// Reads the rules (the file again, if there is one).
    pub fn load(&self) -> Result<RuleSet, RulesError> {
        let mut rules: Vec<Rule> = self.command_line.iter().cloned().collect();
        if let Some(file) = &self.file {
            rules.extend(rules::load_file(file, self.defaults)?);
        }
        RuleSet::new(rules)
    }
}

/// Default for `--interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// Default for `--max-processes`.
pub const DEFAULT_MAX_PROCESSES: usize = 16384;

/// How the monitor learns about memory changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// eBPF when this host allows it, else polling (saying why once).
    Auto,
    /// eBPF only: fail (exit 1) with the reason when it cannot run.
    Ebpf,
    /// Poll `/proc` every interval.
    Poll,
}

impl Choice for Mode {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Mode::Auto,
            "auto",
            "eBPF when this host allows it, else polling (saying why once)",
        ),
        (
            Mode::Ebpf,
            "ebpf",
            "eBPF only: fail (exit 1) with the reason when it cannot run",
        ),
        (Mode::Poll, "poll", "Poll `/proc` every interval"),
    ];
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        choice::write_name(*self, f)
    }
}

impl Config {
    /// A configuration applying `rules`, polling every 2 s when it polls.
    pub fn new(rules: RuleSet) -> Config {
        Config {
            rules,
            source: RulesSource::default(),
            interval: DEFAULT_INTERVAL,
            dry_run: false,
            once: false,
            max_processes: DEFAULT_MAX_PROCESSES,
            mode: Mode::Auto,
            kernel_signal: false,
            bpf_stats: false,
            attach: Attach::Auto,
            metrics_addr: None,
            harden: None,
        }
    }
}
