//! The command line: the one part of the library that knows clap. It parses the options into
//! a [`RuleSpec`] (built and checked by the rules, as a rules file's are) and a [`Config`].
//!
//! Every invocation the original tool (mnutt/memory-monitor) accepts means the same here:
//! `-m 500` is 500 MiB, `-i 3` is three seconds, `-s SIGUSR1` a signal, `<name>` a prefix of
//! the process name, and a process still over its limit is signalled again every interval.
//!
//! Each flag's doc comment is its help: the first paragraph, one line, is what `-h` shows; the
//! whole is what `--help` and the man page show.

mod help;
pub mod list;
mod manual;
mod parsers;

pub use crate::rules::describe::describe_rules;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory as _, FromArgMatches as _, Parser};

use self::help::{ADVANCED, EXAMPLES};
use self::parsers::{
    ChoiceParser, SignalParser, parse_capacity, parse_cgroup, parse_listen_address, parse_named,
    parse_pid, parse_user,
};
use crate::config::{Config, DEFAULT_MAX_PROCESSES, Hardening, Mode, RulesSource};
use crate::host::logging::{LogFormat, LogSettings};
use crate::kernel::Attach;
use crate::matcher::{MatchMode, Matcher};
use crate::rules::count::Count;
use crate::rules::{COMMAND_LINE_RULE, Defaults, Exclude, Pinned, Repeat, Rule, RuleSpec};
use crate::signal::Signal;
use crate::sink::SinkSpec;
use crate::system::cgroup::CgroupPath;
use crate::units::{self, SizeSpec};

/// A command line or setting that cannot work, with one line saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What `--help`, `--version` and `--manual` print instead of running.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these settings.
    Run(Box<Settings>),
    /// Print this (help or version text) on stdout and exit 0.
    Print(String),
    /// `--manual`: show this man page (roff), through `man` on a terminal, and exit 0.
    Manual(String),
}

/// Everything the command line asks for: the monitor's [`Config`] and how to log.
#[derive(Debug)]
pub struct Settings {
    /// What to watch and what to do.
    pub config: Config,
    /// How to log.
    pub log: LogSettings,
    /// `--check-config`: only check, print the rules and exit.
    pub check_only: bool,
    /// `--list`: print what the rules select now and exit.
    pub list: bool,
}

/// The command line (see `memory-monitor --help`).
#[derive(Debug, Parser)]
#[command(
    name = "memory-monitor",
    version,
    about = help::ABOUT,
    after_help = help::AFTER_SHORT_HELP,
    before_long_help = help::before_long_help(),
    after_long_help = help::AFTER_LONG_HELP,
    max_term_width = 100
)]
struct Cli {
    /// Process name to watch (a prefix, unless --match says otherwise).
    ///
    /// Every process whose name (the kernel's 15-byte `comm`) starts with NAME, unless --match
    /// says otherwise. Names longer than 15 bytes are compared with the program name in the
    /// process's command line. One NAME only: for several, use --match regex 'one|two', or a
    /// rules file (--config).
    #[arg(value_name = "NAME", required_unless_present_any = ["pids", "generate", "manual", "cgroup", "users", "config"])]
    name: Option<String>,

