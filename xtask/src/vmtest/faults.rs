//! `cargo xtask vmtest --faults [--cpus 2,8,32] [KERNEL…]`: what attaching to `kmem:rss_stat`
//! costs every page fault, against the guest's vCPU count.
//!
//! On kernels with per-CPU RSS counters (6.2 on), filling in the classic tracepoint's record
//! sums the changed counter over every CPU, so its cost grows with the CPU count; `tp_btf`
//! fills in no record. Each guest runs `mm-faults` with nothing attached and with an empty
//! program attached each way (`mm-floor`: the attach type's own price), every condition once
//! per round in rotating order. Under TCG absolute times mean nothing and even the ratio of a
//! memory walk to a fault is not a real machine's: compare the ratios within one kernel as the
//! vCPUs grow, not with the bench's figures.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail, ensure};

use crate::{cargo, run_step};

/// The conditions, as `mm-floor` names the attach types (`none`: nothing attached).
const CONDITIONS: [&str; 3] = ["none", "tracepoint", "tp-btf"];
/// Rounds per guest, and each run's length in seconds of the faulter's CPU time.
const ROUNDS: usize = 5;
const SECONDS: &str = "1";

/// One guest's measurement: its kernel, vCPUs, and per attach type the slowdown of each round
/// against that round's run with nothing attached, sorted.
struct Scaling {
    kernel: &'static str,
    cpus: usize,
    slowdowns: BTreeMap<&'static str, Vec<f64>>,
}

/// Boots each of `kernels` once per vCPU count in `cpus` and prints the table.
pub fn run(kernels: &[&'static str], cpus: &[usize]) -> Result<()> {
    super::setup()?;
    // The monitor's build makes the BPF object the empty programs are loaded from.
    run_step(cargo().args(["build", "--locked", "--package", "memory-monitor"]))?;
    let bins = crate::bench::build_helpers()?;
    let object = crate::bench::bpf_object()?;
    let results = super::measure(kernels, cpus, &plan(&bins, &object), "@@ faults ", read)?;
    print!("{}", table(&results));
    Ok(())
}

/// The guest's plan: every condition once per round, in an order rotated each round.
fn plan(bins: &Path, object: &Path) -> String {
    let (faults, floor) = (bins.join("mm-faults"), bins.join("mm-floor"));
    let (faults, floor, object) = (faults.display(), floor.display(), object.display());
    let mut plan = format!(
        r#"export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd /tmp
cpu=$(( $(nproc) - 1 ))
measure() {{
    if [ "$1" = none ]; then
        echo "@@ faults $1 $2 $('{faults}' {SECONDS} 64 $cpu)"
        return
    fi
    rm -f /tmp/hold /tmp/floor.out; mkfifo /tmp/hold
    '{floor}' '{object}' "$1" < /tmp/hold > /tmp/floor.out 2>&1 &
    exec 3> /tmp/hold
    until grep -q attached /tmp/floor.out; do
        kill -0 $! 2>/dev/null || {{ echo "@@ fatal mm-floor $1: $(cat /tmp/floor.out)"; return; }}
        sleep 0.1
    done
    echo "@@ faults $1 $2 $('{faults}' {SECONDS} 64 $cpu)"
    exec 3>&-
    wait
}}
"#
    );
    for round in 0..ROUNDS {
        for step in 0..CONDITIONS.len() {
            let condition = CONDITIONS[(step + round) % CONDITIONS.len()];
            plan.push_str(&format!("measure {condition} {round}\n"));
        }
    }
    plan
}

/// Reads a guest's `@@ faults CONDITION ROUND faults_per_second=RATE` lines.
fn read(kernel: &'static str, cpus: usize, console: &str) -> Result<Scaling> {
    if let Some(fatal) = console.lines().find(|l| l.trim().starts_with("@@ fatal")) {
        bail!("{kernel} with {cpus} vCPUs: {}", fatal.trim());
    }
    let mut rates: BTreeMap<(&str, usize), f64> = BTreeMap::new();
    for line in console.lines() {
        let Some(rest) = line.trim().strip_prefix("@@ faults ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [condition, round, rate] = fields[..] else {
            bail!("{kernel} with {cpus} vCPUs: cannot read {line:?}");
        };
        let condition = CONDITIONS
            .iter()
            .find(|c| **c == condition)
            .with_context(|| format!("unknown condition in {line:?}"))?;
        let rate = crate::bench::faults_per_second(rate)?;
        rates.insert((condition, round.parse()?), rate);
    }
    let mut slowdowns = BTreeMap::new();
    for condition in &CONDITIONS[1..] {
        let mut per_round: Vec<f64> = (0..ROUNDS)
            .filter_map(|round| {
                let base = rates.get(&("none", round))?;
                let rate = rates.get(&(*condition, round))?;
                Some((1.0 - rate / base) * 100.0)
            })
            .collect();
        ensure!(
            !per_round.is_empty(),
            "{kernel} with {cpus} vCPUs: no round measured {condition}"
        );
        per_round.sort_by(f64::total_cmp);
        slowdowns.insert(*condition, per_round);
    }
    Ok(Scaling {
        kernel,
        cpus,
        slowdowns,
    })
}

/// The results as a Markdown table: the median slowdown and its range, per attach type.
fn table(results: &[Scaling]) -> String {
    let mut text = String::from(
        "\n| kernel | vCPUs | empty classic tracepoint program | empty tp_btf program |\n| --- | --: | --: | --: |\n",
    );
    for result in results {
        let cell = |condition: &str| {
            let values = &result.slowdowns[condition];
            format!(
                "{:+.1} % ({:+.1} … {:+.1})",
                crate::bench::percentile(values, 50.0),
                values[0],
                values[values.len() - 1]
            )
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            result.kernel,
            result.cpus,
            cell("tracepoint"),
            cell("tp-btf")
        ));
    }
    text.push_str(&format!(
        "\n(page faults' slowdown against nothing attached: the median of {ROUNDS} rounds, and the range)\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_reads_as_per_round_slowdowns() {
        // Rates whose ratios are exact in binary: 1 - 768/1024 = 25 %, and so on.
        let console = "@@ booted 6.12\n\
             @@ faults none 0 faults_per_second=1024\n\
             @@ faults tracepoint 0 faults_per_second=512\n\
             @@ faults tp-btf 0 faults_per_second=896\n\
             @@ faults tp-btf 1 faults_per_second=768\n\
             @@ faults none 1 faults_per_second=1024\n\
             @@ faults tracepoint 1 faults_per_second=768\n\
             @@ faults tracepoint 2 faults_per_second=640\n\
             @@ faults none 2 faults_per_second=1024\n\
             @@ faults tp-btf 2 faults_per_second=1024\n";
        let scaling = read("6.12", 8, console).unwrap();
        assert_eq!(scaling.slowdowns["tracepoint"], [25.0, 37.5, 50.0]);
        assert_eq!(scaling.slowdowns["tp-btf"], [0.0, 12.5, 25.0]);
        let table = table(&[scaling]);
        assert!(
            table.contains("| 6.12 | 8 | +37.5 % (+25.0 … +50.0) | +12.5 % (+0.0 … +25.0) |"),
            "{table}"
        );
    }

    #[test]
    fn a_floor_that_would_not_attach_fails_the_guest() {
        let console = "@@ fatal mm-floor tp-btf: the kernel refused it\n";
        assert!(read("6.1", 2, console).is_err());
    }
}
