//! What the command line says to a person: the texts around `-h` and `--help`, and a usage
//! error made one line that keeps clap's hints ("a similar argument exists").
//!
//! `-h` is a summary, one line a flag, the everyday ones first and the rest under
//! [`ADVANCED`]; `--help` gives the examples first, then every flag in full, then the notes.
//! The man page (`--manual`) is made from the same definitions.

use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::UsageError;

pub(super) const ABOUT: &str = "Signal processes before the kernel's OOM killer has to: watch the resident memory (RSS) \
of every process whose name matches, and send a signal (SIGTERM by default) to any that goes over \
its limit so it can restart gracefully.";

/// The heading of the flags few need: the eBPF side, profiles, the service's settings.
pub(super) const ADVANCED: &str = "Advanced options";

/// Command lines and what they do, for `--help` and the man page.
pub(super) const EXAMPLES: [(&str, &str); 6] = [
    (
        "memory-monitor -m 500 my-app",
        "SIGTERM any my-app* process over 500 MiB",
    ),
    (
        "memory-monitor --list -m 500 my-app",
        "what the rule selects now; signals nothing",
    ),
    (
        "memory-monitor -m 500 --dry-run my-app",
        "log what would be signalled; act on nothing",
    ),
    (
        "memory-monitor -m 2G -s USR1 -i 250ms worker",
        "SIGUSR1, checked 4 times a second",
    ),
    (
        "memory-monitor -m 10% --kill-after 30s api",
        "SIGTERM at 10% of RAM, SIGKILL 30 s later",
    ),
    (
        "memory-monitor -m 1G --pid 4242 --once",
        "check one process; exit 1 if over (no signal)",
    ),
];

/// What `-h` says after the flags.
pub(super) const AFTER_SHORT_HELP: &str =
    "Examples and every flag in full: --help. The manual, with the rules file format: --manual.";

/// What `--help` says before the flags: the examples.
pub(super) fn before_long_help() -> String {
    let mut text = String::from("Examples:\n");
    for (command, what) in EXAMPLES {
        text += &format!("  {command:<46} {what}\n");
    }
    text
}

/// What `--help` says after the flags.
pub(super) const AFTER_LONG_HELP: &str = "\
Sizes are binary: 1M = 1 MiB (MB is read as MiB too, with a warning). A bare number is MiB and
a bare duration is seconds.

A rule that selects no process is said at start, and again if none appears within 30 intervals.

Exit status: 0 stopped by SIGINT/SIGTERM (or --once found nothing over), 1 runtime failure (or
--once found a process over its limit), 2 bad command line.

The manual (memory-monitor --manual) has the rules file's format, the signals the monitor
answers, its environment and files.";

/// A clap error as one line: the problem, then clap's tips, then a hint of our own where a
/// second NAME was given.
pub(super) fn one_line(error: &clap::Error) -> UsageError {
    let rendered = error.render().to_string();
    let mut paragraphs = rendered
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "));
    let problem = paragraphs.next().unwrap_or_default();
    let mut line = problem
        .strip_prefix("error: ")
        .unwrap_or(&problem)
        .to_string();
    for tip in paragraphs.filter(|p| p.starts_with("tip:")) {
        line += &format!("; {tip}");
    }
    if let Some(extra) = second_name(error) {
        line += &format!(
            "; only one NAME is taken ('{extra}' is a second): for several, use --match regex 'one|two', or a rules file (--config)"
        );
    }
    UsageError(line)
}

/// The word given where no argument goes, when it is no flag: a second NAME.
fn second_name(error: &clap::Error) -> Option<String> {
    if error.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) if !arg.starts_with('-') => Some(arg.clone()),
        _ => None,
    }
}
