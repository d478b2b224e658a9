//! A kernel side for the unit tests: it records what it is told, in order, for the check and
//! the watch's owner to be judged by.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::{KernelLink, KernelSide, Level, RawStacks, Target};
use crate::rules::RuleSet;
use crate::system::procfs::ProcRoot;

/// Clones share what they were told, so a test keeps one while the watch owns another.
#[derive(Clone, Default)]
pub(crate) struct FakeKernel {
    told: Rc<RefCell<Vec<String>>>,
    /// Its table refuses watches, as a full one does.
    full: bool,
    /// It already sent the breach's signal (`--kernel-signal`).
    claimed: bool,
    /// What its exact reading says of every process (`None`: it cannot tell).
    exact: Option<u64>,
}

impl FakeKernel {
    /// One whose table is full: it refuses every watch.
    pub(crate) fn full() -> FakeKernel {
        FakeKernel {
            full: true,
            ..FakeKernel::default()
        }
    }

    /// One whose exact reading says `bytes` of every process.
    pub(crate) fn reading(bytes: u64) -> FakeKernel {
        FakeKernel {
            exact: Some(bytes),
            ..FakeKernel::default()
        }
    }

    /// What it was told so far, oldest first.
    pub(crate) fn told(&self) -> Vec<String> {
        self.told.borrow().clone()
    }

    fn tell(&self, what: String) {
        self.told.borrow_mut().push(what);
    }
}

impl KernelLink for FakeKernel {
    fn rearm(&mut self, _: i32, level: Level, after: Duration) {
        match level {
            Level::Limit => self.tell(format!("rearm after {after:?}")),
            Level::Warning => self.tell(format!("rearm warning after {after:?}")),
            Level::Share => self.tell(format!("rearm share after {after:?}")),
        }
    }
    fn cancel_rearm(&mut self, _: i32, level: Level) {
        match level {
            Level::Limit => self.tell("cancel rearm".to_string()),
            Level::Warning => self.tell("cancel warning rearm".to_string()),
            Level::Share => self.tell("cancel share rearm".to_string()),
        }
    }
    fn claim_signal(&mut self, _: i32) -> bool {
        self.tell("claim".to_string());
        !std::mem::replace(&mut self.claimed, true)
    }
    fn release_claim(&mut self, _: i32) {
        self.tell("release".to_string());
        self.claimed = false;
    }
    fn take_growth(&mut self, _: i32) -> RawStacks {
        RawStacks::new()
    }
    fn exact_rss(&mut self, _: i32) -> Option<u64> {
        self.exact
    }
    fn share(&mut self, _: i32, share: u64) {
        self.tell(format!("share {share}"));
    }
}

impl KernelSide for FakeKernel {
    fn follow(&mut self, pid: i32, _: Target, _: &ProcRoot) -> io::Result<()> {
        if self.full {
            return Err(io::Error::other("full"));
        }
        self.tell(format!("follow {pid}"));
        Ok(())
    }
    fn forget(&mut self, pid: i32) {
        self.tell(format!("forget {pid}"));
    }
    fn set_rules(&mut self, _: &RuleSet) -> io::Result<()> {
        Ok(())
    }
}
