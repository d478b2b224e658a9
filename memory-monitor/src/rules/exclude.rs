//! What a rule leaves out (`exclude-name`, `exclude-regex`, `exclude-user`,
//! `exclude-cgroup`): a process any of them names is not selected by the rule, however else
//! it matches (a later rule may still select it). Judged before admission, so a process left
//! out is never watched, on either side.

use std::fmt;

use super::facts::Facts;
use crate::matcher::Matcher;
use crate::system::cgroup::CgroupPath;
use crate::system::users::UserName;

/// The processes a rule leaves out.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    /// `exclude-name`: exact process names.
    pub names: Vec<Matcher>,
    /// `exclude-regex`: regular expressions on the process name.
    pub regexes: Vec<Matcher>,
    /// `exclude-user`: uids (sorted).
    pub users: Vec<u32>,
    /// `exclude-cgroup`: cgroups (v2), with the cgroups below them.
    pub cgroups: Vec<CgroupPath>,
}

impl Exclude {
    /// Whether it leaves nothing out.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.regexes.is_empty()
            && self.users.is_empty()
            && self.cgroups.is_empty()
    }

    /// Whether it leaves `process` out.
    pub(crate) fn leaves_out(&self, process: &mut Facts<'_>) -> bool {
        self.names
            .iter()
            .chain(&self.regexes)
            .any(|m| process.named(m))
            || (!self.users.is_empty()
                && process
                    .uid()
                    .is_some_and(|uid| self.users.binary_search(&uid).is_ok()))
            || self.cgroups.iter().any(|cgroup| process.in_cgroup(cgroup))
    }
}

/// `except processes named 'a', whose name matches /b/, of user c, in cgroup /d`.
impl fmt::Display for Exclude {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .names
            .iter()
            .chain(&self.regexes)
            .map(Matcher::to_string)
            .collect();
        if !self.users.is_empty() {
            let users: Vec<String> = self
                .users
                .iter()
                .map(|&u| UserName(u).to_string())
                .collect();
            parts.push(format!("processes of user {}", users.join(", ")));
        }
        for cgroup in &self.cgroups {
            parts.push(format!("processes in cgroup {cgroup}"));
        }
        write!(f, "except {}", parts.join(", "))
    }
}
