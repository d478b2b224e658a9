//! What eBPF mode costs programs nobody here wrote, from Debian's packages: a compiler, an
//! allocating interpreter, a compressor and `sort`. Each runs with no monitor, with the
//! monitor watching something else (unwatched), and watched by its own name, in rounds whose
//! order rotates; what counts is the CPU time (user + system) of the program and its
//! children, compared with the no-monitor run of the same round.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, ensure};
use serde::Serialize;

use super::{Binaries, BpfStats, Monitor, Options, percent_range, percentile, rss_program_stats};
use crate::workspace;

/// One program under one condition: its slowdowns over the rounds.
#[derive(Serialize)]
pub struct Program {
    program: String,
    condition: String,
    /// Median CPU seconds per run.
    cpu_s: f64,
    /// Per-round slowdowns against the no-monitor run of the same round (percent), sorted.
    slowdown_percent: Vec<f64>,
    /// The RSS program's calls, and their time (seconds), in one more run with
    /// `kernel.bpf_stats_enabled` (eBPF conditions): what the program cost, measured by the
    /// kernel, however noisy the CPU times are.
    rss_program: Option<(u64, f64)>,
}

/// A program the bench runs, and the name its memory-hungry process has (`comm`).
struct Workload {
    program: &'static str,
    watch: &'static str,
    command: fn(&Inputs) -> Command,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        program: "gcc -O2 (a generated 6,000-function C file)",
        // gcc itself only drives: the compiler proper is cc1.
        watch: "cc1",
        command: |inputs| {
            let mut command = Command::new("gcc");
            command
                .args(["-O2", "-c", "-o", "/dev/null"])
                .arg(&inputs.c_file);
            command
        },
    },
    Workload {
        program: "python3 (builds ~400 MB of objects)",
        watch: "python3",
        command: |_| {
            let mut command = Command::new("/usr/bin/python3");
            command.args([
                "-c",
                "d = {i: str(i) * 4 for i in range(1_500_000)}\nl = [list(range(20)) for _ in range(400_000)]",
            ]);
            command
        },
    },
    Workload {
        program: "xz -6 (8 MiB of text)",
        watch: "xz",
        command: |inputs| {
            let mut command = Command::new("xz");
            command.args(["-6", "-T1", "-c", "-k"]).arg(&inputs.text_8m);
            command
        },
    },
    Workload {
        program: "sort (2.4 million lines)",
        watch: "sort",
        command: |inputs| {
            let mut command = Command::new("sort");
            command
                .args(["-S", "512M", "-o", "/dev/null"])
                .arg(&inputs.lines)
                .env("LC_ALL", "C");
            command
        },
    },
];

/// The conditions of each round: no monitor, unwatched, watched.
const CONDITIONS: [&str; 3] = ["no monitor", "unwatched", "watched by name"];

/// The programs' input files, made once under `target/bench/programs`.
struct Inputs {
    c_file: PathBuf,
    lines: PathBuf,
    text_8m: PathBuf,
}

impl Inputs {
    fn make() -> Result<Inputs> {
        let dir = workspace().join("target/bench/programs");
        std::fs::create_dir_all(&dir)?;
        let inputs = Inputs {
            c_file: dir.join("generated.c"),
            lines: dir.join("lines.txt"),
            text_8m: dir.join("text-8m.txt"),
        };
        let mut c = String::new();
        for n in 0..6000u32 {
            let _ = writeln!(
                c,
                "long f{n}(long x) {{ long s = {n}; for (int i = 0; i < (x & 63); i++) \
                 {{ s = s * 31 + (x ^ i) % {m}; if (s & 1) s += f{p}(s >> 3); }} return s; }}",
                m = n % 97 + 3,
                p = n.saturating_sub(1),
            );
        }
        std::fs::write(&inputs.c_file, c)?;
        // Pseudo-random numbers, one per line (a fixed seed: the same input every run).
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut text = String::with_capacity(30 << 20);
        for _ in 0..2_400_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let _ = writeln!(text, "{state} {}", state % 1000);
        }
        std::fs::write(&inputs.lines, &text)?;
        std::fs::write(&inputs.text_8m, &text.as_bytes()[..8 << 20])?;
        Ok(inputs)
    }
}

