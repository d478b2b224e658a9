//! What a guest showed: its console read into a report per kernel, and the table printed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use super::guest::tail;
use super::run::Test;

/// What one guest showed.
pub(super) struct Report {
    pub(super) kernel: &'static str,
    /// The package booted, or why none was.
    pub(super) package: Result<String, String>,
    /// Each planned test's result, in plan order.
    pub(super) results: Vec<Ran>,
    /// The BPF programs' verified instruction counts, by attach type and program.
    pub(super) insns: BTreeMap<(String, String), String>,
    /// What the monitor's start lines said: attach type and the figure that decides.
    pub(super) starts: Vec<String>,
    /// `kmem:rss_stat` events per MiB grown.
    pub(super) events_per_mib: Option<String>,
    /// The guest's end: ran through, or why not (a hang, with the console's tail).
    pub(super) ending: Option<String>,
    pub(super) wall: Duration,
}

/// One planned test in one guest.
pub(super) struct Ran {
    pub(super) test: Test,
    pub(super) outcome: Outcome,
    /// How long its run took in the guest, if it ended.
    pub(super) took: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Passed,
    Failed(String),
    NotRun,
}

impl Report {
    pub(super) fn failed(kernel: &'static str, why: String) -> Report {
        Report {
            kernel,
            package: Err(why),
            results: Vec::new(),
            insns: BTreeMap::new(),
            starts: Vec::new(),
            events_per_mib: None,
            ending: None,
            wall: Duration::ZERO,
        }
    }

    pub(super) fn passed(&self) -> bool {
        self.package.is_ok()
            && self.ending.is_none()
            && !self.results.is_empty()
            && self.results.iter().all(|r| r.outcome == Outcome::Passed)
    }
}

/// Reads a guest's console: the markers of [`plan`](super::run::plan) and the `vmtest:`
/// lines the kernel tests print. A test passed only if its run ended with status 0 *and*
/// libtest's summary says it ran exactly one test: a name that matched nothing exits 0 too.
pub(super) fn read_report(
    kernel: &'static str,
    package: &str,
    console: &str,
    tests: &[Test],
) -> Report {
    let mut report = Report::failed(kernel, String::new());
    report.package = Ok(package.to_string());
    let mut outputs: BTreeMap<String, (Outcome, Option<Duration>, Vec<&str>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(test) = line.strip_prefix("@@ begin ") {
            current = Some(test.to_string());
            outputs.insert(test.to_string(), (Outcome::NotRun, None, Vec::new()));
            continue;
        }
        if let Some(end) = line.strip_prefix("@@ end ")
            && let Some((test, status, millis)) = end_marker(end)
            && let Some((outcome, took, output)) = outputs.get_mut(test)
        {
            *outcome = match (status, ran(output)) {
                ("0", Some(1)) => Outcome::Passed,
                ("0", count) => Outcome::Failed(format!(
                    "exited 0 but ran {} tests where the host listed this one; its output:\n{}",
                    count.map_or("no count of".to_string(), |n| n.to_string()),
                    tail(&output.join("\n"), 20)
                )),
                _ => Outcome::Failed(tail(&output.join("\n"), 60)),
            };
            *took = millis.map(Duration::from_millis);
            current = None;
            continue;
        }
        if let Some(fatal) = line.strip_prefix("@@ fatal ") {
            report.ending = Some(format!("{fatal}; console:\n{}", tail(console, 40)));
        }
        if let Some(fields) = line.trim_start().strip_prefix("vmtest: ") {
            read_figure(&mut report, fields);
        }
        if let Some(test) = &current
            && let Some((_, _, output)) = outputs.get_mut(test)
        {
            output.push(line);
        }
    }
    for test in tests {
        let (outcome, took) = match outputs.remove(&test.id()) {
            Some((Outcome::NotRun, _, output)) => (
                Outcome::Failed(format!(
                    "did not finish; its last output:\n{}",
                    tail(&output.join("\n"), 40)
                )),
                None,
            ),
            Some((outcome, took, _)) => (outcome, took),
            None => (Outcome::NotRun, None),
        };
        report.results.push(Ran {
            test: test.clone(),
            outcome,
            took,
        });
    }
    if report.ending.is_none() && !console.contains("@@ done") {
        report.ending = Some(format!(
            "the guest ended before its plan did; its console's last lines:\n{}",
            tail(console, 40)
        ));
    }
    report
}

/// `ID STATUS MILLIS` of an end marker.
fn end_marker(end: &str) -> Option<(&str, &str, Option<u64>)> {
    let (rest, millis) = end.rsplit_once(' ')?;
    let (test, status) = rest.rsplit_once(' ')?;
    Some((test, status, millis.parse().ok()))
}

/// How many tests libtest says it ran and passed (`test result: ok. N passed; …`).
fn ran(output: &[&str]) -> Option<usize> {
    output.iter().rev().find_map(|line| {
        line.trim()
            .strip_prefix("test result: ")?
            .split_once(". ")?
            .1
            .split_once(" passed")?
            .0
            .parse()
            .ok()
    })
}

/// One `vmtest: key=value …` line a kernel test printed.
fn read_figure(report: &mut Report, fields: &str) {
    let value = |key: &str| {
        fields
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .map(String::from)
    };
    if let (Some(attach), Some(program), Some(insns)) =
        (value("attach"), value("program"), value("verified_insns"))
    {
        report.insns.insert((attach, program), insns);
    } else if let Some(start) = fields.strip_prefix("start ") {
        if !report.starts.iter().any(|s| s == start) {
            report.starts.push(start.to_string());
        }
    } else if let Some(events) = value("events_per_mib") {
        report.events_per_mib = Some(events);
    }
}

