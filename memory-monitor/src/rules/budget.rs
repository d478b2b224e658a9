//! One budget over everything a rule watches (`--group-limit`, the rules file's
//! `group-limit`): a service is often many processes (workers, a pod), each under its own
//! limit while together they take too much. When the sum of their RSS goes over the budget,
//! one member is signalled, the largest or the fastest-growing (`group-pick`), and the next
//! only after a settle time (`group-settle`), in which the first may give its memory back.

use std::fmt;
use std::time::Duration;

/// How long after signalling one member the group is judged again, when no `group-settle`
/// is given: time for a process to exit and for its memory to come back.
pub const DEFAULT_GROUP_SETTLE: Duration = Duration::from_secs(10);

/// Which member of a group over its budget is signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pick {
    /// The member with the most resident memory.
    #[default]
    Largest,
    /// The member that grew the most per second since the group was last read.
    Fastest,
}

impl crate::choice::Choice for Pick {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Pick::Largest,
            "largest",
            "The member with the most resident memory",
        ),
        (
            Pick::Fastest,
            "fastest",
            "The member that grew the most per second since the group's last reading",
        ),
    ];
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::choice::write_name(*self, f)
    }
}

/// A rule's budget over all the processes it watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBudget {
    /// The budget: the group is over it when the sum of its members' RSS is strictly
    /// greater.
    pub limit: u64,
    /// Which member is signalled.
    pub pick: Pick,
    /// How long after a signal the group is left to settle before the next.
    pub settle: Duration,
}

impl GroupBudget {
    /// How the start line and `--check-config` say it.
    pub(crate) fn phrase(&self) -> String {
        format!(
            "group over {} signals its {} member, then settles {}",
            crate::units::Bytes(self.limit),
            self.pick,
            crate::units::Period(self.settle)
        )
    }
}
