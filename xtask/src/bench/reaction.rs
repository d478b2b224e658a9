//! Breach → signal: how long after a process's crossing page the signal reaches it, and how
//! far past its limit it got meanwhile. `mm-breach` stamps the clock at the page that crosses
//! the limit (its own exact `statm` plus the pages it touched since) and again when the signal
//! arrives.
//!
//! Two tables: the monitor's configurations at the bench's own size and growth, and eBPF
//! mode by process size (100 MiB to 4 GiB) and growth rate (64 KiB and 1 MiB per millisecond,
//! and as fast as one thread can fault), because a figure taken only on a small, slowly
//! growing process is a best case: the services a watchdog is for are GiB-sized and grow fast.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{Binaries, Monitor, Options, kib, micros, percentile};

/// What a set of trials measured.
#[derive(Serialize)]
pub struct Reaction {
    trials: usize,
    /// Trials the signal never reached.
    missed: usize,
    /// Trials signalled before the target counted its own crossing: the kernel side can signal
    /// at the crossing page itself (`--kernel-signal` on an exact figure), while the target's
    /// own count of its memory lags the kernel's by the few pages it has outside its region.
    early: usize,
    latency_us_p50: f64,
    latency_us_p99: f64,
    latency_us_max: f64,
    overshoot_kib_p50: f64,
    overshoot_kib_max: f64,
    /// Where the monitor's time went (eBPF mode, from the breach line's `queued_us` and
    /// `reaction_us`): the report waiting to be read (the monitor being woken and scheduled),
    /// and its own work from reading it to sending the signal. Medians, and the slowest
    /// trial's. (The report the breach is found on can come before the crossing page: the
    /// kernel side reports from within its margin below the limit.)
    split_p50: Option<Split>,
    split_slowest: Option<Split>,
}

/// How the monitor spent one breach, µs.
#[derive(Serialize, Clone, Copy)]
pub struct Split {
    queued_us: f64,
    work_us: f64,
}

/// One configuration's reaction at the bench's own size and growth.
#[derive(Serialize)]
pub struct Configuration {
    configuration: String,
    #[serde(flatten)]
    reaction: Reaction,
}

/// eBPF mode's reaction at one size and growth rate.
#[derive(Serialize)]
pub struct Sized {
    limit_mib: u64,
    growth: String,
    #[serde(flatten)]
    reaction: Reaction,
}

/// How a trial grows past the limit.
#[derive(Clone, Copy)]
struct Growth {
    /// Bytes per step, and the pause after each.
    step: u64,
    pause: Duration,
}

/// How far past its limit a trial grows before it gives up on a signal.
const GIVE_UP: u64 = 256 << 20;

/// The sizes of the second table (MiB).
const SIZES_MIB: [u64; 3] = [100, 1024, 4096];

/// The growth rates of the second table: 64 KiB and 1 MiB per millisecond, and as fast as one
/// thread can fault (64 MiB steps with no pause: the process faults without a break).
const RATES: [(&str, Growth); 3] = [
    (
        "64 KiB/ms",
        Growth {
            step: 64 << 10,
            pause: Duration::from_millis(1),
        },
    ),
    (
        "1 MiB/ms",
        Growth {
            step: 1 << 20,
            pause: Duration::from_millis(1),
        },
    ),
    (
        "as fast as it faults",
        Growth {
            step: 64 << 20,
            pause: Duration::ZERO,
        },
    ),
];

/// The monitor's configurations at the bench's own limit, step and pause.
pub fn configurations(
    bins: &Binaries,
    options: &Options,
    limit_mib: u64,
) -> Result<Vec<Configuration>> {
    let configurations: [(&str, &[&str], usize); 5] = [
        ("eBPF", &["--mode", "ebpf"], 1),
        ("eBPF, tp_btf", &["--mode", "ebpf", "--attach", "tp-btf"], 1),
        (
            "eBPF --kernel-signal",
            &["--mode", "ebpf", "--kernel-signal"],
            1,
        ),
        ("poll -i 100ms", &["--mode", "poll", "-i", "100ms"], 1),
        ("poll -i 1", &["--mode", "poll", "-i", "1"], 5),
    ];
    let growth = Growth {
        step: options.step,
        pause: options.pause,
    };
    let mut results = Vec::new();
    for (name, mode, parallel) in configurations {
        eprintln!("latency: {name}");
        // With --kernel-signal the signal leaves before the monitor reads the report.
        let split = mode.contains(&"ebpf") && !mode.contains(&"--kernel-signal");
        let reaction = measure(
            bins,
            mode,
            limit_mib,
            growth,
            options.trials(),
            parallel,
            split,
        )?;
        results.push(Configuration {
            configuration: name.to_string(),
            reaction,
        });
    }
    Ok(results)
}

