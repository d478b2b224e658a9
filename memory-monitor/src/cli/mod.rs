//! The command line, the `memory-monitor` program's own: the one part of the crate that knows
//! clap, and none of the library's API. [`program`] is the program; this file is its options,
//! parsed into [`Settings`] ([`settings`] says what they mean), and what `--help`, `--version`,
//! `--manual` and `--generate` print instead of running.
//!
//! `-m 500` is 500 MiB, `-i 3` is three seconds, `-s SIGUSR1` a signal, `<name>` a prefix of
//! the process name, and a process still over its limit is signalled again every interval.
//!
//! Each flag's doc comment is its help: the first paragraph, one line, is what `-h` shows; the
//! whole is what `--help` and the man page show.

mod help;
mod list;
mod manual;
mod parsers;
pub(crate) mod program;
mod settings;
#[cfg(test)]
mod tests;

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
use crate::config::{Config, DEFAULT_MAX_PROCESSES, Mode};
use crate::host::logging::{LogFormat, LogSettings};
use crate::kernel::Attach;
use crate::matcher::{MatchMode, Matcher};
use crate::rules::count::Count;
use crate::rules::{ActOn, Pick, PressureAction, PressureTrigger, Repeat, WarnAt};
use crate::signal::Signal;
use crate::sink::SinkSpec;
use crate::system::cgroup::CgroupPath;
use crate::units::{self, SizeSpec};

/// A command line or setting that cannot work, with one line saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// What `--help`, `--version` and `--manual` print instead of running.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Run with these settings.
    Run(Box<Settings>),
    /// Print this (help or version text) on stdout and exit 0.
    Print(String),
    /// `--manual`: show this man page (roff), through `man` on a terminal, and exit 0.
    Manual(String),
}

/// Everything the command line asks for: the monitor's [`Config`] and how to log.
#[derive(Debug)]
pub(crate) struct Settings {
    /// What to watch and what to do.
    pub(crate) config: Config,
    /// How to log.
    pub(crate) log: LogSettings,
    /// `--check-config`: only check, print the rules and exit.
    pub(crate) check_only: bool,
    /// `--list`: print what the rules select now and exit.
    pub(crate) list: bool,
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

    /// Warn once before the limit: at this size or share of it (80%)
    ///
    /// A process that goes over it gets one warn line (and the rule's --exec hook, with
    /// MM_EVENT=warn, and profile), never a signal; it is warned about again only after it
    /// has been back under it. A percentage is of the limit (80%), a size is as for
    /// --max-memory and must be under the limit.
    #[arg(long, value_name = "SIZE|PERCENT", value_parser = WarnAt::parse)]
    warn_at: Option<WarnAt>,

    /// Name a leak whose trend reaches the limit within this (6h)
    ///
    /// Off by default. The monitor fits a trend to each process's growth, as it crosses each 32nd of its
    /// limit (no polling in eBPF mode), and logs event="leak_suspected" with the time to the
    /// limit and the slope once per growth episode when that time is within this horizon;
    /// the rule's profile and --exec hook (MM_EVENT=leak_suspected) go with it. Never a
    /// signal. See --leak-warmup and --leak-sustain for what is left out.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    leak_horizon: Option<Duration>,

    /// Leak trends leave out a process's first DURATION [default: 10m]
    ///
    /// Growth in a process's first DURATION after it started or exec'd is left out: a
    /// program's start (loading, warming caches) is not a leak. Needs --leak-horizon.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, help_heading = ADVANCED)]
    leak_warmup: Option<Duration>,

    /// Leak trends need growth sustained this long [default: 30m]
    ///
    /// A process is named only once its growth has gone on this long, and still goes on: a
    /// cache that fills and levels off within it is not named. Needs --leak-horizon.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, help_heading = ADVANCED)]
    leak_sustain: Option<Duration>,

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

    /// Signal the process, process-group or cgroup [default: process]
    ///
    /// process: the process over its limit alone. process-group: every process of its process
    /// group too (never group 1 nor the monitor's own). cgroup: every process of the cgroup
    /// the rule selects by (--cgroup, required) and below it, SIGKILL through its cgroup.kill
    /// where the kernel has one. --kill-after's SIGKILL reaches the same.
    #[arg(long, value_name = "WHAT", value_parser = ChoiceParser::<ActOn>::new(), hide_possible_values = true)]
    act_on: Option<ActOn>,

    /// A budget for the RSS of every process the rule watches, together
    ///
    /// When their RSS together goes over it (a size, or a share of RAM), one of them is
    /// signalled (--group-pick), and the next only after --group-settle. Each process keeps
    /// its own --max-memory too. Processes a watched one forks are watched with it; with
    /// --cgroup the group is the cgroup's processes, with a name every match.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size, allow_hyphen_values = true)]
    group_limit: Option<SizeSpec>,

