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

use super::{Binaries, Monitor, Options, percentile};
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
                let monitor = match condition {
                    0 => None,
                    // A name no process has: everything runs unwatched.
                    1 => Some(Monitor::start(bins, &watching("mmb-nobody"))?),
                    _ => Some(Monitor::start(bins, &watching(workload.watch))?),
                };
                seconds[w][condition].push(cpu_seconds((workload.command)(&inputs))?);
                if let Some(monitor) = monitor {
                    monitor.stop()?;
                }
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
            });
        }
    }
    Ok(results)
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
         with the lowest and highest; eBPF mode, `--attach auto`)\n"
            .to_string(),
    );
    line("| program | condition | CPU s | slowdown | spread |".to_string());
    line("| --- | --- | --: | --: | --: |".to_string());
    for p in programs {
        let (slowdown, spread) = match p.condition.as_str() {
            "no monitor" => ("–".to_string(), "–".to_string()),
            _ => (
                format!("{:+.1} %", percentile(&p.slowdown_percent, 50.0)),
                format!(
                    "{:+.1} … {:+.1} %",
                    p.slowdown_percent.first().copied().unwrap_or(f64::NAN),
                    p.slowdown_percent.last().copied().unwrap_or(f64::NAN)
                ),
            ),
        };
        line(format!(
            "| {} | {} | {:.2} | {slowdown} | {spread} |",
            p.program, p.condition, p.cpu_s
        ));
    }
}