/// eBPF mode (as it attaches by default) by process size and growth rate.
pub fn by_size(bins: &Binaries, options: &Options) -> Result<Vec<Sized>> {
    let trials = if options.quick { 10 } else { 30 };
    let mut results = Vec::new();
    for limit_mib in SIZES_MIB {
        for (growth_name, growth) in RATES {
            eprintln!("reaction: {limit_mib} MiB, {growth_name}");
            let reaction = measure(
                bins,
                &["--mode", "ebpf"],
                limit_mib,
                growth,
                trials,
                1,
                true,
            )?;
            results.push(Sized {
                limit_mib,
                growth: growth_name.to_string(),
                reaction,
            });
        }
    }
    Ok(results)
}

/// Runs `trials` of `mm-breach` against a monitor started with `mode` at `limit_mib`,
/// `parallel` at a time; with `split`, reads where the monitor's time went from its breach
/// lines.
fn measure(
    bins: &Binaries,
    mode: &[&str],
    limit_mib: u64,
    growth: Growth,
    trials: usize,
    parallel: usize,
    split: bool,
) -> Result<Reaction> {
    let limit = limit_mib << 20;
    let link = bins.named("mmb-breach", &bins.path("mm-breach"))?;
    let limit_arg = format!("{limit_mib}M");
    let mut args = mode.to_vec();
    args.extend([
        "-m",
        &limit_arg,
        "-s",
        "USR1",
        "--repeat",
        "never",
        "mmb-breach",
    ]);
    let mut monitor = Monitor::start(bins, &args)?;
    let mut samples = Vec::new();
    let (mut missed, mut early) = (0, 0);
    let mut done = 0;
    while done < trials {
        let batch = parallel.min(trials - done);
        // A pause of varying length first, so trials do not fall into step with poll mode's
        // ticks (which would make its latency look better or worse than it is).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::thread::sleep(Duration::from_micros(u64::from(nanos % 100_000)));
        let started: Vec<Child> = (0..batch)
            .map(|_| breach(&link, limit, growth).spawn())
            .collect::<Result<_, _>>()?;
        for trial in started {
            let pid = trial.id();
            let output = trial.wait_with_output()?;
            let line = String::from_utf8_lossy(&output.stdout).to_string();
            let value = |key: &str| -> f64 {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
            };
            let (crossed, signalled) = (value("crossed_ns"), value("signalled_ns"));
            if signalled == 0.0 {
                missed += 1;
                continue;
            }
            if crossed == 0.0 {
                early += 1;
                continue;
            }
            let overshoot = (value("rss_at_signal") - limit as f64) / 1024.0;
            let total = (signalled - crossed) / 1000.0;
            let split = match split {
                true => breach_split(&mut monitor, pid)?,
                false => None,
            };
            samples.push((total, overshoot, split));
        }
        done += batch;
    }
    monitor.stop()?;
    Ok(summary(trials, (missed, early), &samples))
}

/// `mm-breach` growing past `limit` as `growth` says.
fn breach(link: &Path, limit: u64, growth: Growth) -> Command {
    let mut command = Command::new(link);
    command
        .args([
            limit.to_string(),
            growth.step.to_string(),
            growth.pause.as_micros().to_string(),
            GIVE_UP.to_string(),
        ])
        .stdout(Stdio::piped());
    command
}

/// How the monitor spent trial `pid`'s breach: from its breach line's `queued_us` (kernel
/// report → read) and `reaction_us` (report → signal sent).
fn breach_split(monitor: &mut Monitor, pid: u32) -> Result<Option<Split>> {
    let line = monitor.wait_for(&["event=\"breach\"", &format!("pid={pid} ")])?;
    Ok(super::field(&line, "queued_us")
        .zip(super::field(&line, "reaction_us"))
        .map(|(queued, reaction)| Split {
            queued_us: queued as f64,
            work_us: reaction.saturating_sub(queued) as f64,
        }))
}

/// The figures of `samples` (latency µs, overshoot KiB, split), of `trials` with `missed` and
/// `early` ones.
fn summary(
    trials: usize,
    (missed, early): (usize, usize),
    samples: &[(f64, f64, Option<Split>)],
) -> Reaction {
    let splits: Vec<Split> = samples.iter().filter_map(|s| s.2).collect();
    let median_of = |part: fn(&Split) -> f64| {
        let mut values: Vec<f64> = splits.iter().map(part).collect();
        values.sort_by(f64::total_cmp);
        percentile(&values, 50.0)
    };
    let split_p50 = (!splits.is_empty()).then(|| Split {
        queued_us: median_of(|s| s.queued_us),
        work_us: median_of(|s| s.work_us),
    });
    let split_slowest = samples
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .and_then(|s| s.2);
    let mut latencies: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mut overshoots: Vec<f64> = samples.iter().map(|s| s.1).collect();
    latencies.sort_by(f64::total_cmp);
    overshoots.sort_by(f64::total_cmp);
    Reaction {
        trials,
        missed,
        early,
        latency_us_p50: percentile(&latencies, 50.0),
        latency_us_p99: percentile(&latencies, 99.0),
        latency_us_max: percentile(&latencies, 100.0),
        overshoot_kib_p50: percentile(&overshoots, 50.0),
        overshoot_kib_max: percentile(&overshoots, 100.0),
        split_p50,
        split_slowest,
    }
}

