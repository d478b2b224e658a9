//! `cargo xtask bench`: figures, not pass/fail. Measures, side by side, on this machine:
//!
//! 1. breach → signal latency and 2. overshoot, with `mm-breach` (which stamps the clock at the
//!    page that crosses the limit and in its signal wait) under each monitor configuration;
//! 3. the monitor's footprint (RSS, CPU, wake-ups) watching 1 to 10,000 sleeping processes,
//!    idle and under event load;
//! 4. what watching costs in page faults per second (`mm-faults`), watched and unwatched, for
//!    both ways the RSS program can attach;
//! 5. heap allocations after start-up, as the monitor itself reports them.
//!
//! Results go to `target/bench/results.json` and `target/bench/results.md`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde::Serialize;

use crate::{cargo, run_step, workspace};

mod allocations;
mod churn;
mod faults;
mod footprint;
mod mrelease;
mod programs;
mod reaction;
mod table;

use allocations::allocations;
use faults::faults;
use footprint::footprint;
use table::markdown;

/// How a bench run is sized.
pub struct Options {
    /// Fewer trials and shorter windows (under five minutes).
    pub quick: bool,
    /// Bytes `mm-breach` grows per step.
    pub step: u64,
    /// Pause between steps.
    pub pause: Duration,
    /// The monitor measured: by default the static release binary (what ships).
    pub monitor: Option<PathBuf>,
    /// `--only SECTION`: that section alone.
    pub only: Option<String>,
}

/// The bench's sections, in the order they run.
const SECTIONS: [&str; 8] = [
    "latency",
    "reaction",
    "churn",
    "footprint",
    "faults",
    "programs",
    "allocations",
    "mrelease",
];

impl Options {
    /// Whether `section` runs.
    fn wants(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == section)
    }

    fn trials(&self) -> usize {
        if self.quick { 20 } else { 50 }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(if self.quick { 4 } else { 30 })
    }

    /// Rounds of the page-fault comparison, and seconds per run.
    fn fault_runs(&self) -> (usize, f64) {
        if self.quick { (8, 0.4) } else { (24, 0.5) }
    }
}

/// The limit every configuration watches for (MiB).
const LIMIT_MIB: u64 = 64;
/// Process counts for the footprint table.
const WATCHED: [usize; 4] = [1, 100, 1000, 10000];

#[derive(Serialize)]
struct Results {
    machine: Machine,
    step_bytes: u64,
    pause_us: u64,
    latency: Vec<reaction::Configuration>,
    reaction: Vec<reaction::Sized>,
    churn: Vec<churn::Churn>,
    footprint: Vec<Footprint>,
    faults: Vec<Faults>,
    programs: Vec<programs::Program>,
    allocations: Vec<Allocations>,
}

/// Runs a section's measurement if it is wanted; no rows if not.
fn section<T>(
    options: &Options,
    name: &str,
    measure: impl FnOnce() -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    match options.wants(name) {
        true => measure(),
        false => Ok(Vec::new()),
    }
}

#[derive(Serialize)]
struct Machine {
    kernel: String,
    cpu: String,
    cores: usize,
    memory_gib: f64,
}

#[derive(Serialize)]
struct Footprint {
    processes: usize,
    mode: String,
    watched: usize,
    steady_rss_kib: u64,
    peak_rss_kib: u64,
    idle_cpu_s_per_min: f64,
    idle_wakeups_per_min: f64,
    load_cpu_s_per_min: f64,
    load_breaches_per_s: f64,
    load_events_per_s: f64,
}

#[derive(Serialize)]
struct Faults {
    condition: String,
    /// Median page faults per CPU-second of the faulting process.
    faults_per_s: f64,
    /// Median over rounds of this condition's slowdown against the no-monitor run of the same
    /// round (paired, so slow drifts of the machine cancel out), with its interquartile range.
    overhead_percent: f64,
    overhead_percent_iqr: (f64, f64),
    /// The same against the empty program attached the same way (eBPF conditions): what the
    /// monitor's program costs above what the attach type costs by itself; with its
    /// interquartile range, since both sides of that pair vary from round to round.
    over_floor_percent: Option<f64>,
    over_floor_percent_iqr: Option<(f64, f64)>,
    /// The RSS program's own run time per call, from the kernel's program statistics, minus
    /// nothing: the statistics' clock reads are included (compare conditions, not absolutes).
    rss_program_ns_per_call: Option<f64>,
}

#[derive(Serialize)]
struct Allocations {
    mode: String,
    breaches: usize,
    events: u64,
    allocations_after_start_up: u64,
}

