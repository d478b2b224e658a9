//! Which tests a guest runs, the binaries they are in, and the guest's test plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Result, ensure};

use super::guest::{GUEST_CPUS, GUEST_WALL_TIME, run_guest, tail};
use super::kernels::{Kernel, KernelFiles};
use super::report::{Report, read_report};
use crate::{cargo, run_step, shown};

/// The eBPF-facing tests the guests run: (test binary, test name).
pub(super) const TESTS: [(&str, &str); 14] = [
    (LIBRARY_TESTS, "kernel::btf::tests::reads_this_kernel"),
    (
        "sources",
        "kernel::the_monitors_statm_probe_agrees_with_the_page_tables",
    ),
    (
        "sources",
        "kernel::every_program_loads_well_within_the_verifier_budget",
    ),
    (
        "sources",
        "ebpf::a_crossing_is_signalled_and_nothing_else_is",
    ),
    (
        "sources",
        "ebpf::processes_are_discovered_at_exec_fork_and_rename_without_polling",
    ),
    (
        "sources",
        "ebpf::one_event_per_crossing_and_freeing_memory_rearms",
    ),
    (
        "sources",
        "ebpf::a_process_stopping_just_past_its_limit_is_caught",
    ),
    (
        "sources",
        "ebpf::a_process_stopping_just_under_its_limit_is_not_signalled",
    ),
    (
        "sources",
        "ebpf::kernel_signal_is_sent_from_the_kernel_once_per_crossing",
    ),
    (
        "sources",
        "ebpf::nothing_is_left_in_the_kernel_after_exit_or_kill",
    ),
    (
        "actions",
        "profile::in_ebpf_mode_the_profile_names_the_code_that_grew_the_process",
    ),
    (
        "library",
        "allocations::thousands_of_kernel_events_allocate_nothing",
    ),
    (
        "rules",
        "select::a_process_that_becomes_the_rules_user_after_it_started_is_watched",
    ),
    // Last: it enables and disables a trace event, which under TCG can hang a guest whose
    // other vCPU the host is starving; every other result is in by then.
    ("sources", "kernel::rss_stat_reports_a_growing_process"),
];

/// The library's unit tests' binary, whose BTF reading runs against each guest's kernel.
const LIBRARY_TESTS: &str = "memory_monitor";

/// Builds the test binaries the guests run and returns their paths by binary name.
pub(super) fn test_binaries() -> Result<BTreeMap<String, PathBuf>> {
    run_step(cargo().args(["build", "--locked", "--workspace", "--bins"]))?;
    let mut wanted: Vec<&str> = TESTS.iter().map(|(binary, _)| *binary).collect();
    wanted.sort();
    wanted.dedup();
    let mut binaries = built(&["--package", "memory-monitor", "--lib"])?;
    let mut integration = vec!["--package", "memory-monitor-tests"];
    for binary in wanted.iter().filter(|b| **b != LIBRARY_TESTS) {
        integration.extend(["--test", binary]);
    }
    binaries.extend(built(&integration)?);
    for binary in wanted {
        ensure!(
            binaries.contains_key(binary),
            "cargo built no test binary {binary}"
        );
    }
    Ok(binaries)
}

/// `cargo test --no-run ARGS`: the test executables built, by target name.
fn built(args: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let mut command = cargo();
    command
        .args([
            "test",
            "--locked",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(args);
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

/// The guest's test plan: each test alone, between markers the report is read from; the
/// kernel tests with the verifier-statistics library `shim` preloaded.
pub(super) fn plan(
    binaries: &BTreeMap<String, PathBuf>,
    tests: &[(&str, &str)],
    shim: &Path,
) -> String {
    let mut plan = String::from(
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/tmp TMPDIR=/tmp RUST_BACKTRACE=1 MEMORY_MONITOR_VMTEST=1\n\
         cd /tmp\n",
    );
    for (binary, test) in tests {
        let path = binaries[*binary].display();
        let preload = match test.starts_with("kernel::") {
            true => format!("LD_PRELOAD='{}' ", shim.display()),
            false => String::new(),
        };
        plan.push_str(&format!(
            "echo '@@ begin {binary}::{test}'\n\
             {preload}'{path}' --exact '{test}' --include-ignored --test-threads=1 --nocapture 2>&1\n\
             echo \"@@ end {binary}::{test} $?\"\n"
        ));
    }
    plan
}

/// Boots `kernel` with the tests of `plan` and reads its report.
pub(super) fn boot(
    kernel: &Kernel,
    files: &KernelFiles,
    plan: &str,
    tests: &[(&str, &str)],
    out: &Path,
) -> Result<Report> {
    let guest = run_guest(kernel, files, plan, GUEST_CPUS, out, |line| {
        line.strip_prefix("@@ end ").map(str::to_string)
    })?;
    let mut report = read_report(kernel.name, &files.package, &guest.console, tests);
    report.wall = guest.wall;
    if guest.timed_out {
        report.ending = Some(format!(
            "the guest did not end within {:?}; its console's last lines:\n{}",
            GUEST_WALL_TIME,
            tail(&guest.console, 40)
        ));
    }
    Ok(report)
}