    /// Memory limit: 500 (MiB), 2G, 25% (of RAM), "90% of cgroup".
    ///
    /// A process whose RSS goes over it is signalled. Sizes are binary (1M = 1 MiB; MB is
    /// read as MiB too, with a warning); "90% of cgroup" is of the memory limit of each
    /// process's cgroup. A limit under 4 MiB is warned about: nearly every process is over
    /// it. Optional with --list, whose USED column is then the share of RAM.
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = units::parse_size, allow_hyphen_values = true, required_unless_present_any = ["generate", "manual", "config", "list"])]
    max_memory: Option<SizeSpec>,

    /// Signal to send on breach: TERM, USR1, 15, … [default: TERM]
    ///
    /// A name with or without SIG, in any case (TERM, sigusr1, RTMIN+3), or a number. Signals
    /// that stop a process (STOP, TSTP, TTIN, TTOU) are refused: a stopped process keeps all
    /// its memory. Repeating KILL is warned about (a second SIGKILL does nothing more).
    #[arg(short, long, value_name = "SIG", value_parser = SignalParser, hide_possible_values = true)]
    signal: Option<Signal>,

    /// How often poll mode checks: 2 (seconds), 250ms, 1m.
    ///
    /// Polling more often than every 100ms is warned about: it keeps a CPU busy. In eBPF
    /// mode nothing is periodic, but a process still over its limit is signalled again this
    /// often (see --repeat).
    #[arg(short, long, value_name = "DURATION", default_value = "2", value_parser = units::parse_duration, allow_hyphen_values = true)]
    interval: Duration,

    /// Match NAME as: prefix (default), exact, regex, cmdline[-regex].
    ///
    /// prefix (the start of the name), exact (the whole name), regex (a regular expression on
    /// the name), cmdline (NAME appears anywhere in the full command line), cmdline-regex (a
    /// regular expression on the full command line).
    #[arg(long = "match", value_name = "HOW", value_parser = ChoiceParser::<MatchMode>::new(), default_value = "prefix", hide_default_value = true, hide_possible_values = true)]
    match_mode: MatchMode,

    /// Also watch this process, whatever its name (repeatable).
    ///
    /// NAME is optional with --pid. The process is known by its PID and start time: another
    /// process given the PID after it exits is not watched in its place.
    #[arg(long = "pid", value_name = "PID", value_parser = parse_pid, allow_hyphen_values = true, action = ArgAction::Append)]
    pids: Vec<i32>,

    /// Watch the processes of this cgroup (v2) and those below it.
    ///
    /// A systemd unit (/system.slice/nginx.service) or a container, as /proc/PID/cgroup shows
    /// it, or its directory under the cgroup mount. With NAME, only those of its processes
    /// whose name matches. A cgroup that does not exist yet is waited for, as in a rules
    /// file: the monitor says so, and watches its processes from the moment it is made.
    #[arg(long, value_name = "PATH", value_parser = parse_cgroup)]
    cgroup: Option<CgroupPath>,

    /// Watch the processes of this user, a name or a uid (repeatable).
    ///
    /// By the user they run as (effective uid); several: any of them. With NAME or --cgroup,
    /// only those that match too.
    #[arg(long = "user", value_name = "USER", value_parser = parse_user, action = ArgAction::Append)]
    users: Vec<u32>,

    /// Leave out processes with this exact name (repeatable).
    ///
    /// However else they match.
    #[arg(long = "exclude-name", value_name = "NAME", value_parser = parse_named(MatchMode::Exact), action = ArgAction::Append)]
    exclude_names: Vec<Matcher>,

    /// Leave out processes whose name matches REGEX (repeatable).
    #[arg(long = "exclude-regex", value_name = "REGEX", value_parser = parse_named(MatchMode::Regex), action = ArgAction::Append)]
    exclude_regexes: Vec<Matcher>,

    /// Leave out processes of this user, a name or a uid (repeatable).
    #[arg(long = "exclude-user", value_name = "USER", value_parser = parse_user, action = ArgAction::Append)]
    exclude_users: Vec<u32>,

    /// Leave out processes of this cgroup and below it (repeatable).
    #[arg(long = "exclude-cgroup", value_name = "PATH", value_parser = |t: &str| CgroupPath::parse(t).map_err(|e| e.to_string()), action = ArgAction::Append)]
    exclude_cgroups: Vec<CgroupPath>,

    /// Signal again this often while over, or never [default: --interval]
    ///
    /// Counted from the last signal.
    #[arg(long, value_name = "DURATION|never", value_parser = Repeat::parse, allow_hyphen_values = true, conflicts_with = "once")]
    repeat: Option<Repeat>,

    /// SIGKILL a process still over this long after its first signal.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, allow_hyphen_values = true, conflicts_with = "once")]
    kill_after: Option<Duration>,

    /// Run this shell command on each breach, after the signal.
    ///
    /// Its environment holds MM_PID, MM_NAME, MM_UID, MM_USER (the user it runs as),
    /// MM_RSS_BYTES, MM_LIMIT_BYTES, MM_SIGNAL, MM_PROFILE (the profile's name, if any) and
    /// MM_RULE (the rule's name), and MM_CONTAINER_ID and MM_POD_UID (from its cgroup path;
    /// empty outside a container or pod). At most 4 run at once; none holds up the monitor.
    /// Not run in a dry run (--dry-run, --once).
    #[arg(long, value_name = "COMMAND")]
    exec: Option<String>,

    /// Print what each rule selects now (RSS, limit, share used) and exit.
    ///
    /// Every process each rule selects now, with its RSS, limit, share of the limit and user,
    /// once: a table, or one JSON object per line with --log-format json. Nothing is
    /// signalled, and --max-memory is optional.
    #[arg(long, conflicts_with_all = ["check_config", "once", "watch_config"])]
    list: bool,

    /// Log what would be signalled; signal nothing, run nothing.
    ///
    /// Each breach is logged as "would signal" (result="not sent (dry run)"); no signal is
    /// sent, no --exec command is run and no profile is written.
    #[arg(long)]
    dry_run: bool,

    /// Check once, signal nothing; exit 1 if a process is over, else 0.
    ///
    /// One look at every process, for a monitoring check or a script: a process over its
    /// limit is logged, as with --dry-run, and never signalled; no --exec command is run and
    /// no profile is written.
    #[arg(long)]
    once: bool,

    /// Read rules from this TOML file (see --manual for its format).
    ///
    /// Several rules, each with its own match, limit, signal and actions; the first rule that
    /// selects a process applies. The command line's NAME, --pid or --cgroup make one more
    /// rule, checked first. SIGHUP reads the file again (a bad file keeps the rules in force).
    /// The format is in the man page (memory-monitor --manual), section RULES FILE.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check the command line and rules file, print them, and exit.
    ///
    /// Exit status 0 if they are good (warnings included), 2 with the reason if not.
    #[arg(long)]
    check_config: bool,

    /// Log more: -v each check and internal counters, -vv everything.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Log less: -q warnings and errors only, -qq errors only.
    #[arg(short, long, action = ArgAction::Count)]
    quiet: u8,

    /// Show the manual: every flag, the rules file format, signals.
    ///
    /// Through man(1) on a terminal; otherwise its roff source, for `man -l -`.
    #[arg(long, exclusive = true)]
    manual: bool,

    /// How RSS changes are learned: auto, ebpf, poll [default: auto]
    ///
    /// auto: eBPF when the host allows it (root, or CAP_BPF and CAP_PERFMON), else polling,
    /// with the reason logged once; ebpf: fail if it cannot run; poll: read /proc every
    /// interval.
    #[arg(long, value_name = "MODE", value_parser = ChoiceParser::<Mode>::new(), default_value = "auto", hide_default_value = true, hide_possible_values = true, help_heading = ADVANCED)]
    mode: Mode,

    /// eBPF mode: the kernel sends the signal itself, at the crossing.
    ///
    /// In the process's own context, the moment its RSS (by the kernel's approximate
    /// counters) passes the limit, so the signal is pending before the process allocates
    /// further. Userspace still confirms, logs, repeats and escalates.
    #[arg(long, conflicts_with = "dry_run", help_heading = ADVANCED)]
    kernel_signal: bool,

    /// eBPF mode: attach as tp-btf, tracepoint, or auto (the default).
    ///
    /// To kmem:rss_stat: tp-btf (a BTF-typed raw tracepoint, the cheaper; needs the kernel's
    /// BTF), tracepoint (a classic tracepoint), or auto (tp-btf where possible).
    #[arg(long, value_name = "HOW", value_parser = ChoiceParser::<Attach>::new(), default_value = "auto", hide_default_value = true, hide_possible_values = true, help_heading = ADVANCED)]
    attach: Attach,

    /// What counts toward the limit: rss or rss+swap [default: rss]
    ///
    /// rss is resident memory; rss+swap adds what the process has in swap (a process whose
    /// pages went to swap still uses that memory).
    #[arg(long, value_name = "WHAT", value_parser = ChoiceParser::<Count>::new(), hide_possible_values = true, help_heading = ADVANCED)]
    count: Option<Count>,

    /// On breach, write a memory profile into this directory first.
    ///
    /// A pprof profile (gzip: which mappings hold the memory) of the process, before the
    /// signal. Short for --profile-to dir:PATH.
    #[arg(long, value_name = "PATH", help_heading = ADVANCED)]
    profile_dir: Option<std::path::PathBuf>,

    /// On breach, hand a profile to dir:, cmd:, http(s):// or s3://.
    ///
    /// dir:PATH (a file), cmd:COMMAND (run with the profile on stdin and MM_PROFILE_NAME,
    /// MM_PID, MM_NAME, MM_RSS_BYTES, MM_LIMIT_BYTES, MM_CONTAINER_ID, MM_POD_UID in its
    /// environment; a flame graph, .svg, follows each .pb.gz), http(s)://HOST/PATH (PUT to
    /// the URL plus the name), or s3://BUCKET/PREFIX (credentials, region and endpoint from
    /// the AWS_* environment).
    #[arg(long, value_name = "DEST", help_heading = ADVANCED)]
    profile_to: Option<SinkSpec>,

    /// Longest a signal waits for its profile [default: 50ms]
    ///
    /// The longest a breach's signal waits for the profile to be captured; past it the
    /// signal goes first.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, allow_hyphen_values = true, help_heading = ADVANCED)]
    profile_budget: Option<Duration>,

    /// eBPF mode: sample growth past this share of limit [default: 80%]
    ///
    /// Once a process is above this share of its limit, the code paths that grow its memory
    /// are sampled (one stack per 256 KiB grown), so its profile names the code that grew it:
    /// 80%, 50%, 0% (from the start).
    #[arg(long, value_name = "PERCENT", value_parser = units::parse_percent, help_heading = ADVANCED)]
    profile_at: Option<u32>,

    /// Kill an --exec command still running after this [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, allow_hyphen_values = true, help_heading = ADVANCED)]
    exec_timeout: Option<Duration>,

    /// Serve Prometheus metrics at this address (:9477, 127.0.0.1:9477)
    ///
    /// On /metrics. [::]:9477 or :9477 listen on every interface. The port is bound before the monitor
    /// drops its capabilities, so root may use a port under 1024.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen_address, help_heading = ADVANCED)]
    metrics_addr: Option<SocketAddr>,

    /// Read the rules file again whenever it changes, as on SIGHUP.
    ///
    /// An editor saving it, a Kubernetes ConfigMap updated: a file that cannot be used keeps
    /// the rules in force.
    #[arg(long, requires = "config", help_heading = ADVANCED)]
    watch_config: bool,

    /// The monitor's OOM score adjustment (-1000..1000)
    ///
    /// The OOM killer should take the monitor last, yet still be able to take a monitor gone
    /// wrong. Lowering it needs CAP_SYS_RESOURCE; without it the monitor says so once.
    #[arg(long, value_name = "N", default_value_t = crate::host::harden::DEFAULT_OOM_SCORE_ADJ, value_parser = clap::value_parser!(i32).range(-1000..=1000), allow_negative_numbers = true, help_heading = ADVANCED)]
    oom_score_adj: i32,

    /// Most processes watched at once
    ///
    /// Further matches are skipped, with one warning.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PROCESSES, value_parser = parse_capacity, allow_hyphen_values = true, help_heading = ADVANCED)]
    max_processes: usize,

    /// Log line format on stderr: text or json [default: text]
    #[arg(long, value_name = "FORMAT", value_parser = ChoiceParser::<LogFormat>::new(), default_value = "text", hide_default_value = true, hide_possible_values = true, help_heading = ADVANCED)]
    log_format: LogFormat,

    /// Print documentation generated from this command line: a man page (man) or shell
    /// completions (bash, zsh, fish). Used by `cargo xtask dist`.
    #[arg(long, value_name = "WHAT", value_enum, hide = true, exclusive = true)]
    generate: Option<Generate>,

    /// The decimal unit --max-memory was written with (`MB`), for its caution.
    #[arg(skip)]
    decimal_unit: Option<String>,
}

