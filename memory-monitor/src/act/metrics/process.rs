//! The monitor's own cost, as the standard `process_*` metrics every Prometheus client exports
//! (the same names, so the usual dashboards and alerts apply): resident memory, CPU seconds,
//! open descriptors and their limit. Read from the kernel when scraped, so the loop does no
//! work for them. With `--bpf-stats`, the RSS program's own runs and run time too.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::kernel::ProgramStats;
use crate::system::procfs;

/// Reads the monitor's own figures at each scrape.
#[derive(Debug)]
pub(super) struct OwnCost;

impl Collector for OwnCost {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(cpu_seconds());
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "CPU time the monitor has used, user and system, in seconds.",
            None,
            counter.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "The monitor's resident memory in bytes.",
                resident_bytes(),
            ),
            (
                "process_open_fds",
                "File descriptors the monitor has open (a pidfd per watched process among them).",
                open_fds(),
            ),
            (
                "process_max_fds",
                "The most file descriptors the monitor may open.",
                max_fds(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// User and system CPU time of every thread of the monitor.
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the one it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn resident_bytes() -> u64 {
    std::fs::read("/proc/self/statm")
        .ok()
        .and_then(|statm| procfs::parse_statm(&statm).ok())
        .map_or(0, |statm| statm.resident_pages * procfs::page_size())
}

fn open_fds() -> u64 {
    // The directory's own descriptor, open while it is read, is not counted.
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count().saturating_sub(1) as u64)
}

fn max_fds() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// The RSS program's runs and run time, as the kernel counts them (`--bpf-stats`), read at
/// each scrape.
#[derive(Debug)]
pub(super) struct ProgramRuns(pub(super) ProgramStats);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabels {
    program: &'static str,
}

impl Collector for ProgramRuns {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((runs, nanoseconds)) = self.0.runs() else {
            return Ok(());
        };
        let labels = ProgramLabels {
            program: self.0.name(),
        };
        let runs = ConstCounter::new(runs);
        let mut family = encoder.encode_descriptor(
            "bpf_program_runs",
            "Runs of the RSS program since it was loaded (--bpf-stats).",
            None,
            runs.metric_type(),
        )?;
        runs.encode(family.encode_family(&labels)?)?;
        let seconds = ConstCounter::new(nanoseconds as f64 / 1e9);
        let mut family = encoder.encode_descriptor(
            "bpf_program_run_seconds",
            "Time the RSS program has run, in seconds, with the counting's own cost (--bpf-stats).",
            None,
            seconds.metric_type(),
        )?;
        seconds.encode(family.encode_family(&labels)?)?;
        Ok(())
    }
}