/// A `key=<number>` field of a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// The monitor measured, and where the release builds of the helper programs are.
struct Binaries {
    monitor: PathBuf,
    dir: PathBuf,
    links: PathBuf,
}

impl Binaries {
    fn path(&self, name: &str) -> PathBuf {
        match name {
            "memory-monitor" => self.monitor.clone(),
            _ => self.dir.join(name),
        }
    }

    /// A link to binary `to` named `name`: the process's name (`comm`) is the link's.
    fn named(&self, name: &str, to: &Path) -> Result<PathBuf> {
        let link = self.links.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(to, &link)
            .with_context(|| format!("link {}", link.display()))?;
        Ok(link)
    }
}

pub fn run(options: &Options) -> Result<()> {
    ensure!(
        crate::is_root(),
        "the benchmark needs root (eBPF mode, all of it)"
    );
    let monitor = match &options.monitor {
        Some(monitor) => monitor.clone(),
        None => crate::dist::static_binary()?,
    };
    let helpers = build_helpers()?;
    let out = workspace().join("target/bench");
    let links = out.join("links");
    std::fs::create_dir_all(&links)?;
    let bins = Binaries {
        monitor,
        dir: helpers,
        links,
    };
    let results = Results {
        machine: machine(),
        step_bytes: options.step,
        pause_us: options.pause.as_micros() as u64,
        latency: section(options, "latency", || {
            reaction::configurations(&bins, options, LIMIT_MIB)
        })?,
        reaction: section(options, "reaction", || reaction::by_size(&bins, options))?,
        churn: section(options, "churn", || churn::run(&bins, options))?,
        footprint: section(options, "footprint", || footprint(&bins, options))?,
        faults: section(options, "faults", || faults(&bins, options))?,
        programs: section(options, "programs", || programs::run(&bins, options))?,
        allocations: section(options, "allocations", || allocations(&bins, options))?,
    };
    section(options, "mrelease", || mrelease::run(&bins, options))?;
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(out.join("results.json"), json + "\n")?;
    let markdown = markdown(&results);
    std::fs::write(out.join("results.md"), &markdown)?;
    println!("{markdown}");
    eprintln!(
        "results: {} and results.md",
        out.join("results.json").display()
    );
    Ok(())
}

/// `kernel.bpf_stats_enabled` set while this lives (programs' run time and count cost two clock
/// reads per run, so it is on only where those figures are taken), as it was after.
pub(crate) struct BpfStats(Option<String>);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(crate) fn set(on: bool) -> BpfStats {
        let before = std::fs::read_to_string(BPF_STATS).ok();
        let _ = std::fs::write(BPF_STATS, if on { "1" } else { "0" });
        BpfStats(before)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = std::fs::write(BPF_STATS, before.trim());
        }
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let kib: f64 = field(&meminfo, "MemTotal")
        .trim_end_matches(" kB")
        .parse()
        .unwrap_or(0.0);
    Machine {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        cpu: field(&cpuinfo, "model name"),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: (kib / (1 << 20) as f64 * 10.0).round() / 10.0,
    }
}

