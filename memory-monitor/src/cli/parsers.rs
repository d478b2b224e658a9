//! The command line's value parsers: each value is checked as clap reads it, so that a bad
//! one is named with its option, and choices and signal names are offered to the help, the
//! man page and shell completion.

use std::net::SocketAddr;

use clap::builder::{PossibleValue, TypedValueParser};

use crate::choice::Choice;
use crate::matcher::{MatchMode, Matcher};
use crate::signal::Signal;
use crate::system::cgroup::CgroupPath;

/// A setting with named values ([`Choice`]), parsed by name, with each value and what it
/// means offered to the help, the man page and shell completion.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChoiceParser<T>(std::marker::PhantomData<T>);

impl<T> ChoiceParser<T> {
    pub(super) fn new() -> Self {
        ChoiceParser(std::marker::PhantomData)
    }
}

impl<T: Choice + Send + Sync + Clone> TypedValueParser for ChoiceParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let names: Vec<&str> = T::ALL.iter().map(|(_, name, _)| *name).collect();
        clap::builder::PossibleValuesParser::new(names)
            .map(|name| T::parse(&name).expect("one of its names"))
            .parse_ref(command, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(T::ALL.iter().map(|(_, name, help)| {
            PossibleValue::new(*name).help(*help)
        })))
    }
}

/// `--signal`: parsed as [`Signal`] parses (any name, any case, a number, `RTMIN+3`), with
/// the names offered to shell completion; offering them restricts nothing.
#[derive(Debug, Clone, Copy)]
pub(super) struct SignalParser;

impl TypedValueParser for SignalParser {
    type Value = Signal;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Signal, clap::Error> {
        clap::builder::StringValueParser::new()
            .try_map(|text| text.parse::<Signal>())
            .parse_ref(command, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(crate::signal::names().map(PossibleValue::new)))
    }
}

/// A cgroup path; one that does not exist yet is waited for, as a rules file's is (the start
/// and `--check-config` say so).
pub(super) fn parse_cgroup(text: &str) -> Result<CgroupPath, String> {
    CgroupPath::parse(text).map_err(|e| e.to_string())
}

pub(super) fn parse_user(text: &str) -> Result<u32, String> {
    crate::system::users::parse_user(text).map_err(|e| e.to_string())
}

/// A parser of names compared the `mode` way (`--exclude-name`, `--exclude-regex`).
pub(super) fn parse_named(mode: MatchMode) -> impl Fn(&str) -> Result<Matcher, String> + Clone {
    move |text| Matcher::new(mode, text).map_err(|e| e.to_string())
}

pub(super) fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    full.parse()
        .map_err(|_| format!("'{text}' is not an address and port (like 127.0.0.1:9477 or :9477)"))
}

pub(super) fn parse_capacity(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=1_000_000) => Ok(n),
        _ => Err(format!("'{text}' is not a number from 1 to 1000000")),
    }
}

pub(super) fn parse_pid(text: &str) -> Result<i32, String> {
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a process ID"))?;
    if pid <= 0 {
        return Err(format!("'{text}' is not a process ID"));
    }
    if pid == 1 {
        return Err("PID 1 (init) is never signalled".to_string());
    }
    if pid == std::process::id() as i32 {
        return Err(format!("{pid} is this monitor itself"));
    }
    if rustix::process::getppid().is_some_and(|parent| parent.as_raw_nonzero().get() == pid) {
        return Err(format!(
            "{pid} is this monitor's parent, which is never signalled"
        ));
    }
    Ok(pid)
}
