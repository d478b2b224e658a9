//! What watching costs in page faults per second (section 4, `mm-faults`), watched and
//! unwatched, for both ways the RSS program can attach, against an empty program attached the
//! same way.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};

use super::footprint::Sleepers;
use super::{
    Binaries, BpfStats, Faults, Monitor, Options, bpf_object, faults_per_second, percentile,
    quartiles, rss_program_stats,
};

/// The RSS program's average run time per call (see `rss_program_stats`).
fn rss_program_ns_per_call(pid: i32) -> Option<f64> {
    rss_program_stats(pid)
        .filter(|&(_, count)| count > 0)
        .map(|(time, count)| time as f64 / count as f64)
}

/// What runs beside the page-fault benchmark.
#[derive(Clone, Copy)]
enum Load {
    Nothing,
    /// The monitor with these arguments, watching processes named `watched` (the faulting
    /// process, or a sleeper).
    Monitor {
        args: [&'static str; 4],
        watched: &'static str,
    },
    /// An empty program attached this way (`mm-floor`): the floor under that attach type.
    Floor(&'static str),
    /// `perf stat` counting `kmem:rss_stat`: the tracepoint enabled without BPF.
    PerfTracepoint,
}

impl Load {
    /// The attach type whose floor this condition is measured against.
    fn attach(self) -> Option<&'static str> {
        match self {
            Load::Monitor {
                args: ["--mode", "ebpf", "--attach", attach],
                ..
            } => Some(attach),
            _ => None,
        }
    }
}

pub(super) fn faults(bins: &Binaries, options: &Options) -> Result<Vec<Faults>> {
    let (runs, seconds) = options.fault_runs();
    let faulter = bins.named("mmb-fault", &bins.path("mm-faults"))?;
    let object = bpf_object()?;
    let mut other = Sleepers(Vec::new());
    other.grow_to(bins, 1)?;
    let cpu = (std::thread::available_parallelism().map_or(1, |n| n.get()) - 1).to_string();
    let monitor = |attach, watched| Load::Monitor {
        args: ["--mode", "ebpf", "--attach", attach],
        watched,
    };
    let mut conditions: Vec<(&str, Load)> = vec![
        ("no monitor", Load::Nothing),
        (
            "empty classic tracepoint program (its floor)",
            Load::Floor("tracepoint"),
        ),
        (
            "eBPF tracepoint, another process watched",
            monitor("tracepoint", "mmb-sleep"),
        ),
        (
            "eBPF tracepoint, this process watched",
            monitor("tracepoint", "mmb-fault"),
        ),
        ("empty tp_btf program (its floor)", Load::Floor("tp-btf")),
        (
            "eBPF tp_btf, another process watched",
            monitor("tp-btf", "mmb-sleep"),
        ),
        (
            "eBPF tp_btf, this process watched",
            monitor("tp-btf", "mmb-fault"),
        ),
        (
            "poll, this process watched",
            Load::Monitor {
                args: ["--mode", "poll", "-i", "2"],
                watched: "mmb-fault",
            },
        ),
    ];
    // The kernel's own cost of filling the tracepoint's record, with no program at all.
    if Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        conditions.push((
            "kmem:rss_stat enabled by perf, no BPF (fills the record)",
            Load::PerfTracepoint,
        ));
    }
    let mut rates: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut program_ns: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    // Rounds with the kernel's program statistics off, every condition once per round, in an
    // order rotated each round; then one round with statistics on, for the program's own time.
    for (round, stats) in (0..runs).map(|round| (round, false)).chain([(runs, true)]) {
        let _stats = BpfStats::set(stats);
        for step in 0..conditions.len() {
            let index = (step + round) % conditions.len();
            let (name, load) = conditions[index];
            if stats && !matches!(load, Load::Monitor { .. } | Load::Floor(_)) {
                continue;
            }
            eprintln!("faults: round {}/{}: {name}", round + 1, runs + 1);
            let beside = match load {
                Load::Nothing | Load::PerfTracepoint => None,
                Load::Monitor { args, watched } => {
                    let mut args = args.to_vec();
                    args.extend(["-m", "4G", watched]);
                    let monitor = Monitor::start(bins, &args)?;
                    // Past start-up (first /proc pass, trim) before measuring.
                    std::thread::sleep(Duration::from_millis(200));
                    Some(Beside::Monitor(monitor))
                }
                Load::Floor(attach) => Some(Beside::Floor(Floor::attach(bins, &object, attach)?)),
            };
            let faulter_args = [seconds.to_string(), "64".to_string(), cpu.clone()];
            let output = match load {
                Load::PerfTracepoint => Command::new("perf")
                    .args(["stat", "-e", "kmem:rss_stat", "-o", "/dev/null", "--"])
                    .arg(&faulter)
                    .args(faulter_args)
                    .output()?,
                _ => Command::new(&faulter).args(faulter_args).output()?,
            };
            let rate = faults_per_second(&String::from_utf8_lossy(&output.stdout))?;
            if let Some(beside) = beside {
                if let (true, Some(ns)) = (stats, rss_program_ns_per_call(beside.pid())) {
                    program_ns.entry(index).or_default().push(ns);
                }
                beside.stop()?;
            }
            if !stats {
                rates.entry(index).or_default().push(rate);
            }
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        percentile(values, 50.0)
    };
    // Per-round slowdowns of `index` against `base`, sorted.
    let slowdowns = |index: usize, base: usize| -> Vec<f64> {
        let mut slowdowns: Vec<f64> = rates[&index]
            .iter()
            .zip(&rates[&base])
            .map(|(rate, base)| (1.0 - rate / base) * 100.0)
            .collect();
        slowdowns.sort_by(f64::total_cmp);
        slowdowns
    };
    let floor_of = |attach: &str| {
        conditions
            .iter()
            .position(|(_, load)| matches!(load, Load::Floor(a) if *a == attach))
    };
    Ok(conditions
        .iter()
        .enumerate()
        .map(|(index, (name, load))| {
            let overheads = slowdowns(index, 0);
            let over_floor = load
                .attach()
                .and_then(floor_of)
                .map(|floor| slowdowns(index, floor));
            Faults {
                condition: name.to_string(),
                faults_per_s: median(&mut rates[&index].clone()),
                overhead_percent: percentile(&overheads, 50.0),
                overhead_percent_iqr: quartiles(&overheads),
                over_floor_percent: over_floor.as_ref().map(|s| percentile(s, 50.0)),
                over_floor_percent_iqr: over_floor.as_deref().map(quartiles),
                rss_program_ns_per_call: program_ns.get_mut(&index).map(median),
            }
        })
        .collect())
}

/// What runs beside the faulting process in one measurement.
enum Beside {
    Monitor(Monitor),
    Floor(Floor),
}

impl Beside {
    fn pid(&self) -> i32 {
        match self {
            Beside::Monitor(monitor) => monitor.pid(),
            Beside::Floor(floor) => floor.0.id() as i32,
        }
    }

    fn stop(self) -> Result<()> {
        match self {
            Beside::Monitor(monitor) => monitor.stop().map(drop),
            Beside::Floor(floor) => floor.stop(),
        }
    }
}

/// `mm-floor`, keeping an empty program attached until it is stopped.
struct Floor(Child);

impl Floor {
    fn attach(bins: &Binaries, object: &Path, attach: &str) -> Result<Floor> {
        let mut child = Command::new(bins.path("mm-floor"))
            .arg(object)
            .arg(attach)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start mm-floor")?;
        let mut said = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut said)?;
        ensure!(
            said.trim() == "attached",
            "mm-floor {attach} did not attach"
        );
        Ok(Floor(child))
    }

    fn stop(mut self) -> Result<()> {
        drop(self.0.stdin.take());
        let status = self.0.wait()?;
        ensure!(status.success(), "mm-floor: {status}");
        Ok(())
    }
}
