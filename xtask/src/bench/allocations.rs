//! Section 5: heap allocations after start-up, as the monitor itself reports them.

use anyhow::{Context as _, Result};

use super::footprint::Oscillator;
use super::{Allocations, Binaries, LIMIT_MIB, Monitor, Options, field};

pub(super) fn allocations(bins: &Binaries, options: &Options) -> Result<Vec<Allocations>> {
    let mut results = Vec::new();
    for mode in ["ebpf", "poll"] {
        eprintln!("allocations: {mode}");
        let limit = format!("{LIMIT_MIB}M");
        let args = [
            "--mode",
            mode,
            "-i",
            "100ms",
            "-m",
            &limit,
            "-s",
            "USR1",
            "mmb-swing",
        ];
        let mut monitor = Monitor::start(bins, &args)?;
        let oscillator = Oscillator::start(bins, "mmb-swing")?;
        std::thread::sleep(options.window());
        drop(oscillator);
        let breaches = monitor.count("over the limit");
        let last = monitor.stop()?;
        results.push(Allocations {
            mode: mode.to_string(),
            breaches,
            events: field(&last, "events").unwrap_or(0),
            allocations_after_start_up: field(&last, "allocations")
                .context("the monitor did not report its allocations")?,
        });
    }
    Ok(results)
}
