//! What a rule's signal reaches (`--act-on`, the rules file's `act-on`): the process over its
//! limit, or with it the rest of its process group, or the whole cgroup the rule selects by.
//! A service's workers, or a shell pipeline, often grow together: signalling the one process
//! over the limit leaves the others, and its parent may start it again at once.

use std::fmt;

/// What a signal is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActOn {
    /// The process over its limit, alone.
    #[default]
    Process,
    /// Every process of its process group.
    ProcessGroup,
    /// Every process of the cgroup the rule selects it by, and of those below it.
    Cgroup,
}

impl ActOn {
    /// How the start line and `--check-config` say it; nothing for the default.
    pub(crate) fn phrase(self) -> Option<&'static str> {
        match self {
            ActOn::Process => None,
            ActOn::ProcessGroup => Some("to its whole process group"),
            ActOn::Cgroup => Some("to the whole cgroup"),
        }
    }
}

impl crate::choice::Choice for ActOn {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (ActOn::Process, "process", "The process over its limit"),
        (
            ActOn::ProcessGroup,
            "process-group",
            "Every process of its process group",
        ),
        (
            ActOn::Cgroup,
            "cgroup",
            "Every process of the cgroup the rule selects it by",
        ),
    ];
}

impl fmt::Display for ActOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::choice::write_name(*self, f)
    }
}
