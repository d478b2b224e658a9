//! Which processes a name selects.
//!
//! Matching is decided on the kernel's `comm` (up to 15 bytes) whenever it can be: that is what
//! the BPF side sees, and it needs one small read. Only when `comm` cannot
//! decide (a NAME longer than `comm` can hold, or a command-line match) is
//! `/proc/PID/cmdline` read.

use std::fmt;

use regex::bytes::Regex;

use crate::system::procfs::{COMM_LEN, Escaped, argv0_basename};

/// How NAME is compared with processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMode {
    /// The process name starts with NAME (the default).
    Prefix,
    /// The process name is NAME.
    Exact,
    /// The process name matches the regular expression NAME.
    Regex,
    /// NAME appears in the full command line (arguments joined by spaces).
    Cmdline,
    /// The full command line (arguments joined by spaces) matches the regular expression NAME.
    CmdlineRegex,
}

impl crate::choice::Choice for MatchMode {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            MatchMode::Prefix,
            "prefix",
            "The process name starts with NAME (the default)",
        ),
        (MatchMode::Exact, "exact", "The process name is NAME"),
        (
            MatchMode::Regex,
            "regex",
            "The process name matches the regular expression NAME",
        ),
        (
            MatchMode::Cmdline,
            "cmdline",
            "NAME appears in the full command line (arguments joined by spaces)",
        ),
        (
            MatchMode::CmdlineRegex,
            "cmdline-regex",
            "The full command line (arguments joined by spaces) matches the regular expression NAME",
        ),
    ];
}

/// A name that cannot select anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// Empty or only white space: it would match every process.
    #[error("NAME is empty; give the name (or the start of the name) of the processes to watch")]
    Empty,
    /// Not a valid regular expression.
    #[error("invalid value '{name}' for '<NAME>': not a valid regular expression ({reason})")]
    BadRegex {
        /// The pattern given.
        name: String,
        /// The regex crate's first line of explanation.
        reason: String,
    },
}

/// What a process's `comm` says about a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommVerdict {
    /// It matches.
    Yes,
    /// It does not match.
    No,
    /// Only the command line can tell: call [`Matcher::matches_cmdline`].
    AskCmdline,
}

/// Selects processes by name; build with [`Matcher::new`].
#[derive(Debug, Clone)]
pub struct Matcher {
    mode: MatchMode,
    name: Box<[u8]>,
    /// For the regex modes, the pattern; for cmdline mode, the literal NAME.
    regex: Option<Regex>,
}

impl Matcher {
    /// A matcher for `name` compared the `mode` way.
    pub fn new(mode: MatchMode, name: &str) -> Result<Matcher, MatcherError> {
        if name.trim().is_empty() {
            return Err(MatcherError::Empty);
        }
        let pattern = match mode {
            MatchMode::Regex | MatchMode::CmdlineRegex => Some(name.to_string()),
            MatchMode::Cmdline => Some(regex::escape(name)),
            MatchMode::Prefix | MatchMode::Exact => None,
        };
        let regex = pattern
            .map(|pattern| Regex::new(&pattern))
            .transpose()
            .map_err(|e| MatcherError::BadRegex {
                name: name.to_string(),
                reason: e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            })?;
        Ok(Matcher {
            mode,
            name: name.as_bytes().into(),
            regex,
        })
    }

    /// How NAME is compared.
    pub fn mode(&self) -> MatchMode {
        self.mode
    }

    /// NAME as given.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Judges a process by its `comm`.
    pub fn check_comm(&self, comm: &[u8]) -> CommVerdict {
        let yes_no = |b: bool| if b { CommVerdict::Yes } else { CommVerdict::No };
        let long = self.name.len() > COMM_LEN;
        match self.mode {
            // A long NAME can only match a process whose comm is NAME cut at 15 bytes.
            MatchMode::Prefix | MatchMode::Exact if long => {
                if comm == &self.name[..COMM_LEN] {
                    CommVerdict::AskCmdline
                } else {
                    CommVerdict::No
                }
            }
            MatchMode::Prefix => yes_no(comm.starts_with(&self.name)),
            MatchMode::Exact => yes_no(comm == &*self.name),
            MatchMode::Regex => yes_no(self.regex.as_ref().is_some_and(|r| r.is_match(comm))),
            MatchMode::Cmdline | MatchMode::CmdlineRegex => CommVerdict::AskCmdline,
        }
    }