/// A running monitor, its log collected line by line.
struct Monitor {
    child: Child,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Monitor {
    fn start(bins: &Binaries, args: &[&str]) -> Result<Monitor> {
        let mut child = Command::new(bins.path("memory-monitor"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start memory-monitor")?;
        let (tx, log) = channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut monitor = Monitor {
            child,
            log,
            seen: Vec::new(),
        };
        monitor.wait_for(&["watching"])?;
        Ok(monitor)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a log line with every one of `parts`.
    fn wait_for(&mut self, parts: &[&str]) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .log
                .recv_timeout(left)
                .with_context(|| format!("the monitor never logged {parts:?}: {:?}", self.seen))?;
            self.seen.push(line.clone());
            if parts.iter().all(|p| line.contains(p)) {
                return Ok(line);
            }
        }
    }

    /// How many lines with `part` were logged so far.
    fn count(&mut self, part: &str) -> usize {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().filter(|l| l.contains(part)).count()
    }

    /// Stops it with SIGTERM; its last line.
    fn stop(mut self) -> Result<String> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let line = self.wait_for(&["stopping"])?;
        let _ = self.child.wait();
        Ok(line)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the measuring programs (`mm-faults`, `mm-floor`, `mm-breach`, …) optimized, as
/// measurements want them; returns where they are.
pub(crate) fn build_helpers() -> Result<PathBuf> {
    run_step(cargo().args([
        "build",
        "--locked",
        "--release",
        "--package",
        "memory-monitor-tests",
        "--bins",
    ]))?;
    Ok(workspace().join("target/release"))
}

/// The rate `mm-faults` reports (`faults_per_second=N`).
pub(crate) fn faults_per_second(said: &str) -> Result<f64> {
    said.trim()
        .strip_prefix("faults_per_second=")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("mm-faults said {said:?}"))
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The first and third quartiles of `sorted`: its interquartile range.
pub(crate) fn quartiles(sorted: &[f64]) -> (f64, f64) {
    (percentile(sorted, 25.0), percentile(sorted, 75.0))
}

/// A range of percentages as the tables write it: `-0.5 … +1.2 %`.
pub(crate) fn percent_range((low, high): (f64, f64)) -> String {
    format!("{low:+.1} … {high:+.1} %")
}

/// CPU time (ns) and context switches of every thread of `pid`.
pub(crate) fn cpu_and_switches(pid: i32) -> (u64, u64) {
    let mut cpu = 0;
    let mut switches = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        cpu += schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        switches += status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    (cpu, switches)
}

fn status_kib(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The RSS program's run time (ns) and calls so far, from the monitor's own program
/// descriptors (`run_time_ns`/`run_cnt`, counted while `kernel.bpf_stats_enabled` is set): the
/// program called most.
pub(crate) fn rss_program_stats(pid: i32) -> Option<(u64, u64)> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let mut best: Option<(u64, u64)> = None;
    for entry in entries.flatten() {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let value = |key: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        };
        if let (Some(time), Some(count)) = (value("run_time_ns:"), value("run_cnt:"))
            && best.is_none_or(|(_, most)| count > most)
        {
            best = Some((time, count));
        }
    }
    best
}

/// The empty programs' object, as the monitor's build leaves it (see `memory-monitor/build.rs`).
pub(crate) fn bpf_object() -> Result<PathBuf> {
    let object = workspace()
        .join("target/bpf-programs")
        .join(crate::arch::Arch::host().name())
        .join("bpfel-unknown-none/release/memory-monitor-ebpf");
    ensure!(
        object.is_file(),
        "{} is missing: it is built with the monitor",
        object.display()
    );
    Ok(object)
}

pub(crate) fn micros(us: f64) -> String {
    if us.is_nan() {
        "–".to_string()
    } else if us.abs() >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

pub(crate) fn kib(kib: f64) -> String {
    if kib.is_nan() {
        "–".to_string()
    } else if kib.abs() >= 1024.0 {
        format!("{:.1} MiB", kib / 1024.0)
    } else {
        format!("{kib:.0} KiB")
    }
}

/// Parses `--step 64K --pause 1ms` style options after `bench`.
pub fn options(args: &[std::ffi::OsString]) -> Result<Options> {
    let mut options = Options {
        quick: false,
        step: 64 << 10,
        pause: Duration::from_millis(1),
        monitor: None,
        only: None,
    };
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--step" => {
                let value = args.next().context("--step needs a size, e.g. 64K")?;
                let (number, unit) = value.split_at(
                    value
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(value.len()),
                );
                let shift = match unit.to_ascii_uppercase().as_str() {
                    "" | "B" => 0,
                    "K" | "KIB" => 10,
                    "M" | "MIB" => 20,
                    other => bail!("--step: unknown unit {other:?}"),
                };
                options.step = number.parse::<u64>().context("--step")? << shift;
            }
            "--pause" => {
                let value = args.next().context("--pause needs a duration, e.g. 1ms")?;
                let micros = if let Some(ms) = value.strip_suffix("ms") {
                    ms.parse::<u64>()? * 1000
                } else if let Some(us) = value.strip_suffix("us") {
                    us.parse::<u64>()?
                } else {
                    bail!("--pause: use ms or us, e.g. 1ms")
                };
                options.pause = Duration::from_micros(micros);
            }
            "--monitor" => {
                let path = args
                    .next()
                    .context("--monitor needs the path of a monitor binary")?;
                options.monitor = Some(PathBuf::from(path));
            }
            "--only" => {
                let section = args.next().unwrap_or_default();
                ensure!(
                    SECTIONS.contains(&section.as_str()),
                    "--only takes one of {}",
                    SECTIONS.join(", ")
                );
                options.only = Some(section);
            }
            other => {
                bail!(
                    "bench: unknown option {other:?} (--quick, --step SIZE, --pause DURATION, --monitor PATH, --only SECTION)"
                )
            }
        }
    }
    Ok(options)
}
