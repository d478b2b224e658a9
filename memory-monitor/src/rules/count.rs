//! What counts toward a rule's limit (`--count`, the rules file's `count`): the resident
//! memory alone, or that and what the process has in swap. A process whose pages went to
//! swap still uses that memory: it comes back as soon as the process touches it.

use std::fmt;

/// What is compared with the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Count {
    /// Resident memory (RSS).
    #[default]
    Rss,
    /// Resident memory and swap entries (RSS + swap).
    RssSwap,
}

impl Count {
    /// Whether swap counts.
    pub fn swap(self) -> bool {
        self == Count::RssSwap
    }
}

impl crate::choice::Choice for Count {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (Count::Rss, "rss", "Resident memory"),
        (
            Count::RssSwap,
            "rss+swap",
            "Resident memory and what the process has in swap",
        ),
    ];
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::choice::write_name(*self, f)
    }
}