pub(super) fn print_reports(reports: &[Report]) {
    let mut text = String::new();
    for report in reports {
        text.push_str(&format!("\n== kernel {}: ", report.kernel));
        match &report.package {
            Err(why) => {
                text.push_str(&format!("FAILED before booting: {why}\n"));
                continue;
            }
            Ok(package) => text.push_str(&format!("{package}, {:.0?}\n", report.wall)),
        }
        for start in &report.starts {
            text.push_str(&format!("   {start}\n"));
        }
        if let Some(events) = &report.events_per_mib {
            text.push_str(&format!(
                "   kmem:rss_stat events per MiB grown: {events}\n"
            ));
        }
        text.push_str("   | test | result | seconds |\n   | --- | --- | --: |\n");
        for ran in &report.results {
            let shown = match ran.outcome {
                Outcome::Passed => "passed",
                Outcome::Failed(_) => "FAILED",
                Outcome::NotRun => "NOT RUN",
            };
            let took = ran
                .took
                .map_or("–".to_string(), |t| format!("{:.1}", t.as_secs_f64()));
            text.push_str(&format!("   | {} | {shown} | {took} |\n", ran.test.id()));
        }
        text.push_str(&by_binary(&report.results));
        if !report.insns.is_empty() {
            text.push_str(
                "   | attach | program | verified instructions |\n   | --- | --- | --: |\n",
            );
            for ((attach, program), insns) in &report.insns {
                text.push_str(&format!("   | {attach} | {program} | {insns} |\n"));
            }
        }
        for ran in &report.results {
            if let Outcome::Failed(output) = &ran.outcome {
                text.push_str(&format!(
                    "\n-- {} {} failed:\n{output}\n",
                    report.kernel,
                    ran.test.id()
                ));
            }
        }
        if let Some(ending) = &report.ending {
            text.push_str(&format!("\n-- {}: {ending}\n", report.kernel));
        }
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Per test binary: how many tests the host listed, how many ran and passed in the guest,
/// and the time they took there.
fn by_binary(results: &[Ran]) -> String {
    let mut binaries: BTreeMap<&str, (usize, usize, Duration)> = BTreeMap::new();
    for ran in results {
        let (listed, passed, took) = binaries.entry(&ran.test.binary).or_default();
        *listed += 1;
        *passed += usize::from(ran.outcome == Outcome::Passed);
        *took += ran.took.unwrap_or_default();
    }
    let mut text = String::from(
        "   | binary | listed | ran and passed | seconds |\n   | --- | --: | --: | --: |\n",
    );
    let mut total = (0, 0, Duration::ZERO);
    for (binary, (listed, passed, took)) in binaries {
        text.push_str(&format!(
            "   | {binary} | {listed} | {passed} | {:.0} |\n",
            took.as_secs_f64()
        ));
        total = (total.0 + listed, total.1 + passed, total.2 + took);
    }
    text.push_str(&format!(
        "   | all | {} | {} | {:.0} |\n",
        total.0,
        total.1,
        total.2.as_secs_f64()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(binary: &str, name: &str) -> Test {
        Test {
            binary: binary.to_string(),
            name: name.to_string(),
        }
    }

    #[test]
    fn the_console_is_read_into_a_report() {
        let tests = [
            test("sources", "ebpf::a"),
            test("sources", "ebpf::b"),
            test("sources", "ebpf::c"),
            test("rules", "select::d"),
        ];
        let console = "@@ booted 6.1.0-57-amd64\n\
                       @@ begin sources::ebpf::a\nrunning 1 test\n\
                       vmtest: attach=tp-btf program=rss_stat_btf verified_insns=1234\n\
                       test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 38 filtered out; finished in 1.50s\n\
                       @@ end sources::ebpf::a 0 1520\n\
                       @@ begin sources::ebpf::b\nthread panicked\n@@ end sources::ebpf::b 101 300\n\
                       @@ begin sources::ebpf::c\nrunning 0 tests\n\
                       test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 39 filtered out; finished in 0.00s\n\
                       @@ end sources::ebpf::c 0 10\n\
                       @@ done\n";
        let report = read_report("6.1", "linux-image-6.1.0-57-amd64", console, &tests);
        assert_eq!(
            report
                .insns
                .get(&("tp-btf".to_string(), "rss_stat_btf".to_string())),
            Some(&"1234".to_string())
        );
        assert!(report.ending.is_none());
        let outcomes: Vec<_> = report.results.iter().map(|r| &r.outcome).collect();
        assert_eq!(outcomes[0], &Outcome::Passed);
        assert_eq!(report.results[0].took, Some(Duration::from_millis(1520)));
        assert!(matches!(outcomes[1], Outcome::Failed(_)));
        // Exit status 0 with no test run (a name that matches nothing) is a failure.
        assert!(matches!(outcomes[2], Outcome::Failed(why) if why.contains("ran 0 tests")));
        // A planned test the console never mentions was not run.
        assert_eq!(outcomes[3], &Outcome::NotRun);
        assert!(!report.passed());
        let table = by_binary(&report.results);
        assert!(table.contains("| sources | 3 | 1 | 2 |"), "{table}");
        assert!(table.contains("| all | 4 | 1 | 2 |"), "{table}");
    }

    #[test]
    fn a_guest_passes_only_when_every_planned_test_ran_and_passed() {
        let tests = [test("sources", "ebpf::a")];
        let ran = "@@ begin sources::ebpf::a\n\
                   test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\
                   @@ end sources::ebpf::a 0 5\n@@ done\n";
        assert!(read_report("6.1", "p", ran, &tests).passed());
        assert!(!read_report("6.1", "p", "@@ done\n", &tests).passed());
        assert!(!read_report("6.1", "p", ran, &[]).passed());
    }
}
