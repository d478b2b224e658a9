//! The `memory-monitor` program: the command line parsed, logging set up, then the monitor run
//! (or `--list`, `--manual`, or what `--help` and the like print), and the exit status.

use std::process::ExitCode;

use super::{Parsed, Settings};
use crate::Outcome;

/// Exit status for a bad command line.
const USAGE: u8 = 2;

/// The program's `main`: reads its arguments, runs, and says how it went in its exit status
/// (0, 1 for a failure or a check that found a process over its limit, 2 for a bad command
/// line).
pub(crate) fn main() -> ExitCode {
    let settings = match super::parse_args(std::env::args_os()) {
        Ok(Parsed::Run(settings)) => settings,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Manual(page)) => return manual(&page),
        Err(error) => {
            eprintln!("memory-monitor: {error}; see 'memory-monitor --help'");
            return ExitCode::from(USAGE);
        }
    };
    if settings.list {
        return list(&settings);
    }
    crate::host::logging::init(settings.log);
    match crate::run(settings.config) {
        Ok(Outcome::Stopped | Outcome::NothingLeft | Outcome::Checked { any_over: false }) => {
            ExitCode::SUCCESS
        }
        Ok(Outcome::Checked { any_over: true }) => ExitCode::FAILURE,
        Err(error) => {
            tracing::error!(event = "fatal", "{:#}", anyhow::Error::new(error));
            ExitCode::FAILURE
        }
    }
}

/// `--list`: what the rules select now, on stdout; exit 0 (1 if `/proc` cannot be read).
fn list(settings: &Settings) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let listed = super::list::list(&settings.config.rules, settings.log.format, &mut out)
        .and_then(|()| std::io::Write::flush(&mut out));
    match listed {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("memory-monitor: cannot list the processes: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `--manual`: the man page through `man` when a person reads it on a terminal (as `git help`
/// does), so that users of a binary with no installed page (`cargo xtask run`) read it too;
/// otherwise, or without `man`, its roff source, for `man -l -` or a file.
fn manual(page: &str) -> ExitCode {
    use std::io::{IsTerminal as _, Write as _};
    use std::process::{Command, Stdio};
    if std::io::stdout().is_terminal() {
        let shown = Command::new("man")
            .args(["-l", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut man| {
                let written = man
                    .stdin
                    .take()
                    .map(|mut stdin| stdin.write_all(page.as_bytes()));
                let status = man.wait()?;
                written.transpose()?;
                Ok(status.success())
            });
        if let Ok(true) = shown {
            return ExitCode::SUCCESS;
        }
    }
    print!("{page}");
    ExitCode::SUCCESS
}