/// `--generate`: what to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Generate {
    Man,
    Bash,
    Zsh,
    Fish,
}

impl Generate {
    /// The man page or completion script for the command line.
    fn text(self) -> String {
        let mut command = Cli::command();
        let mut out = Vec::new();
        let shell = match self {
            Generate::Man => return manual::render(command, &EXAMPLES),
            Generate::Bash => clap_complete::Shell::Bash,
            Generate::Zsh => clap_complete::Shell::Zsh,
            Generate::Fish => clap_complete::Shell::Fish,
        };
        clap_complete::generate(shell, &mut command, "memory-monitor", &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Parses a command line (`args[0]` is the program name).
pub fn parse_args<I, T>(args: I) -> Result<Parsed, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let parsed = Cli::command()
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (mut cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) if !error.use_stderr() => {
            return Ok(Parsed::Print(error.render().to_string()));
        }
        Err(error) => return Err(help::one_line(&error)),
    };
    if let Some(generate) = cli.generate {
        return Ok(Parsed::Print(generate.text()));
    }
    if cli.manual {
        return Ok(Parsed::Manual(Generate::Man.text()));
    }
    cli.decimal_unit = matches
        .get_raw("max_memory")
        .and_then(|mut raw| raw.next())
        .and_then(|raw| units::decimal_unit(&raw.to_string_lossy()));
    let settings = cli.into_settings()?;
    if settings.check_only {
        let mut text = describe_rules(&settings.config.rules);
        let interval = crate::rules::caution::of_interval(settings.config.interval);
        if let (Mode::Poll, Some(caution)) = (settings.config.mode, interval) {
            text += &format!("warning: {caution}\n");
        }
        return Ok(Parsed::Print(text));
    }
    Ok(Parsed::Run(Box::new(settings)))
}

impl Cli {
    fn into_settings(self) -> Result<Settings, UsageError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{DEFAULT_PROFILE_AT_PERCENT, DEFAULT_PROFILE_BUDGET};

