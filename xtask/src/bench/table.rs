//! The results as the Markdown tables `target/bench/results.md` holds.

use super::{LIMIT_MIB, Results, churn, kib, percent_range, programs, reaction};

pub(super) fn markdown(results: &Results) -> String {
    let m = &results.machine;
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "Machine: {}, {} cores, {:.0} GiB RAM, Linux {}. Growth: {} KiB steps every {} µs; limit {LIMIT_MIB} MiB.\n",
        m.cpu,
        m.cores,
        m.memory_gib,
        m.kernel,
        results.step_bytes / 1024,
        results.pause_us
    ));
    reaction::markdown(&results.latency, &results.reaction, &mut line);
    churn::markdown(&results.churn, &mut line);
    if !results.footprint.is_empty() {
        line("**Footprint** (CPU as seconds per minute of one core; load: one watched process crossing the limit and back continuously)\n".to_string());
        line("| processes | mode | watched | steady RSS | peak RSS | idle CPU s/min | idle wake-ups/min | CPU s/min under load | breaches/s | kernel events/s |".to_string());
        line("| --: | --- | --: | --: | --: | --: | --: | --: | --: | --: |".to_string());
    }
    for f in &results.footprint {
        line(format!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.0} | {:.3} | {:.0} | {:.0} |",
            f.processes,
            f.mode,
            f.watched,
            kib(f.steady_rss_kib as f64),
            kib(f.peak_rss_kib as f64),
            f.idle_cpu_s_per_min,
            f.idle_wakeups_per_min,
            f.load_cpu_s_per_min,
            f.load_breaches_per_s,
            f.load_events_per_s
        ));
    }
    if !results.faults.is_empty() {
        line(
            "\n**Cost to processes: page faults per CPU-second** (overhead: median of per-round \
             slowdowns against the no-monitor run of the same round, and their interquartile \
             range; over its floor: the same against the empty program attached the same way, \
             and its interquartile range; \
             program time per call includes the kernel statistics' own clock reads)\n"
                .to_string(),
        );
        line(
            "| condition | faults/s | overhead | IQR | over its floor | IQR | RSS program per call |"
                .to_string(),
        );
        line("| --- | --: | --: | --: | --: | --: | --: |".to_string());
    }
    for f in &results.faults {
        line(format!(
            "| {} | {:.0} | {:+.1} % | {} | {} | {} | {} |",
            f.condition,
            f.faults_per_s,
            f.overhead_percent,
            percent_range(f.overhead_percent_iqr),
            f.over_floor_percent
                .map_or("–".to_string(), |p| format!("{p:+.1} %")),
            f.over_floor_percent_iqr
                .map_or("–".to_string(), percent_range),
            f.rss_program_ns_per_call
                .map_or("–".to_string(), |ns| format!("{ns:.0} ns"))
        ));
    }
    programs::markdown(&results.programs, &mut line);
    if !results.allocations.is_empty() {
        line(
            "\n**Heap allocations after start-up** (as the monitor reports them when it stops)\n"
                .to_string(),
        );
        line("| mode | breaches handled | kernel events handled | allocations |".to_string());
        line("| --- | --: | --: | --: |".to_string());
    }
    for a in &results.allocations {
        line(format!(
            "| {} | {} | {} | {} |",
            a.mode, a.breaches, a.events, a.allocations_after_start_up
        ));
    }
    out
}
