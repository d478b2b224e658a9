//! `cargo xtask test --stress N`: the whole test suite, N times in a row, on a machine kept
//! busy by a load this command starts itself (Debian's `stress-ng`): a CPU hog per core and a
//! worker that keeps mapping, touching and unmapping a share of the memory, on the same cores
//! as the tests. A test that depends on who runs first fails here sooner or later; each
//! failure is reported with its test and the run it happened in. Not part of `cargo xtask
//! test` itself: it takes long.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};

use crate::{build_for_tests, cargo, run_step, test_suite, workspace};

/// The share of the machine's memory the load keeps churning.
const CHURNED_MEMORY: &str = "10%";

/// Parses the value of `--stress`.
pub fn runs(value: &std::ffi::OsStr) -> Result<usize> {
    value
        .to_str()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .context("--stress takes how many runs, a whole number: cargo xtask test --stress 3")
}

/// What one run of the suite came to.
struct Run {
    tests: usize,
    failures: Vec<Failure>,
    minutes: f64,
}

/// A test that failed: its test binary, its name, and the first line of why.
struct Failure {
    binary: String,
    test: String,
    why: String,
}

/// Builds everything, starts the load, runs the suite `runs` times and reports; fails if any
/// test failed in any run.
pub fn run(runs: usize) -> Result<()> {
    // Built before the load starts: the runs measure the tests, not the compiler.
    build_for_tests()?;
    run_step(cargo().args(["test", "--locked", "--workspace", "--no-run"]))?;
    let logs = workspace().join("target/stress");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let load = Load::start()?;
    let mut results = Vec::new();
    for number in 1..=runs {
        let log = logs.join(format!("run-{number}.log"));
        let result = suite(&log)?;
        eprintln!(
            "stress: run {number}/{runs}: {} tests, {} failed, {:.1} min (log: {})",
            result.tests,
            result.failures.len(),
            result.minutes,
            log.display()
        );
        for failure in &result.failures {
            eprintln!(
                "stress:   FAILED in run {number}: {} {} — {}",
                failure.binary, failure.test, failure.why
            );
        }
        results.push(result);
    }
    drop(load);
    report(&results)
}

/// Prints the summary; an error when anything failed.
fn report(results: &[Run]) -> Result<()> {
    let tests: usize = results.iter().map(|r| r.tests).sum();
    let failed: usize = results.iter().map(|r| r.failures.len()).sum();
    let minutes: f64 = results.iter().map(|r| r.minutes).sum();
    eprintln!(
        "stress: {} runs under load, {tests} tests run, {failed} failed, {minutes:.1} min",
        results.len()
    );
    for (number, result) in results.iter().enumerate() {
        for failure in &result.failures {
            eprintln!(
                "stress: run {}: {} {}: {}",
                number + 1,
                failure.binary,
                failure.test,
                failure.why
            );
        }
    }
    ensure!(failed == 0, "{failed} test failures under load");
    Ok(())
}

/// One run of the whole suite, its output kept in `log`.
fn suite(log: &Path) -> Result<Run> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let started = Instant::now();
    // Both streams into one file, in the order written: the test binary's name (stderr)
    // stands before its tests' results (stdout).
    let status = test_suite()
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("cannot run cargo test")?;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let text = std::fs::read_to_string(log)?;
    let (tests, failures) = outcome(&text);
    if !status.success() && failures.is_empty() {
        bail!(
            "cargo test failed without a failing test ({status}): see {}",
            log.display()
        );
    }
    Ok(Run {
        tests,
        failures,
        minutes,
    })
}

/// How many tests ran and which failed, from `cargo test`'s output.
fn outcome(text: &str) -> (usize, Vec<Failure>) {
    let mut tests = 0;
    let mut failures = Vec::new();
    let mut binary = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(running) = line.strip_prefix("Running ") {
            // `Running tests/ebpf.rs (target/debug/deps/ebpf-0123abcd)`
            binary = running
                .split_whitespace()
                .next()
                .unwrap_or(running)
                .to_string();
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        {
            failures.push(Failure {
                binary: binary.clone(),
                test: name.to_string(),
                why: why(text, name),
            });
        } else if let Some(counts) = line.strip_prefix("test result: ") {
            tests += count(counts, "passed") + count(counts, "failed");
        }
    }
    (tests, failures)
}

/// `N word` in `ok. 88 passed; 0 failed; …`.
fn count(counts: &str, word: &str) -> usize {
    counts
        .split(';')
        .find_map(|part| {
            let mut words = part.split_whitespace().rev();
            (words.next() == Some(word)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// The first `panicked at` line (and the message after it) of test `name`'s captured output.
fn why(text: &str, name: &str) -> String {
    let header = format!("---- {name} stdout ----");
    let Some(start) = text.find(&header) else {
        return "no output captured".to_string();
    };
    let mut lines = text[start + header.len()..].lines();
    lines
        .by_ref()
        .find(|l| l.contains("panicked at"))
        .map(|at| {
            let message = lines.next().unwrap_or_default();
            format!("{} {}", at.trim(), message.trim())
        })
        .unwrap_or_else(|| "no panic line".to_string())
}

/// The load: `stress-ng`, asked to stop (it stops its workers) when dropped, and told to stop
/// by the kernel should this process die first. It stays in this process's group, so a
/// Ctrl-C reaches it too.
struct Load(Child);

impl Load {
    fn start() -> Result<Load> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut command = Command::new("stress-ng");
        command
            .args(["--cpu", &cores.to_string(), "--vm", "1"])
            .args(["--vm-bytes", CHURNED_MEMORY, "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: between fork and exec: one system call, async-signal-safe.
        unsafe {
            command.pre_exec(
                || match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                },
            );
        }
        let child = command
            .spawn()
            .context("cannot start stress-ng (cargo xtask setup installs it)")?;
        eprintln!(
            "stress: load started: {cores} CPU hogs and {CHURNED_MEMORY} of memory churned (stress-ng, pid {})",
            child.id()
        );
        Ok(Load(child))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the PID is our unreaped child's.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_with_their_test_binary_and_why() {
        let text = "\
     Running tests/poll.rs (target/debug/deps/poll-0123)

running 2 tests
test a ... ok
test b ... FAILED

failures:

---- b stdout ----

thread 'b' (42) panicked at tests/tests/poll.rs:7:5:
no SIGUSR1
stack backtrace:

test result: FAILED. 1 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 1.00s

     Running tests/rules.rs (target/debug/deps/rules-4567)
test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
";
        let (tests, failures) = outcome(text);
        assert_eq!(tests, 7);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].binary, "tests/poll.rs");
        assert_eq!(failures[0].test, "b");
        assert_eq!(
            failures[0].why,
            "thread 'b' (42) panicked at tests/tests/poll.rs:7:5: no SIGUSR1"
        );
    }
}