    #[test]
    fn help_gives_the_profile_defaults_in_force() {
        use clap::CommandFactory as _;
        let help = Cli::command().render_long_help().to_string();
        let budget = format!("[default: {}]", units::Period(DEFAULT_PROFILE_BUDGET));
        assert!(help.contains(&budget), "{budget} in {help}");
        let at = format!("[default: {DEFAULT_PROFILE_AT_PERCENT}%]");
        assert!(help.contains(&at), "{at} in {help}");
    }

    fn settings(args: &[&str]) -> Settings {
        let argv = std::iter::once("memory-monitor").chain(args.iter().copied());
        match parse_args(argv) {
            Ok(Parsed::Run(settings)) => *settings,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    /// The command line's rule.
    fn rule(s: &Settings) -> &Rule {
        s.config.rules.get(0)
    }

    fn limit(s: &Settings) -> u64 {
        s.config.rules.fixed_limit(0).unwrap()
    }

    fn error(args: &[&str]) -> String {
        let argv = std::iter::once("memory-monitor").chain(args.iter().copied());
        match parse_args(argv) {
            Err(UsageError(message)) => message,
            other => panic!("{args:?} should fail: {other:?}"),
        }
    }

    #[test]
    fn the_man_page_and_completions_cover_every_option() {
        let man = match parse_args(["memory-monitor", "--generate", "man"]) {
            Ok(Parsed::Print(text)) => text,
            other => panic!("{other:?}"),
        };
        let bash = Generate::Bash.text();
        let command = Cli::command();
        let options = command
            .get_arguments()
            .filter(|arg| !arg.is_hide_set())
            .filter_map(|arg| arg.get_long());
        for long in options {
            // roff escapes every dash.
            let escaped = format!("--{long}").replace('-', "\\-");
            assert!(man.contains(&escaped), "man page lacks --{long}");
            assert!(
                bash.contains(&format!("--{long}")),
                "bash completion lacks --{long}"
            );
        }
        assert!(
            !man.contains("generate"),
            "the hidden --generate is not documented"
        );
        // What a command line cannot say, in sections of their own.
        for section in [
            ".SH \"RULES FILE\"",
            ".SH \"EXIT STATUS\"",
            ".SH SIGNALS",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH EXAMPLES",
        ] {
            assert!(man.contains(section), "man page lacks {section}");
        }
        for word in [
            "SIGHUP",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "JOURNAL_STREAM",
            "AWS_",
        ] {
            assert!(man.contains(word), "man page lacks {word}");
        }
        // Every section header once: the sections are not rendered twice.
        let headers: Vec<&str> = man.lines().filter(|l| l.starts_with(".SH")).collect();
        let mut unique = headers.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(headers.len(), unique.len(), "{headers:?}");
    }

    #[test]
    fn signal_names_complete_without_restricting_what_is_accepted() {
        for shell in [Generate::Bash, Generate::Zsh, Generate::Fish] {
            let script = shell.text();
            for name in ["TERM", "USR1", "KILL", "RTMIN"] {
                assert!(script.contains(name), "{shell:?} completion lacks {name}");
            }
        }
        for signal in ["RTMIN+3", "15", "sigusr2", "SIGTERM"] {
            let s = settings(&["-m", "1", "-s", signal, "x"]);
            assert_eq!(rule(&s).signal, signal.parse::<Signal>().unwrap());
        }
        // Help lists no possible values for it.
        let help = match parse_args(["memory-monitor", "--help"]) {
            Ok(Parsed::Print(text)) => text,
            other => panic!("{other:?}"),
        };
        assert!(!help.contains("HUP, INT"), "{help}");
        assert!(error(&["-m", "1", "-s", "FOO", "a"]).contains("unknown signal 'FOO'"));
    }

    #[test]
    fn exec_help_names_every_variable_a_hook_gets() {
        let command = Cli::command();
        let exec = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some("exec"))
            .unwrap();
        let help = exec.get_long_help().unwrap().to_string();
        // As hook.rs's runner sets them.
        let variables = [
            "MM_PID",
            "MM_NAME",
            "MM_UID",
            "MM_USER",
            "MM_RSS_BYTES",
            "MM_LIMIT_BYTES",
            "MM_SIGNAL",
            "MM_PROFILE",
            "MM_RULE",
            "MM_CONTAINER_ID",
            "MM_POD_UID",
        ];
        for variable in variables {
            assert!(help.contains(variable), "--exec help lacks {variable}");
        }
    }

    #[test]
    fn the_short_options_keep_their_meaning() {
        let s = settings(&["-m", "500", "-i", "3", "-s", "SIGUSR1", "example-process"]);
        assert_eq!(limit(&s), 500 << 20);
        assert_eq!(s.config.interval, Duration::from_secs(3));
        assert_eq!(rule(&s).signal.number(), libc::SIGUSR1);
        assert_eq!(rule(&s).repeat, Some(Duration::from_secs(3)));
        assert_eq!(
            rule(&s).selector.to_string(),
            "processes whose name starts with 'example-process'"
        );

        let s = settings(&["--max-memory", "100", "my-app"]);
        assert_eq!(limit(&s), 100 << 20);
        assert_eq!(s.config.interval, Duration::from_secs(2));
        assert_eq!(rule(&s).signal, Signal::TERM);
        assert!(!s.config.dry_run && !s.config.once);
        assert_eq!(rule(&s).kill_after, None);
        assert_eq!(rule(&s).name, COMMAND_LINE_RULE);
        assert_eq!(
            s.log,
            LogSettings {
                verbosity: 0,
                format: LogFormat::Text
            }
        );
    }

    #[test]
    fn extended_options() {
        let s = settings(&[
            "-m",
            "1.5GiB",
            "-i",
            "250ms",
            "--repeat",
            "never",
            "--kill-after",
            "30s",
            "--match",
            "exact",
            "--pid",
            "2",
            "--pid",
            "3",
            "-vv",
            "--log-format",
            "json",
            "--dry-run",
            "--max-processes",
            "10",
            "app",
        ]);
        assert_eq!(limit(&s), 3 << 29);
        assert_eq!(s.config.interval, Duration::from_millis(250));
        assert_eq!(rule(&s).repeat, None);
        assert_eq!(rule(&s).kill_after, Some(Duration::from_secs(30)));
        let pids: Vec<i32> = rule(&s).selector.pids.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [2, 3]);
        assert!(s.config.dry_run);
        assert_eq!(s.config.max_processes, 10);
        assert_eq!(
            s.log,
            LogSettings {
                verbosity: 2,
                format: LogFormat::Json
            }
        );
        assert_eq!(settings(&["-m", "1", "-qq", "x"]).log.verbosity, -2);
    }

