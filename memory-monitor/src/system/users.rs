//! Users: the `user` and `exclude-user` of a rule, given by name or number, and the name shown
//! beside a process's uid in breach lines, hooks and `--list`.
//!
//! Names come from the monitor's own `/etc/passwd` (on a host, the host's). A rule's users are
//! looked up when the rule is built, in the file as it is then (a user added since start-up
//! can be named by a reload). The names shown are read once, at start-up, into a table, so
//! naming the user of a breaching process is a binary search: no file read, no allocation.
//! A uid the table lacks is shown as its number, as `ps` does.

use std::fmt;
use std::sync::OnceLock;

/// Where names are read.
const PASSWD: &str = "/etc/passwd";

/// A user that cannot be selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UserError {
    /// Empty or only white space.
    #[error("is empty; give a user name or a uid")]
    Empty,
    /// A name `/etc/passwd` does not have.
    #[error("no such user in {PASSWD}")]
    Unknown(String),
}

/// The uid of user `text`: a number as it is (a uid need not have a name), a name as
/// `/etc/passwd` has it now.
pub(crate) fn parse_user(text: &str) -> Result<u32, UserError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UserError::Empty);
    }
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string(PASSWD).unwrap_or_default();
    entries(&passwd)
        .find(|(_, name)| *name == text)
        .map(|(uid, _)| uid)
        .ok_or_else(|| UserError::Unknown(text.to_string()))
}

/// The (uid, name) of each well-formed line of a passwd file.
fn entries(passwd: &str) -> impl Iterator<Item = (u32, &str)> {
    passwd.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next().filter(|name| !name.is_empty())?;
        let uid = fields.nth(1)?.parse().ok()?;
        Some((uid, name))
    })
}

/// Users' names by uid (sorted; the first line wins for a uid listed twice).
type Names = Box<[(u32, Box<str>)]>;

/// The names shown.
static NAMES: OnceLock<Names> = OnceLock::new();

/// Reads the names shown, once (start-up calls it, so that no breach has to).
pub(crate) fn load_names() -> &'static [(u32, Box<str>)] {
    NAMES.get_or_init(|| {
        let passwd = std::fs::read_to_string(PASSWD).unwrap_or_default();
        let mut names: Vec<(u32, Box<str>)> = entries(&passwd)
            .map(|(uid, name)| (uid, name.into()))
            .collect();
        names.sort_by_key(|(uid, _)| *uid);
        names.dedup_by_key(|(uid, _)| *uid);
        names.into_boxed_slice()
    })
}

/// The name of `uid` as read at start-up, if it has one.
pub(crate) fn name_of(uid: u32) -> Option<&'static str> {
    let names = load_names();
    names
        .binary_search_by_key(&uid, |(uid, _)| *uid)
        .ok()
        .map(|at| &*names[at].1)
}

/// Shows a uid as its user's name, or as the number where it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserName(pub u32);

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match name_of(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_named_or_numbered() {
        assert_eq!(parse_user("0"), Ok(0));
        assert_eq!(parse_user(" 4242 "), Ok(4242));
        assert_eq!(parse_user("root"), Ok(0));
        assert_eq!(parse_user(""), Err(UserError::Empty));
        assert_eq!(
            parse_user("no-such-user-here").unwrap_err().to_string(),
            "no such user in /etc/passwd"
        );
        assert_eq!(UserName(0).to_string(), "root");
        assert_eq!(UserName(4_000_000_000).to_string(), "4000000000");
    }

    #[test]
    fn passwd_lines_give_names_and_uids() {
        let passwd = "root:x:0:0::/root:/bin/sh\n# comment\nwww-data:x:33:33::/:/bin/false\nbroken\n:x:5:5\n";
        let found: Vec<_> = entries(passwd).collect();
        assert_eq!(found, [(0, "root"), (33, "www-data")]);
    }
}