    /// Judges a process by its `/proc/PID/cmdline` (NUL-separated), when
    /// [`Matcher::check_comm`] asked for it. NULs in `cmdline` are turned into spaces.
    pub fn matches_cmdline(&self, cmdline: &mut [u8]) -> bool {
        match self.mode {
            MatchMode::Prefix => argv0_basename(cmdline).starts_with(&self.name),
            MatchMode::Exact => argv0_basename(cmdline) == &*self.name,
            MatchMode::Regex => false,
            MatchMode::Cmdline | MatchMode::CmdlineRegex => {
                let cmdline = match cmdline.strip_suffix(b"\0") {
                    Some(_) => {
                        let len = cmdline.len() - 1;
                        &mut cmdline[..len]
                    }
                    None => cmdline,
                };
                cmdline
                    .iter_mut()
                    .filter(|b| **b == 0)
                    .for_each(|b| *b = b' ');
                self.regex.as_ref().is_some_and(|r| r.is_match(cmdline))
            }
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Escaped(&self.name);
        match self.mode {
            MatchMode::Prefix => write!(f, "processes whose name starts with '{name}'"),
            MatchMode::Exact => write!(f, "processes named '{name}'"),
            MatchMode::Regex => write!(f, "processes whose name matches /{name}/"),
            MatchMode::Cmdline => write!(f, "processes whose command line contains '{name}'"),
            MatchMode::CmdlineRegex => write!(f, "processes whose command line matches /{name}/"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommVerdict::*;

    fn matcher(mode: MatchMode, name: &str) -> Matcher {
        Matcher::new(mode, name).unwrap()
    }

    #[test]
    fn a_prefix_selects_every_name_that_starts_with_it() {
        let m = matcher(MatchMode::Prefix, "my-app");
        assert_eq!(m.check_comm(b"my-app"), Yes);
        assert_eq!(m.check_comm(b"my-app-worker"), Yes);
        assert_eq!(m.check_comm(b"my-ap"), No);
        assert_eq!(m.check_comm(b"not-my-app"), No);
        assert_eq!(m.check_comm(b""), No);
    }

    #[test]
    fn exact_and_regex() {
        let m = matcher(MatchMode::Exact, "my-app");
        assert_eq!(m.check_comm(b"my-app"), Yes);
        assert_eq!(m.check_comm(b"my-app2"), No);
        let m = matcher(MatchMode::Regex, "^(web|api)-[0-9]+$");
        assert_eq!(m.check_comm(b"web-12"), Yes);
        assert_eq!(m.check_comm(b"api-3"), Yes);
        assert_eq!(m.check_comm(b"web-x"), No);
        assert_eq!(matcher(MatchMode::Regex, "\\xff").check_comm(b"\xff"), No);
        assert_eq!(
            matcher(MatchMode::Regex, "(?-u)\\xff").check_comm(b"a\xff"),
            Yes
        );
    }

    #[test]
    fn long_names_are_decided_by_the_command_line() {
        let m = matcher(MatchMode::Prefix, "my-application-server");
        assert_eq!(m.check_comm(b"my-application-"), AskCmdline);
        assert_eq!(m.check_comm(b"my-application"), No);
        assert!(m.matches_cmdline(&mut b"/opt/bin/my-application-server-2\0-v\0".to_vec()));
        assert!(!m.matches_cmdline(&mut b"/opt/bin/my-application-other\0".to_vec()));
        let m = matcher(MatchMode::Exact, "my-application-server");
        assert!(m.matches_cmdline(&mut b"my-application-server\0".to_vec()));
        assert!(!m.matches_cmdline(&mut b"my-application-server-2\0".to_vec()));
    }

    #[test]
    fn cmdline_matches_anywhere_literally() {
        let m = matcher(MatchMode::Cmdline, "app.jar --port");
        assert_eq!(m.check_comm(b"java"), AskCmdline);
        assert!(m.matches_cmdline(&mut b"java\0-jar\0app.jar\0--port\08080\0".to_vec()));
        assert!(!m.matches_cmdline(&mut b"java\0-jar\0appXjar\0--port\0".to_vec()));
        assert!(!m.matches_cmdline(&mut Vec::new()));
    }

    #[test]
    fn cmdline_regex_matches_the_arguments_joined_by_spaces() {
        let m = matcher(
            MatchMode::CmdlineRegex,
            "^java .*-jar app-[0-9]+\\.jar --port 80$",
        );
        assert_eq!(m.check_comm(b"java"), AskCmdline);
        assert!(m.matches_cmdline(&mut b"java\0-Xmx1g\0-jar\0app-12.jar\0--port\080\0".to_vec()));
        assert!(!m.matches_cmdline(&mut b"java\0-jar\0app-x.jar\0--port\080\0".to_vec()));
        assert!(!m.matches_cmdline(&mut b"java\0-jar\0app-1.jar\0--port\08080\0".to_vec()));
        let err = Matcher::new(MatchMode::CmdlineRegex, "a[")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid value 'a['"), "{err}");
    }

    #[test]
    fn bad_names() {
        assert_eq!(
            Matcher::new(MatchMode::Prefix, "").unwrap_err(),
            MatcherError::Empty
        );
        assert_eq!(
            Matcher::new(MatchMode::Exact, " \t").unwrap_err(),
            MatcherError::Empty
        );
        let err = Matcher::new(MatchMode::Regex, "a(b")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid value 'a(b'") && !err.contains('\n'),
            "{err}"
        );
    }
}
