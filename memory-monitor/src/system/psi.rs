//! The kernel's memory pressure triggers (PSI, `Documentation/accounting/psi.rst`): a
//! threshold written to a pressure file — the host's `/proc/pressure/memory`, or a cgroup v2's
//! `memory.pressure` — makes the open file a trigger, which the kernel marks `POLLPRI` when
//! tasks stalled on memory for that long within the window, at most once a window. Nothing is
//! polled: the descriptor is waited on with the others. `POLLERR` says the file went away (its
//! cgroup was removed).
//!
//! Whether this kernel can is found by trying: a kernel built without PSI has no file, and
//! one built with it off by default (`CONFIG_PSI_DEFAULT_DISABLED`, as some distributions do)
//! hides the files or refuses the write (`EOPNOTSUPP`) unless booted with `psi=1`.

use std::ffi::CString;
use std::fmt;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::rules::PressureTrigger;
use crate::system::cgroup::CgroupPath;

/// The host's memory pressure file.
const HOST: &str = "/proc/pressure/memory";

/// Where a trigger watches the pressure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The whole host.
    Host,
    /// A cgroup (v2) and those below it.
    Cgroup(CgroupPath),
}

impl Scope {
    /// Its pressure file.
    fn file(&self) -> Result<CString, Refused> {
        let path = match self {
            Scope::Host => std::path::PathBuf::from(HOST),
            Scope::Cgroup(cgroup) => cgroup
                .directory()
                .map_err(|_| Refused::NoCgroupV2)?
                .join("memory.pressure"),
        };
        CString::new(path.into_os_string().into_encoded_bytes()).map_err(|_| Refused::NoFile)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Host => f.write_str("host"),
            Scope::Cgroup(cgroup) => cgroup.fmt(f),
        }
    }
}

/// Why a trigger could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Built in but switched off (`CONFIG_PSI_DEFAULT_DISABLED`, no `psi=1`): the write says
    /// `EOPNOTSUPP`.
    Disabled,
    /// No pressure file: a kernel without PSI, or a cgroup that does not exist (yet).
    NoFile,
    /// The cgroup is not in a cgroup v2 hierarchy, where alone cgroups have pressure files.
    NoCgroupV2,
    /// The kernel refused the trigger itself (the window, or privileges).
    Trigger(Errno),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Disabled => f.write_str(
                "this kernel has pressure stall information (PSI) switched off: boot it with psi=1",
            ),
            Refused::NoFile => f.write_str(
                "no memory pressure file: the kernel has no PSI, or has it switched off (boot it with psi=1), or the cgroup does not exist",
            ),
            Refused::NoCgroupV2 => f.write_str(
                "a cgroup's memory pressure is in cgroup v2 only, and no cgroup v2 hierarchy is mounted",
            ),
            Refused::Trigger(Errno::INVAL) => f.write_str(
                "the kernel refused the trigger (EINVAL): without CAP_SYS_RESOURCE (not granted, or dropped after start-up) its window must be a multiple of 2s",
            ),
            Refused::Trigger(errno @ (Errno::PERM | Errno::ACCESS)) => write!(
                f,
                "the kernel refused the trigger ({errno}): this kernel makes triggers for CAP_SYS_RESOURCE only, which the monitor holds at start-up alone: restart it to arm a new trigger"
            ),
            Refused::Trigger(errno) => write!(f, "the kernel refused the trigger ({errno})"),
        }
    }
}

/// Makes `trigger` on the pressure of `scope`: a descriptor the kernel marks `POLLPRI` each
/// time it fires.
pub(crate) fn open_trigger(scope: &Scope, trigger: PressureTrigger) -> Result<OwnedFd, Refused> {
    let file = scope.file()?;
    let fd = rustix::fs::open(
        file.as_c_str(),
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| match errno {
        Errno::NOENT => Refused::NoFile,
        // Switched off, some kernels refuse the file's opening already.
        Errno::OPNOTSUPP => Refused::Disabled,
        errno => Refused::Trigger(errno),
    })?;
    let mut buf = [0u8; 64];
    let text = trigger.kernel_text(&mut buf);
    match rustix::io::write(&fd, text) {
        Ok(_) => Ok(fd),
        Err(Errno::OPNOTSUPP) => Err(Refused::Disabled),
        // The cgroup went between the open and the write.
        Err(Errno::NODEV) => Err(Refused::NoFile),
        Err(errno) => Err(Refused::Trigger(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the host has PSI on (its pressure file is there) and the test runs as root, a
    /// trigger is made; elsewhere it cannot tell.
    #[test]
    fn a_host_trigger_is_made_where_the_host_has_psi() {
        let trigger = PressureTrigger::parse("some:150ms/2s").unwrap();
        let can = std::path::Path::new(HOST).exists() && rustix::process::geteuid().is_root();
        match open_trigger(&Scope::Host, trigger) {
            Ok(fd) => {
                // Pollable, and quiet without pressure: no POLLERR.
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::PRI,
                )];
                let ready =
                    rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default()));
                assert!(ready.is_ok());
                assert!(!fds[0].revents().contains(rustix::event::PollFlags::ERR));
            }
            Err(refused) if can => panic!("{refused}"),
            Err(refused) => eprintln!("no host trigger here: {refused}"),
        }
    }

    #[test]
    fn a_cgroup_that_is_not_there_is_said_as_such() {
        let trigger = PressureTrigger::parse("some:150ms/2s").unwrap();
        let cgroup = CgroupPath::parse("/mm-psi-test-no-such-cgroup").unwrap();
        let refused = open_trigger(&Scope::Cgroup(cgroup), trigger).unwrap_err();
        assert!(
            matches!(refused, Refused::NoFile | Refused::NoCgroupV2),
            "{refused}"
        );
    }
}