/// Runs every workload under every condition, `rounds` times.
pub(super) fn run(bins: &Binaries, options: &Options) -> Result<Vec<Program>> {
    let rounds = if options.quick { 3 } else { 7 };
    let inputs = Inputs::make()?;
    // CPU seconds per (workload, condition), one per round.
    let mut seconds = vec![vec![Vec::new(); CONDITIONS.len()]; WORKLOADS.len()];
    for round in 0..rounds {
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for step in 0..CONDITIONS.len() {
                let condition = (step + round + w) % CONDITIONS.len();
                eprintln!(
                    "programs: round {}/{rounds}: {} {}",
                    round + 1,
                    workload.program,
                    CONDITIONS[condition]
                );
                let monitor = monitor_for(bins, workload, condition)?;
                seconds[w][condition].push(cpu_seconds((workload.command)(&inputs))?);
                if let Some(monitor) = monitor {
                    monitor.stop()?;
                }
            }
        }
    }
    // The program's own time, in runs of their own (the statistics' clock reads slow it).
    let mut program = vec![vec![None; CONDITIONS.len()]; WORKLOADS.len()];
    {
        let _stats = BpfStats::set(true);
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for condition in 1..CONDITIONS.len() {
                eprintln!(
                    "programs: the RSS program's time: {} {}",
                    workload.program, CONDITIONS[condition]
                );
                let Some(monitor) = monitor_for(bins, workload, condition)? else {
                    continue;
                };
                let before = rss_program_stats(monitor.pid());
                cpu_seconds((workload.command)(&inputs))?;
                let after = rss_program_stats(monitor.pid());
                monitor.stop()?;
                program[w][condition] = before.zip(after).map(|((t0, n0), (t1, n1))| {
                    (n1.saturating_sub(n0), t1.saturating_sub(t0) as f64 / 1e9)
                });
            }
        }
    }
    let mut results = Vec::new();
    for (w, workload) in WORKLOADS.iter().enumerate() {
        for (condition, name) in CONDITIONS.iter().enumerate() {
            let runs = &seconds[w][condition];
            let mut slowdowns: Vec<f64> = runs
                .iter()
                .zip(&seconds[w][0])
                .map(|(run, base)| (run / base - 1.0) * 100.0)
                .collect();
            slowdowns.sort_by(f64::total_cmp);
            let mut sorted = runs.clone();
            sorted.sort_by(f64::total_cmp);
            results.push(Program {
                program: workload.program.to_string(),
                condition: name.to_string(),
                cpu_s: percentile(&sorted, 50.0),
                slowdown_percent: slowdowns,
                rss_program: program[w][condition],
            });
        }
    }
    Ok(results)
}

/// The monitor beside `workload` under `condition`: none, watching a name no process has (so
/// that everything runs unwatched), or watching the workload by name.
fn monitor_for(bins: &Binaries, workload: &Workload, condition: usize) -> Result<Option<Monitor>> {
    Ok(match condition {
        0 => None,
        1 => Some(Monitor::start(bins, &watching("mmb-nobody"))?),
        _ => Some(Monitor::start(bins, &watching(workload.watch))?),
    })
}

/// The monitor's arguments: eBPF mode, a limit nothing reaches, processes named `name`.
fn watching(name: &str) -> [&str; 5] {
    ["--mode", "ebpf", "-m", "64G", name]
}

/// Runs `command` to its end; the CPU time it and its children took (user + system), from
/// the growth of this process's reaped children's usage.
fn cpu_seconds(mut command: Command) -> Result<f64> {
    let before = children_cpu_seconds();
    let status = command
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(status.success(), "{command:?}: {status}");
    Ok(children_cpu_seconds() - before)
}

fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills in the struct it is given; zeroes are a valid start.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The section's table: per program and condition, the median slowdown and its spread.
pub(super) fn markdown(programs: &[Program], line: &mut impl FnMut(String)) {
    if programs.is_empty() {
        return;
    }
    line(
        "\n**Cost to real programs** (CPU time, user + system, of the program and its children; \
         slowdown: median of per-round ratios against the no-monitor run of the same round, \
         with the lowest and highest; eBPF mode, `--attach auto`; the RSS program's calls and \
         time over one more run, from the kernel's program statistics, whose own clock reads \
         are included, and that time as a share of the program's CPU time: every process's \
         calls while it ran, the program's among them)\n"
            .to_string(),
    );
    line(
        "| program | condition | CPU s | slowdown | spread | RSS program calls | its time | share |"
            .to_string(),
    );
    line("| --- | --- | --: | --: | --: | --: | --: | --: |".to_string());
    for p in programs {
        let (slowdown, spread) = match p.condition.as_str() {
            "no monitor" => ("–".to_string(), "–".to_string()),
            _ => (
                format!("{:+.1} %", percentile(&p.slowdown_percent, 50.0)),
                percent_range((
                    p.slowdown_percent.first().copied().unwrap_or(f64::NAN),
                    p.slowdown_percent.last().copied().unwrap_or(f64::NAN),
                )),
            ),
        };
        let (calls, time, share) = match p.rss_program {
            Some((calls, seconds)) => (
                calls.to_string(),
                format!("{:.1} ms", seconds * 1e3),
                format!("{:.2} %", seconds / p.cpu_s * 100.0),
            ),
            None => ("–".to_string(), "–".to_string(), "–".to_string()),
        };
        line(format!(
            "| {} | {} | {:.2} | {slowdown} | {spread} | {calls} | {time} | {share} |",
            p.program, p.condition, p.cpu_s
        ));
    }
}