/// A reaction's figures as a table's cells: trials, p50, p99, max, overshoot p50 and max,
/// missed, early.
fn cells(r: &Reaction) -> String {
    format!(
        "{} | {} | {} | {} | {} | {} | {} | {}",
        r.trials,
        micros(r.latency_us_p50),
        micros(r.latency_us_p99),
        micros(r.latency_us_max),
        kib(r.overshoot_kib_p50),
        kib(r.overshoot_kib_max),
        r.missed,
        r.early
    )
}

/// Where the monitor's time went, as cells: p50 queued and work, slowest trial's.
fn split_cells(r: &Reaction) -> String {
    let parts = |split: Option<Split>| match split {
        Some(s) => format!("{} | {}", micros(s.queued_us), micros(s.work_us)),
        None => "– | –".to_string(),
    };
    format!("{} | {}", parts(r.split_p50), parts(r.split_slowest))
}

/// The two tables, for `results.md`.
pub fn markdown(configurations: &[Configuration], sized: &[Sized], line: &mut impl FnMut(String)) {
    if !configurations.is_empty() {
        line("**Breach → signal latency and overshoot**\n".to_string());
        line("| configuration | trials | latency p50 | p99 | max | overshoot p50 | overshoot max | missed | early |".to_string());
        line("| --- | --: | --: | --: | --: | --: | --: | --: | --: |".to_string());
    }
    for c in configurations {
        line(format!("| {} | {} |", c.configuration, cells(&c.reaction)));
    }
    if configurations.iter().any(|c| c.reaction.early > 0) {
        line("\n(early: signalled before the target counted its own crossing, whose count of its memory lags the kernel's exact figure by the few pages it has outside its region; left out of the latencies)\n".to_string());
    }
    if configurations
        .iter()
        .any(|c| c.reaction.split_p50.is_some())
    {
        line("\n**Where the monitor's time goes** (eBPF mode, from the breach line's `queued_us` and `reaction_us`; queued: the kernel report waiting for the monitor to be woken and read it; work: the monitor's own, from reading the report to sending the signal, the exact reading included)\n".to_string());
        line("| configuration | p50: queued | work | slowest trial: queued | work |".to_string());
        line("| --- | --: | --: | --: | --: |".to_string());
    }
    for c in configurations
        .iter()
        .filter(|c| c.reaction.split_p50.is_some())
    {
        line(format!(
            "| {} | {} |",
            c.configuration,
            split_cells(&c.reaction)
        ));
    }
    let find = |name: &str| configurations.iter().find(|c| c.configuration == name);
    if let (Some(ebpf), Some(poll)) = (find("eBPF"), find("poll -i 100ms")) {
        line(format!(
            "\neBPF reacts {:.0}× faster than polling every 100 ms (p50).\n",
            poll.reaction.latency_us_p50 / ebpf.reaction.latency_us_p50
        ));
    }
    if sized.is_empty() {
        return;
    }
    line("\n**Breach → signal by process size and growth rate** (eBPF mode, attached as by default; the limit is the process's size at the crossing)\n".to_string());
    line("| limit | growth | trials | latency p50 | p99 | max | overshoot p50 | overshoot max | missed | early | p50: queued | work | slowest: queued | work |".to_string());
    line(
        "| --: | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |"
            .to_string(),
    );
    for s in sized {
        line(format!(
            "| {} MiB | {} | {} | {} |",
            s.limit_mib,
            s.growth,
            cells(&s.reaction),
            split_cells(&s.reaction)
        ));
    }
    let (smallest, largest) = (SIZES_MIB[0], SIZES_MIB[SIZES_MIB.len() - 1]);
    let median = |mib: u64, growth: &str| {
        sized
            .iter()
            .find(|s| s.limit_mib == mib && s.growth == growth)
            .map(|s| s.reaction.latency_us_p50)
    };
    let ratios: Vec<String> = RATES
        .iter()
        .filter_map(|(growth, _)| {
            let ratio = median(largest, growth)? / median(smallest, growth)?;
            Some(format!("{ratio:.2}× at {growth}"))
        })
        .collect();
    line(format!(
        "\nThe median at {largest} MiB against the median at {smallest} MiB: {}.\n",
        ratios.join(", ")
    ));
}