    /// Signal the largest or fastest-growing member [default: largest]
    ///
    /// Of a group over --group-limit, one member is signalled at a time. largest: the one
    /// with the most resident memory. fastest: the one that grew the most per second since
    /// the group was last read.
    #[arg(long, value_name = "WHICH", value_parser = ChoiceParser::<Pick>::new(), hide_possible_values = true)]
    group_pick: Option<Pick>,

    /// Time between two members' signals [default: 10s]
    ///
    /// While the group settles, the member signalled may exit and give its memory back; if the
    /// group is still over its --group-limit after it, the next member is signalled.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, allow_hyphen_values = true)]
    group_settle: Option<Duration>,

    /// Act on memory pressure (PSI): some|full:STALL/WINDOW
    ///
    /// Such as some:150ms/1s. The kernel's PSI trigger: fires when tasks stalled on memory
    /// for STALL within any WINDOW (500ms to 10s; a multiple of 2s without CAP_SYS_RESOURCE,
    /// which the monitor holds at start-up only, where granted), some of them (some) or all at
    /// once (full). Of the rule's cgroup (its memory.pressure, cgroup v2) when it selects by one,
    /// else of the host (/proc/pressure/memory). Nothing is polled; each episode is said once
    /// (event pressure) and acted on as --pressure-action says. A kernel without PSI (or
    /// booted without psi=1 where it is off by default) is said once at start.
    #[arg(long, value_name = "TRIGGER", value_parser = PressureTrigger::parse, help_heading = ADVANCED)]
    on_pressure: Option<PressureTrigger>,

    /// Act on the rule's cgroup throttled at its memory.high
    ///
    /// Needs --cgroup. Whenever the high count of the cgroup's memory.events rises (followed
    /// with inotify: no polling), its processes were throttled into reclaim at memory.high;
    /// each episode is said once (event high_throttled) and acted on as --pressure-action says.
    #[arg(long, help_heading = ADVANCED)]
    on_high: bool,

    /// On a trigger: report, signal-largest, signal-fastest
    ///
    /// report (the default): the line, the metric and the --exec hook (MM_EVENT=pressure or
    /// high). signal-largest: those, and the rule's signal to the largest process the rule watches
    /// (in its cgroup, or anywhere for a host-wide trigger), again no sooner than --repeat
    /// while the episode lasts. signal-fastest: the same, to the one that grew the most per
    /// second since its last reading (poll mode reads them every interval; eBPF mode at
    /// start-up, as processes come and go, and at each signal). Never the monitor's parent.
    #[arg(long, value_name = "ACTION", value_parser = ChoiceParser::<PressureAction>::new(), hide_possible_values = true, help_heading = ADVANCED)]
    pressure_action: Option<PressureAction>,

    /// Run this shell command on each breach, after the signal.
    ///
    /// And on each warning (--warn-at), leak named (--leak-horizon), group member signalled
    /// (--group-limit), and each episode of --on-pressure or --on-high. Its environment holds
    /// MM_EVENT (breach, warn, leak_suspected, group_breach, pressure or high),
    /// MM_PID, MM_NAME, MM_UID, MM_USER (the user it runs as), MM_RSS_BYTES, MM_LIMIT_BYTES,
    /// MM_SIGNAL (empty at a warning or a leak), MM_ACTED_ON (what the signal reached:
    /// process, process-group or cgroup; empty at a warning or a leak), MM_PROFILE (the
    /// profile's name, if any) and MM_RULE (the rule's name), and MM_CONTAINER_ID and
    /// MM_POD_UID (from its cgroup path; empty outside a container or pod). At most 4 run at once; none holds up the monitor.
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

    /// eBPF mode: the kernel counts the RSS program's runs and time.
    ///
    /// The kernel's BPF statistics, on while the monitor runs (off again when it exits,
    /// however it exits), exported as memory_monitor_bpf_program_runs_total and
    /// memory_monitor_bpf_program_run_seconds_total. Not by default: counting costs about
    /// 20 ns each time the program runs, on every page-fault batch of every process.
    #[arg(long, help_heading = ADVANCED)]
    bpf_stats: bool,

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
pub(crate) fn parse_args<I, T>(args: I) -> Result<Parsed, UsageError>
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
        let mut text = crate::rules::describe::describe_rules(&settings.config.rules);
        let interval = crate::rules::caution::of_interval(settings.config.interval);
        if let (Mode::Poll, Some(caution)) = (settings.config.mode, interval) {
            text += &format!("warning: {caution}\n");
        }
        return Ok(Parsed::Print(text));
    }
    Ok(Parsed::Run(Box::new(settings)))
}
