//! The RSS program's own cost, as the kernel counts it: how many times it ran and for how
//! long. The kernel counts only while BPF statistics are on; they cost two clock reads a run
//! (about 20 ns), so they are on only when asked (`--bpf-stats`), and then for the monitor's
//! lifetime alone: the kernel turns them off when the descriptor that turned them on closes,
//! whatever becomes of the monitor.

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};

use aya::Ebpf;
use aya::programs::ProgramFd;
use aya::sys::{Stats, enable_stats};

/// BPF statistics turned on, and the RSS program to read them of.
#[derive(Debug)]
pub(crate) struct ProgramStats {
    /// Holding it keeps the statistics on.
    _enabled: OwnedFd,
    /// The RSS program, as the BPF object names it.
    name: &'static str,
    program: ProgramFd,
}

impl ProgramStats {
    /// Turns the statistics on and keeps a descriptor of `ebpf`'s program `name` to read
    /// them; says once why not, when it cannot (before Linux 5.8, or without the right).
    pub(super) fn start(ebpf: &Ebpf, name: &'static str) -> Option<ProgramStats> {
        let started = enable_stats(Stats::RunTime)
            .map_err(|e| e.to_string())
            .and_then(|enabled| {
                let program = ebpf
                    .program(name)
                    .ok_or_else(|| format!("no program {name}"))?
                    .fd()
                    .and_then(|fd| Ok(fd.try_clone()?))
                    .map_err(|e| e.to_string())?;
                Ok((enabled, program))
            });
        match started {
            Ok((enabled, program)) => Some(ProgramStats {
                _enabled: enabled,
                name,
                program,
            }),
            Err(why) => {
                tracing::warn!(
                    event = "bpf_stats_off",
                    "--bpf-stats: the kernel's BPF statistics cannot be turned on ({why}); the RSS program's runs are not counted"
                );
                None
            }
        }
    }

    /// The program's name, for the metrics' label.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// How many times the program has run since it was loaded while statistics were on, and
    /// for how many nanoseconds in all (from its descriptor's `fdinfo`). Allocates: for a
    /// scrape, not the loop.
    pub(crate) fn runs(&self) -> Option<(u64, u64)> {
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            self.program.as_fd().as_raw_fd()
        ))
        .ok()?;
        let value = |key: &str| -> Option<u64> {
            info.lines()
                .find_map(|line| line.strip_prefix(key)?.trim().parse().ok())
        };
        Some((value("run_cnt:")?, value("run_time_ns:")?))
    }
}
