//! Which tests a guest runs, the binaries they are in, and the guest's test plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, ensure};

use super::guest::{GUEST_CPUS, GuestPlan, TEST_WALL_TIME, guest_wall_time, run_guest_with, tail};
use super::kernels::{Kernel, KernelFiles};
use super::report::{Report, read_report};
use crate::arch::Arch;
use crate::{cargo, run_step, shown};

/// A test a guest runs: its binary (cargo's target name) and its path in that binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Test {
    pub(super) binary: String,
    pub(super) name: String,
}

impl Test {
    /// `binary::path`, as the plan's markers and the report name it.
    pub(super) fn id(&self) -> String {
        format!("{}::{}", self.binary, self.name)
    }
}

/// Which of a test binary's tests a rule picks.
#[derive(Debug, Clone, Copy)]
pub(super) enum Picks {
    /// Every test that needs root (`#[ignore = "needs root"]`): the kernel side loads only as
    /// root, so every test of eBPF mode is one of them.
    NeedsRoot,
    /// Every test whose path starts with this module path, root or not.
    Module(&'static str),
}

/// Which tests of which test binary a guest runs.
pub(super) type Rules = [(&'static str, Picks)];

/// What the guests run: a rule, not a list of names, so that a test added to these binaries or
/// modules runs in every guest unnamed, and a renamed one cannot drop out. Each rule is asked
/// of its binary on the host (`--list`); one that picks no test fails the run.
const GUEST_TESTS: [(&str, Picks); 6] = [
    (LIBRARY_TESTS, Picks::Module("kernel::")),
    ("sources", Picks::Module("kernel::")),
    ("sources", Picks::NeedsRoot),
    ("actions", Picks::NeedsRoot),
    ("rules", Picks::NeedsRoot),
    ("library", Picks::NeedsRoot),
];

/// What the guests of another architecture run: the eBPF mode's tests and the kernel tests of
/// the integration tests, in its static binaries. Those guests have busybox's tools, not the
/// host's (a guest cannot run them), which the eBPF tests need no more of; the library's unit
/// tests are left out, as their build compiles jemalloc's C for the target, which Debian's
/// cross tool chain does not build for musl.
const FOREIGN_GUEST_TESTS: [(&str, Picks); 2] = [
    ("sources", Picks::Module("kernel::")),
    ("sources", Picks::Module("ebpf::")),
];

/// What the guests of `arch` run.
pub(super) fn rules(arch: Arch) -> &'static Rules {
    match arch.is_host() {
        true => &GUEST_TESTS,
        false => &FOREIGN_GUEST_TESTS,
    }
}

/// Tests the rules pick that a guest leaves out: binary, the start of their path, and why.
type LeftOut = [(&'static str, &'static str, &'static str)];

/// Modules no guest runs, though the rules pick them, and why: each is left out by the whole
/// module, counted and said on every run, so that what is not run is never silent.
const NOT_IN_GUESTS: [(&str, &str, &str); 1] = [(
    "sources",
    "churn::",
    "processes start at about 8 a second under TCG (256 in 30 s, measured on 6.12): the \
     churn needs 3,000 in 30 s and the exit test 100,000 exits, hours in a guest",
)];

/// What [`FOREIGN_GUEST_TESTS`] pick that those guests leave out, and why, said likewise.
const NOT_IN_FOREIGN_GUESTS: [(&str, &str, &str); 1] = [(
    "sources",
    "ebpf::unprivileged_falls_back_to_polling_and_still_signals",
    "it runs the monitor as nobody with util-linux's setpriv, which busybox's cannot do (and \
     the host's is x86_64); what it tests is poll mode's fallback, not the kernel side",
)];

/// What the guests of `arch` leave out of what [`rules`] picks.
fn left_out(arch: Arch) -> &'static LeftOut {
    match arch.is_host() {
        true => &NOT_IN_GUESTS,
        false => &NOT_IN_FOREIGN_GUESTS,
    }
}

/// Run last: it enables and disables a trace event, which under TCG can hang a guest whose
/// other vCPU the host is starving; every other result is in by then.
const LAST: &str = "kernel::rss_stat_reports_a_growing_process";

/// The tests `--spread` still runs on every kernel: those of the `kernel` modules, which read
/// each kernel's own layouts (BTF, tracefs, the verifier, `rss_stat`).
const ON_EVERY_KERNEL: &str = "kernel::";

/// The tests each of `kernels` guests runs under `--spread`: every [`ON_EVERY_KERNEL`] test on
/// each, and each other test on one kernel, dealt in turn starting at kernel `rotation`, so
/// that one run covers every test on some kernel and the rotation (by day) moves each test to
/// the next kernel the next day. Plan order is kept ([`LAST`] last).
pub(super) fn spread(tests: &[Test], kernels: usize, rotation: usize) -> Vec<Vec<Test>> {
    let mut shares = vec![Vec::new(); kernels];
    let mut dealt = rotation;
    for test in tests {
        if test.name.starts_with(ON_EVERY_KERNEL) {
            shares.iter_mut().for_each(|share| share.push(test.clone()));
        } else {
            shares[dealt % kernels].push(test.clone());
            dealt += 1;
        }
    }
    shares
}

/// The library's unit tests' binary, whose kernel-facing module (BTF, tracefs, the load plan)
/// runs against each guest's kernel.
const LIBRARY_TESTS: &str = "memory_monitor";

/// Builds for `arch` the programs the tests run and the test binaries `rules` name; returns
/// the test binaries' paths by name.
pub(super) fn test_binaries(arch: Arch, rules: &Rules) -> Result<BTreeMap<String, PathBuf>> {
    let mut build = cargo();
    build.args(["build", "--locked"]);
    match arch.is_host() {
        true => build.args(["--workspace", "--bins"]),
        // The monitor and the tests' own programs, all the tests of eBPF mode run.
        false => arch.cross(&mut build).args([
            "--target",
            arch.musl(),
            "--package",
            "memory-monitor",
            "--package",
            "memory-monitor-tests",
            "--bins",
        ]),
    };
    run_step(&mut build)?;
    test_executables(arch, rules)
}

/// Builds for `arch` the test binaries `rules` name, and returns their paths by name.
pub(super) fn test_executables(arch: Arch, rules: &Rules) -> Result<BTreeMap<String, PathBuf>> {
    let mut wanted: Vec<&str> = rules.iter().map(|(binary, _)| *binary).collect();
    wanted.sort();
    wanted.dedup();
    let mut binaries = BTreeMap::new();
    if wanted.contains(&LIBRARY_TESTS) {
        binaries.extend(built(arch, &["--package", "memory-monitor", "--lib"])?);
    }
    let mut integration = vec!["--package", "memory-monitor-tests"];
    for binary in wanted.iter().filter(|b| **b != LIBRARY_TESTS) {
        integration.extend(["--test", binary]);
    }
    binaries.extend(built(arch, &integration)?);
    for binary in wanted {
        ensure!(
            binaries.contains_key(binary),
            "cargo built no test binary {binary}"
        );
    }
    Ok(binaries)
}

/// The tests the [`rules`] of `arch`'s guests pick, as each binary lists them here (this
/// machine's build of it, for a guest of another architecture: the same source), less those
/// they leave out ([`left_out`]), in rule order with [`LAST`] last; a rule that picks none is
/// an error.
pub(super) fn guest_tests(binaries: &BTreeMap<String, PathBuf>, arch: Arch) -> Result<Vec<Test>> {
    let mut tests: Vec<Test> = Vec::new();
    let left_out_here = left_out(arch);
    for &(binary, picks) in rules(arch) {
        let path = &binaries[binary];
        let listed = match picks {
            Picks::NeedsRoot => listed(path, "--ignored")?,
            Picks::Module(module) => listed(path, "--include-ignored")?
                .into_iter()
                .filter(|name| name.starts_with(module))
                .collect(),
        };
        ensure!(
            !listed.is_empty(),
            "vmtest's rule {picks:?} picks no test of {binary}: a rule that runs nothing would pass unseen"
        );
        let (left_out, listed): (Vec<String>, Vec<String>) = listed.into_iter().partition(|name| {
            left_out_here
                .iter()
                .any(|(b, module, _)| *b == binary && name.starts_with(module))
        });
        for (b, module, why) in left_out_here.iter().filter(|(b, ..)| *b == binary) {
            let count = left_out.iter().filter(|n| n.starts_with(module)).count();
            if count > 0 {
                eprintln!(
                    "vmtest: leaving out {count} tests of {b}::{module} in the guests: {why}"
                );
            }
        }
        for name in listed {
            let test = Test {
                binary: binary.to_string(),
                name,
            };
            if !tests.contains(&test) {
                tests.push(test);
            }
        }
    }
    tests.sort_by_key(|test| test.name == LAST);
    Ok(tests)
}

/// The names `binary --list ARG` prints (`path::to::test: test`).
pub(super) fn listed(binary: &Path, arg: &str) -> Result<Vec<String>> {
    let output = Command::new(binary)
        .args(["--list", "--format", "terse", arg])
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    ensure!(
        output.status.success(),
        "{} --list failed: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(parse_list(&String::from_utf8_lossy(&output.stdout)))
}

/// The tests of a libtest `--list` output (benchmarks and summary lines left out).
pub(crate) fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// `cargo test --no-run ARGS` for `arch`: the test executables built, by target name.
pub(super) fn built(arch: Arch, args: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let mut command = cargo();
    command.args([
        "test",
        "--locked",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    if !arch.is_host() {
        arch.cross(&mut command).args(["--target", arch.musl()]);
    }
    command.args(args);
    eprintln!("==> {}", shown(&command));
    let output = command.stderr(Stdio::inherit()).output()?;
    ensure!(output.status.success(), "building the test binaries failed");
    let mut binaries = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(name), Some(executable)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            binaries.insert(name.to_string(), PathBuf::from(executable));
        }
    }
    Ok(binaries)
}

/// Builds the verifier-statistics library (`xtask/shim/verifier_stats.rs`) that the kernel
/// tests' monitors preload, for kernels whose program info has no `verified_insns`.
pub(super) fn build_verifier_stats(out: &Path) -> Result<PathBuf> {
    let source = crate::workspace().join("xtask/shim/verifier_stats.rs");
    let library = out.join("libmm_verifier_stats.so");
    run_step(
        Command::new("rustc")
            .args(["--edition", "2024", "--crate-type", "cdylib", "-O", "-o"])
            .arg(&library)
            .arg(&source),
    )?;
    Ok(library)
}

/// The guest's test plan: each test alone, between markers the report is read from (the end
/// marker with the exit status and the milliseconds taken, to the uptime's hundredth of a
/// second, which busybox's `date` cannot give finer); the kernel tests with the
/// verifier-statistics library `shim` preloaded, where there is one (the host's build: the
/// tests of another architecture are static). A test that hangs is stopped after
/// [`TEST_WALL_TIME`], so the others still run.
pub(super) fn plan(
    binaries: &BTreeMap<String, PathBuf>,
    tests: &[Test],
    shim: Option<&Path>,
) -> String {
    let mut plan = String::from(
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/tmp TMPDIR=/tmp RUST_BACKTRACE=1 MEMORY_MONITOR_VMTEST=1\n\
         cd /tmp\n\
         millis() { read -r up rest < /proc/uptime; echo $(( ${up%.*} * 1000 + 1${up#*.} * 10 - 1000 )); }\n",
    );
    let limit = TEST_WALL_TIME.as_secs();
    for test in tests {
        let (id, name) = (test.id(), &test.name);
        let path = binaries[&test.binary].display();
        let preload = match (name.starts_with("kernel::"), shim) {
            (true, Some(shim)) => format!("LD_PRELOAD='{}' ", shim.display()),
            _ => String::new(),
        };
        plan.push_str(&format!(
            "echo '@@ begin {id}'\n\
             started=$(millis)\n\
             {preload}timeout -k 10 {limit} '{path}' --exact '{name}' --include-ignored --test-threads=1 --nocapture 2>&1\n\
             status=$?\n\
             echo \"@@ end {id} $status $(( $(millis) - started ))\"\n"
        ));
    }
    plan
}

/// Boots `kernel` with the tests of `guest`'s plan and reads its report.
pub(super) fn boot(
    kernel: &Kernel,
    files: &KernelFiles,
    guest: &GuestPlan,
    tests: &[Test],
    out: &Path,
) -> Result<Report> {
    let wall = guest_wall_time(tests.len());
    let guest = run_guest_with(kernel, files, guest, GUEST_CPUS, out, wall, |line| {
        line.strip_prefix("@@ end ").map(str::to_string)
    })?;
    let mut report = read_report(kernel.name, &files.package, &guest.console, tests);
    report.wall = guest.wall;
    if guest.timed_out {
        report.ending = Some(format!(
            "the guest did not end within {:?}; its console's last lines:\n{}",
            wall,
            tail(&guest.console, 40)
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_runs_the_kernel_tests_everywhere_and_every_other_test_once() {
        let test = |binary: &str, name: &str| Test {
            binary: binary.to_string(),
            name: name.to_string(),
        };
        let tests = [
            test(LIBRARY_TESTS, "kernel::btf::tests::reads_this_kernel"),
            test("sources", "ebpf::a"),
            test("sources", "ebpf::b"),
            test("rules", "select::c"),
            test("actions", "profile::d"),
            test("sources", LAST),
        ];
        let shares = spread(&tests, 3, 1);
        for share in &shares {
            assert_eq!(share[0], tests[0]);
            assert_eq!(share.last(), Some(&tests[5]));
        }
        assert_eq!(shares[1][1], tests[1]);
        assert_eq!(shares[2][1], tests[2]);
        assert_eq!(shares[0][1], tests[3]);
        assert_eq!(shares[1][2], tests[4]);
        let mut others: Vec<&Test> = shares
            .iter()
            .flatten()
            .filter(|t| !t.name.starts_with(ON_EVERY_KERNEL))
            .collect();
        others.sort_by_key(|t| t.id());
        assert_eq!(others, [&tests[4], &tests[3], &tests[1], &tests[2]]);
    }

    #[test]
    fn the_list_is_read_for_tests_only() {
        let text = "kernel::btf::tests::reads_this_kernel: test\nbench_it: bench\n\n2 tests, 1 benchmark\n";
        assert_eq!(parse_list(text), ["kernel::btf::tests::reads_this_kernel"]);
    }
}