    #[test]
    fn pid_alone_needs_no_name() {
        let s = settings(&["-m", "1", "--pid", "2"]);
        assert!(rule(&s).selector.matcher.is_none());
        assert_eq!(rule(&s).selector.to_string(), "PID 2");
    }

    #[test]
    fn errors_are_one_line() {
        let message = error(&["my-app"]);
        assert_eq!(
            message,
            "the following required arguments were not provided: --max-memory <SIZE>"
        );
        let message = error(&["-m", "5X", "app"]);
        assert!(
            message.contains("'5X'") && message.contains("unknown unit"),
            "{message}"
        );
        assert!(!error(&["--bogus", "-m", "1", "a"]).contains('\n'));
        assert!(error(&["-m", "1", "-s", "FOO", "a"]).contains("unknown signal 'FOO'"));
        assert!(error(&["-m", "1", "--pid", "1"]).contains("PID 1"));
        assert!(error(&["-m", "1", "  "]).contains("empty"));
    }

    fn printed(args: &[&str]) -> String {
        let argv = std::iter::once("memory-monitor").chain(args.iter().copied());
        match parse_args(argv) {
            Ok(Parsed::Print(text)) => text,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn short_help_is_one_line_a_flag_with_the_advanced_ones_apart() {
        let short = printed(&["-h"]);
        let command = Cli::command();
        let shown: Vec<_> = command
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .collect();
        // The about, the usage, the headings and the footer, and one line a flag.
        assert!(short.lines().count() <= shown.len() + 16, "{short}");
        for arg in &shown {
            let Some(long) = arg.get_long() else { continue };
            let line = short
                .lines()
                .find(|l| {
                    let flag = format!("--{long}");
                    l.split_whitespace()
                        .nth(usize::from(
                            l.trim_start().starts_with("-") && !l.trim_start().starts_with("--"),
                        ))
                        .is_some_and(|word| word.trim_end_matches('.') == flag)
                })
                .unwrap_or_else(|| panic!("-h lacks --{long}"));
            let at = short.find(line).unwrap() + line.len() + 1;
            let next = short[at..].lines().next().unwrap_or("");
            // A continuation is indented past the flags' column.
            assert!(
                !next.starts_with("                 "),
                "--{long} wraps:\n{line}\n{next}"
            );
        }
        let advanced = short
            .find(ADVANCED)
            .expect("a heading for the advanced flags");
        for everyday in ["--max-memory", "--signal", "--dry-run", "--once", "--list"] {
            assert!(short.find(everyday).unwrap() < advanced, "{everyday} first");
        }
        for rare in [
            "--attach",
            "--kernel-signal",
            "--profile-at",
            "--oom-score-adj",
        ] {
            assert!(
                short.find(rare).unwrap() > advanced,
                "{rare} under the heading"
            );
        }
    }

    #[test]
    fn full_help_gives_the_examples_first_and_no_word_a_user_cannot_look_up() {
        let full = printed(&["--help"]);
        let examples = full.find("Examples:").expect("examples");
        assert!(examples < full.find("--max-memory").unwrap(), "{full}");
        for (command, _) in EXAMPLES {
            assert!(full.contains(command), "{command}");
        }
        for jargon in ["seed", "original tool", "the README"] {
            assert!(!full.contains(jargon), "--help says {jargon:?}");
        }
        assert!(full.contains("--manual"), "--help names the manual");
    }

    #[test]
    fn the_manual_has_every_rules_file_key() {
        let page = match parse_args(["memory-monitor", "--manual"]) {
            Ok(Parsed::Manual(page)) => page,
            other => panic!("{other:?}"),
        };
        for key in crate::rules::file_keys() {
            let escaped = format!("\\fB{}\\fR", key.replace('-', "\\-"));
            assert!(page.contains(&escaped), "the man page lacks the key {key}");
        }
    }

    #[test]
    fn usage_errors_keep_the_hints() {
        let typo = error(&["-m", "1", "--dryrun", "x"]);
        assert!(typo.contains("'--dry-run'"), "{typo}");
        let second = error(&["-m", "500", "my-app", "extra"]);
        assert!(
            second.contains("only one NAME") && second.contains("--match regex"),
            "{second}"
        );
        // Negative values reach the value's own parser, which says what is wrong.
        for (args, said) in [
            (&["-m", "-5", "x"][..], "'-5' is negative"),
            (&["--repeat", "-1s", "-m", "1", "x"], "'-1s' is negative"),
            (&["--repeat=-1s", "-m", "1", "x"], "'-1s' is negative"),
            (&["-i", "-2", "-m", "1", "x"], "'-2' is negative"),
        ] {
            let message = error(args);
            assert!(message.contains(said), "{args:?}: {message}");
        }
        let jargon = error(&["--repeat", "1x2", "-m", "1", "x"]);
        assert!(!jargon.contains("expected"), "{jargon}");
    }

    #[test]
    fn list_needs_no_limit() {
        let s = settings(&["--list", "my-app"]);
        assert!(s.list);
        assert_eq!(rule(&s).limit, SizeSpec::PercentOfRam(100.0));
    }

    #[test]
    fn signals_that_stop_a_process_are_refused() {
        for signal in ["STOP", "TSTP", "TTIN", "sigttou", "19"] {
            let message = error(&["-m", "1", "-s", signal, "x"]);
            assert!(
                message.contains("keeps all its memory"),
                "{signal}: {message}"
            );
        }
    }

    #[test]
    fn check_config_warns_of_doubtful_values() {
        let table: [(&[&str], &str); 4] = [
            (
                &["-m", "500MB"],
                "warning: rule 'command-line': max-memory: 'MB'",
            ),
            (&["-m", "0.0001"], "less than nearly any process"),
            (&["-m", "1G", "-s", "KILL"], "SIGKILL again every 2s"),
            (
                &["-m", "1G", "-i", "1ms", "--mode", "poll"],
                "warning: --interval 1ms",
            ),
        ];
        for (args, said) in table {
            let text = printed(&[&["--check-config", "x"][..], args].concat());
            assert!(text.contains(said), "{args:?}: {text}");
        }
        let quiet = printed(&[
            "--check-config",
            "-m",
            "1G",
            "-s",
            "KILL",
            "--repeat",
            "never",
            "x",
        ]);
        assert!(!quiet.contains("warning"), "{quiet}");
    }

    #[test]
    fn a_missing_cgroup_is_waited_for_as_in_a_rules_file() {
        let text = printed(&[
            "--check-config",
            "-m",
            "1G",
            "--cgroup",
            "/no-such-cgroup-here",
        ]);
        assert!(
            text.contains("does not exist (yet); the monitor waits for it"),
            "{text}"
        );
    }

    #[test]
    fn help_is_printed_not_an_error() {
        let argv = ["memory-monitor", "--help"];
        match parse_args(argv) {
            Ok(Parsed::Print(text)) => {
                assert!(text.contains("--max-memory") && text.contains("Examples:"))
            }
            other => panic!("{other:?}"),
        }
    }
}
