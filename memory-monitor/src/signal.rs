//! Signals by name or number, realtime signals included.
//!
//! An unknown signal is an error, never quietly another signal, and every signal the kernel can
//! deliver can be named.

use std::fmt;
use std::str::FromStr;

/// A signal that may be sent to another process: a named signal or a realtime signal in
/// SIGRTMIN..=SIGRTMAX. The two realtime signals below SIGRTMIN are glibc's own (thread
/// cancellation, setxid) and sending them would corrupt the target, so they are not signals here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

/// Standard names, without the `SIG` prefix. Numbers come from libc so they are right on every
/// architecture. Aliases follow their canonical name, which is the one displayed.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The names a signal can be given by (without `SIG`), for shell completion: the standard
/// ones and the ends of the realtime range (`RTMIN+3` and numbers are accepted too).
pub fn names() -> impl Iterator<Item = &'static str> {
    NAMES
        .iter()
        .map(|&(name, _)| name)
        .chain(["RTMIN", "RTMAX"])
}

/// Why a signal could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignalError(String);

impl Signal {
    /// SIGTERM: the default, asking for a graceful stop.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// SIGKILL: what `--kill-after` escalates to.
    pub const KILL: Signal = Signal(libc::SIGKILL);

    /// Whether the signal stops the process instead of asking it to end (SIGSTOP, SIGTSTP,
    /// SIGTTIN, SIGTTOU): a stopped process keeps all its memory, so sending one on a breach
    /// only freezes the problem in place.
    pub fn stops(self) -> bool {
        [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&self.0)
    }

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The lowest realtime signal applications may use (glibc keeps the first two).
    fn rtmin() -> i32 {
        libc::SIGRTMIN()
    }

    fn rtmax() -> i32 {
        libc::SIGRTMAX()
    }

    /// A signal from its number, if it is one that may be sent (see [`Signal`]).
    pub fn from_number(number: i32) -> Option<Signal> {
        let named = NAMES.iter().any(|&(_, known)| known == number);
        let realtime = (Self::rtmin()..=Self::rtmax()).contains(&number);
        (named || realtime).then_some(Signal(number))
    }

    /// The same signal as rustix's type, for `pidfd_send_signal`.
    pub fn to_rustix(self) -> rustix::process::Signal {
        // SAFETY: `Signal` only holds named signals and the realtime signals libc leaves to
        // applications, which is exactly what `from_raw_unchecked` asks for.
        unsafe { rustix::process::Signal::from_raw_unchecked(self.0) }
    }
}

impl FromStr for Signal {
    type Err = SignalError;

    /// Accepts `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN`, `SIGRTMIN+3`, `rtmax-1`.
    fn from_str(text: &str) -> Result<Signal, SignalError> {
        let text = text.trim();
        let unknown = || {
            SignalError(format!(
                "unknown signal '{text}' (use a name like TERM, USR1, RTMIN+3, or its number)"
            ))
        };
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let number = text.parse::<i32>().map_err(|_| unknown())?;
            return Signal::from_number(number).ok_or_else(unknown);
        }
        let upper = text.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(&(_, number)) = NAMES.iter().find(|(known, _)| *known == name) {
            return Ok(Signal(number));
        }
        let realtime = |base: i32, offset: &str, sign: i32| -> Option<Signal> {
            let offset: i32 = if offset.is_empty() {
                0
            } else {
                offset.parse().ok()?
            };
            let number = base + sign * offset;
            (Signal::rtmin()..=Signal::rtmax())
                .contains(&number)
                .then_some(Signal(number))
        };
        let parsed = if let Some(rest) = name.strip_prefix("RTMIN") {
            match rest.strip_prefix('+') {
                Some(offset) if !offset.is_empty() => realtime(Signal::rtmin(), offset, 1),
                None if rest.is_empty() => realtime(Signal::rtmin(), "", 1),
                _ => None,
            }
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            match rest.strip_prefix('-') {
                Some(offset) if !offset.is_empty() => realtime(Signal::rtmax(), offset, -1),
                None if rest.is_empty() => realtime(Signal::rtmax(), "", 1),
                _ => None,
            }
        } else {
            None
        };
        parsed.ok_or_else(unknown)
    }
}

impl fmt::Display for Signal {
    /// The canonical name: `SIGTERM`, `SIGRTMIN`, `SIGRTMIN+3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMES.iter().find(|(_, number)| *number == self.0) {
            return write!(f, "SIG{name}");
        }
        match self.0 - Signal::rtmin() {
            0 => f.write_str("SIGRTMIN"),
            offset => write!(f, "SIGRTMIN+{offset}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<i32, SignalError> {
        text.parse::<Signal>().map(Signal::number)
    }

    #[test]
    fn names_with_or_without_sig_in_any_case() {
        for text in ["SIGTERM", "TERM", "term", "sigterm", "SigTerm", " TERM "] {
            assert_eq!(parse(text), Ok(libc::SIGTERM), "{text}");
        }
        assert_eq!(parse("SIGUSR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse("hup"), Ok(libc::SIGHUP));
        assert_eq!(parse("SIGKILL"), Ok(libc::SIGKILL));
        assert_eq!(parse("iot"), Ok(libc::SIGABRT));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse("15"), Ok(15));
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse(&libc::SIGRTMAX().to_string()), Ok(libc::SIGRTMAX()));
    }

    #[test]
    fn realtime_signals() {
        let min = libc::SIGRTMIN();
        let max = libc::SIGRTMAX();
        assert_eq!(parse("SIGRTMIN"), Ok(min));
        assert_eq!(parse("rtmin+3"), Ok(min + 3));
        assert_eq!(parse("SIGRTMAX"), Ok(max));
        assert_eq!(parse("RTMAX-2"), Ok(max - 2));
        assert_eq!(Signal(min + 3).to_string(), "SIGRTMIN+3");
        assert_eq!(Signal(min).to_string(), "SIGRTMIN");
    }

    #[test]
    fn unknown_signals_are_errors_not_sigterm() {
        for bad in [
            "",
            "SIG",
            "FOO",
            "SIGFOO",
            "0",
            "32",
            "33",
            "65",
            "-1",
            "15x",
            "RTMIN+",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+99",
            "TERM!",
            "99999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse("SIGFOO")
                .unwrap_err()
                .to_string()
                .contains("unknown signal 'SIGFOO'")
        );
    }

    #[test]
    fn display_uses_canonical_names() {
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
        assert_eq!(Signal(libc::SIGIOT).to_string(), "SIGABRT");
        assert_eq!(Signal(libc::SIGCHLD).to_string(), "SIGCHLD");
    }
}
