//! `cargo xtask vmtest --reaction [KERNEL…]`: breach → signal in guests of each kernel, at
//! 100 MiB and at 1 GiB, so that what decides near the limit on each kernel (`statm`, the
//! kernel side's sum of per-CPU parts or of thread caches, or `smaps_rollup`) is seen at a
//! size where a page-table walk would show. Under TCG absolute times are many times a real
//! machine's: compare the two sizes within one kernel.
//!
//! Each guest runs the shipped monitor and `mm-breach` (the bench's target) a few times per
//! size and growth rate, and reports `mm-breach`'s own lines and the monitor's breach lines.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail, ensure};

use super::guest::GUEST_CPUS;
use crate::bench::percentile;

/// The sizes measured (MiB): the guests have 2 GiB.
const SIZES_MIB: [u64; 2] = [100, 1024];
/// Growth rates: bytes per step, with 1 ms between steps.
const STEPS: [(&str, u64); 2] = [("64 KiB/ms", 64 << 10), ("1 MiB/ms", 1 << 20)];
/// Trials per size and rate.
const TRIALS: usize = 11;

/// One kernel's medians by (size, rate): µs from the crossing page to the signal, and the
/// monitor's own work (breach lines' `reaction_us` less `queued_us`); and what decided.
struct Medians {
    kernel: &'static str,
    decides: String,
    latency_us: BTreeMap<(u64, &'static str), f64>,
    work_us: BTreeMap<(u64, &'static str), f64>,
}

/// Boots each of `kernels` and prints the table.
pub fn run(kernels: &[&'static str]) -> Result<()> {
    super::setup()?;
    let monitor = crate::dist::static_binary()?;
    let bins = crate::bench::build_helpers()?;
    let plan = plan(&monitor, &bins.join("mm-breach"));
    let results = super::measure(
        kernels,
        &[GUEST_CPUS],
        &plan,
        "@@ reaction ",
        |kernel, _, console| read(kernel, console),
    )?;
    print!("{}", table(&results));
    Ok(())
}

/// The guest's plan: for each size and rate, a monitor and `TRIALS` crossings.
fn plan(monitor: &Path, breach: &Path) -> String {
    let (monitor, breach) = (monitor.display(), breach.display());
    let mut plan = format!(
        r#"export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd /tmp
ln -s '{breach}' /tmp/mmv-breach
measure() {{
    '{monitor}' --mode ebpf -m "$1M" -s USR1 --repeat never mmv-breach 2> /tmp/monitor.log &
    monitor=$!
    until grep -q 'event="start"' /tmp/monitor.log; do
        kill -0 $monitor 2>/dev/null || {{ echo "@@ fatal monitor: $(cat /tmp/monitor.log)"; return; }}
        sleep 0.1
    done
    sleep 1
    echo "@@ start $(grep 'event="start"' /tmp/monitor.log)"
    i=0
    while [ $i -lt {TRIALS} ]; do
        echo "@@ reaction $1 $2 $(/tmp/mmv-breach $(($1 << 20)) $2 1000 $((256 << 20)))"
        i=$((i + 1))
    done
    kill $monitor
    wait $monitor
    grep 'event="breach"' /tmp/monitor.log | while read -r line; do echo "@@ breach $1 $2 $line"; done
}}
"#
    );
    for size in SIZES_MIB {
        for (_, step) in STEPS {
            plan.push_str(&format!("measure {size} {step}\n"));
        }
    }
    plan
}

/// Reads a guest's `@@ reaction SIZE STEP crossed_ns=… signalled_ns=… …` and `@@ breach SIZE
/// STEP <breach line>` lines into medians.
fn read(kernel: &'static str, console: &str) -> Result<Medians> {
    if let Some(fatal) = console.lines().find(|l| l.trim().starts_with("@@ fatal")) {
        bail!("{kernel}: {}", fatal.trim());
    }
    let mut latencies: BTreeMap<(u64, &'static str), Vec<f64>> = BTreeMap::new();
    let mut works: BTreeMap<(u64, &'static str), Vec<f64>> = BTreeMap::new();
    let mut decides = String::from("?");
    for line in console.lines().map(str::trim) {
        if let Some(start) = line.strip_prefix("@@ start ") {
            decides = value(start, "decides").unwrap_or("?").to_string();
            continue;
        }
        let (reaction, rest) = match (
            line.strip_prefix("@@ reaction "),
            line.strip_prefix("@@ breach "),
        ) {
            (Some(rest), _) => (true, rest),
            (_, Some(rest)) => (false, rest),
            _ => continue,
        };
        let mut words = rest.splitn(3, ' ');
        let (Some(size), Some(step), Some(fields)) = (words.next(), words.next(), words.next())
        else {
            bail!("{kernel}: cannot read {line:?}");
        };
        let size: u64 = size.parse()?;
        let Some((rate, _)) = STEPS.iter().find(|(_, s)| s.to_string() == step) else {
            bail!("{kernel}: unknown step in {line:?}");
        };
        let number = |key| value(fields, key).and_then(|v| v.parse::<f64>().ok());
        if reaction {
            if let (Some(crossed), Some(signalled)) = (number("crossed_ns"), number("signalled_ns"))
                && crossed > 0.0
                && signalled > 0.0
            {
                latencies
                    .entry((size, rate))
                    .or_default()
                    .push((signalled - crossed) / 1000.0);
            }
        } else if let (Some(queued), Some(reaction)) = (number("queued_us"), number("reaction_us"))
        {
            works
                .entry((size, rate))
                .or_default()
                .push(reaction - queued);
        }
    }
    let medians = |values: BTreeMap<(u64, &'static str), Vec<f64>>| {
        values
            .into_iter()
            .map(|(key, mut values)| {
                values.sort_by(f64::total_cmp);
                (key, percentile(&values, 50.0))
            })
            .collect()
    };
    ensure!(!latencies.is_empty(), "{kernel}: no crossing was signalled");
    Ok(Medians {
        kernel,
        decides,
        latency_us: medians(latencies),
        work_us: medians(works),
    })
}

/// `key=value`'s value in a line of such fields.
fn value<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

/// The results as a Markdown table: per kernel and rate, the medians at each size and their
/// ratio.
fn table(results: &[Medians]) -> String {
    let (small, large) = (SIZES_MIB[0], SIZES_MIB[1]);
    let mut text = format!(
        "\n| kernel | decides | growth | {small} MiB: p50 | work | {large} MiB: p50 | work | {large} MiB / {small} MiB |\n| --- | --- | --- | --: | --: | --: | --: | --: |\n"
    );
    for result in results {
        for (rate, _) in STEPS {
            let at = |map: &BTreeMap<(u64, &str), f64>, size| map.get(&(size, rate)).copied();
            let micros = |us: Option<f64>| us.map_or("–".to_string(), crate::bench::micros);
            let ratio = at(&result.latency_us, large)
                .zip(at(&result.latency_us, small))
                .map_or("–".to_string(), |(l, s)| format!("{:.2}×", l / s));
            text.push_str(&format!(
                "| {} | {} | {rate} | {} | {} | {} | {} | {ratio} |\n",
                result.kernel,
                result.decides,
                micros(at(&result.latency_us, small)),
                micros(at(&result.work_us, small)),
                micros(at(&result.latency_us, large)),
                micros(at(&result.work_us, large)),
            ));
        }
    }
    text.push_str(&format!(
        "\n(medians of {TRIALS} crossings each, {GUEST_CPUS} vCPUs under TCG: compare the sizes within a kernel)\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_reads_as_medians_by_size_and_rate() {
        let console = "@@ start INFO watching event=\"start\" mode=ebpf decides=thread-sum margin=4.1MiB/thread\n\
             @@ reaction 100 1048576 crossed_ns=1000 signalled_ns=301000 rss_at_signal=1 signal=10\n\
             @@ reaction 100 1048576 crossed_ns=1000 signalled_ns=101000 rss_at_signal=1 signal=10\n\
             @@ reaction 100 1048576 crossed_ns=1000 signalled_ns=201000 rss_at_signal=1 signal=10\n\
             @@ reaction 1024 1048576 crossed_ns=0 signalled_ns=0 rss_at_signal=0 signal=0\n\
             @@ reaction 1024 1048576 crossed_ns=1000 signalled_ns=401000 rss_at_signal=1 signal=10\n\
             @@ breach 100 1048576 WARN over the limit event=\"breach\" queued_us=50 reaction_us=80\n";
        let medians = read("5.10", console).unwrap();
        assert_eq!(medians.decides, "thread-sum");
        assert_eq!(medians.latency_us[&(100, "1 MiB/ms")], 200.0);
        assert_eq!(medians.latency_us[&(1024, "1 MiB/ms")], 400.0);
        assert_eq!(medians.work_us[&(100, "1 MiB/ms")], 30.0);
        let table = table(&[medians]);
        assert!(
            table
                .contains("| 5.10 | thread-sum | 1 MiB/ms | 200 µs | 30 µs | 400 µs | – | 2.00× |"),
            "{table}"
        );
    }
}
