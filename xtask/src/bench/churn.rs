//! What the monitor's confirmations cost the process it watches: a large process (`mm-churn`)
//! maps, touches and unmaps 256 KiB over and over just under its limit, within the kernel
//! side's margin, with no monitor and under each configuration, in rounds whose order
//! rotates. What counts is how many loops it gets through, against the no-monitor run of the
//! same round, and the monitor's own CPU time meanwhile.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{Binaries, Monitor, Options, cpu_and_switches, percent_range, percentile, quartiles};

/// One configuration's figures.
#[derive(Serialize)]
pub struct Churn {
    limit_mib: u64,
    configuration: String,
    /// Median loops per second.
    loops_per_s: f64,
    /// Per-round loss of loops against the no-monitor run of the same round (percent): median
    /// and interquartile range.
    loss_percent: f64,
    loss_percent_iqr: (f64, f64),
    /// The monitor's CPU time while the process churned, in percent of one core (median).
    monitor_cpu_percent: f64,
}

/// The sizes measured (MiB).
const SIZES_MIB: [u64; 2] = [1024, 4096];
/// Bytes mapped, touched and unmapped per loop.
const CHUNK: u64 = 256 << 10;

/// The configurations: none, then the monitor's arguments besides the limit and name. The
/// first eBPF row watches with a limit far above the process, where the kernel side only
/// follows it: what watching costs by itself, against which the rows near the limit show
/// what the confirmations add.
const CONFIGURATIONS: [(&str, Option<&[&str]>); 5] = [
    ("no monitor", None),
    ("eBPF, limit twice the process", Some(&["--mode", "ebpf"])),
    ("eBPF (as by default)", Some(&["--mode", "ebpf"])),
    (
        "eBPF, classic tracepoint",
        Some(&["--mode", "ebpf", "--attach", "tracepoint"]),
    ),
    ("poll -i 2", Some(&["--mode", "poll", "-i", "2"])),
];

pub fn run(bins: &Binaries, options: &Options) -> Result<Vec<Churn>> {
    let (rounds, seconds) = if options.quick { (3, 3.0) } else { (5, 10.0) };
    let link = bins.named("mmb-churn", &bins.path("mm-churn"))?;
    let mut results = Vec::new();
    for limit_mib in SIZES_MIB {
        let limit = limit_mib << 20;
        // Per configuration: loops per second and monitor CPU per round.
        let mut loops = vec![Vec::new(); CONFIGURATIONS.len()];
        let mut cpu = vec![Vec::new(); CONFIGURATIONS.len()];
        for round in 0..rounds {
            for step in 0..CONFIGURATIONS.len() {
                let index = (step + round) % CONFIGURATIONS.len();
                let (name, args) = CONFIGURATIONS[index];
                eprintln!(
                    "churn: {limit_mib} MiB, round {}/{rounds}: {name}",
                    round + 1
                );
                let monitor = match args {
                    Some(args) => {
                        // The far row's limit: twice the process.
                        let limit_arg = format!("{}M", limit_mib << u32::from(index == 1));
                        let mut args = args.to_vec();
                        args.extend(["-m", &limit_arg, "-s", "USR1", "mmb-churn"]);
                        Some(Monitor::start(bins, &args)?)
                    }
                    None => None,
                };
                let before = monitor.as_ref().map(|m| cpu_and_switches(m.pid()).0);
                let output = Command::new(&link)
                    .args([limit.to_string(), CHUNK.to_string(), seconds.to_string()])
                    .output()
                    .context("run mm-churn")?;
                let said = String::from_utf8_lossy(&output.stdout).to_string();
                let count: f64 = said
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("loops="))
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("mm-churn said {said:?}"))?;
                // The process's growth to its size is in the CPU time too; it is the same for
                // every configuration and small against the churning.
                if let (Some(monitor), Some(before)) = (monitor, before) {
                    let spent = cpu_and_switches(monitor.pid()).0 - before;
                    cpu[index].push(spent as f64 / 1e9 / seconds * 100.0);
                    monitor.stop()?;
                }
                loops[index].push(count / seconds);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        for (index, (name, _)) in CONFIGURATIONS.iter().enumerate() {
            let mut losses: Vec<f64> = loops[index]
                .iter()
                .zip(&loops[0])
                .map(|(with, without)| (1.0 - with / without) * 100.0)
                .collect();
            losses.sort_by(f64::total_cmp);
            let mut rates = loops[index].clone();
            rates.sort_by(f64::total_cmp);
            let mut cpus = cpu[index].clone();
            cpus.sort_by(f64::total_cmp);
            results.push(Churn {
                limit_mib,
                configuration: name.to_string(),
                loops_per_s: percentile(&rates, 50.0),
                loss_percent: percentile(&losses, 50.0),
                loss_percent_iqr: quartiles(&losses),
                monitor_cpu_percent: percentile(&cpus, 50.0),
            });
        }
    }
    Ok(results)
}

/// The table, for `results.md`.
pub fn markdown(results: &[Churn], line: &mut impl FnMut(String)) {
    if results.is_empty() {
        return;
    }
    line(format!(
        "\n**A process busy just under its limit** (`mm-churn`: maps, touches and unmaps {} KiB in a loop, within the kernel side's margin but for the row whose limit is twice its size; loss: median of per-round losses against the no-monitor run of the same round, and their interquartile range)\n",
        CHUNK >> 10
    ));
    line("| limit | configuration | loops/s | loss | IQR | monitor CPU |".to_string());
    line("| --: | --- | --: | --: | --: | --: |".to_string());
    for c in results {
        let (loss, iqr, cpu) = match c.configuration.as_str() {
            "no monitor" => ("–".to_string(), "–".to_string(), "–".to_string()),
            _ => (
                format!("{:+.1} %", c.loss_percent),
                percent_range(c.loss_percent_iqr),
                format!("{:.1} %", c.monitor_cpu_percent),
            ),
        };
        line(format!(
            "| {} MiB | {} | {:.0} | {loss} | {iqr} | {cpu} |",
            c.limit_mib, c.configuration, c.loops_per_s
        ));
    }
}
