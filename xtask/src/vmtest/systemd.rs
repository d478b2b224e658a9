//! `cargo xtask vmtest --systemd [KERNEL…]`: the tests of the packaged systemd unit, in
//! guests whose PID 1 is this machine's systemd (see [`Init::Systemd`]). They install
//! `packaging/memory-monitor.service` itself, start the monitor with `systemctl` under every
//! hardening setting the unit has, and check that it watches, signals, logs and stops, and that
//! the hardening is in force. No machine the tests otherwise run on needs systemd as PID 1, and
//! none is asked to run a service it does not own: the guest is booted for it and thrown away.

use std::time::Instant;

use anyhow::{Result, ensure};

use super::guest::{GuestPlan, Init};
use super::kernels::{KERNELS, fetch};
use super::report::Report;
use super::run::{Test, boot, build_verifier_stats, built, listed, plan};
use crate::arch::Arch;

/// The test binary and module whose tests need systemd as PID 1: every test of the module
/// runs, so that one added there is run unnamed.
const BINARY: &str = "ship";
const MODULE: &str = "systemd::";

/// What the plan exports for those tests: where it is set, systemd must be PID 1, and a test
/// that finds it is not fails instead of saying it did not run.
const UNDER_SYSTEMD: &str = "MEMORY_MONITOR_SYSTEMD";

/// Boots a systemd guest of each of `kernels` and runs the unit's tests there.
pub fn run(kernels: &[&'static str]) -> Result<()> {
    super::setup()?;
    let started = Instant::now();
    crate::run_step(crate::cargo().args(["build", "--locked", "--workspace", "--bins"]))?;
    let binaries = built(
        Arch::host(),
        &["--package", "memory-monitor-tests", "--test", BINARY],
    )?;
    ensure!(
        binaries.contains_key(BINARY),
        "cargo built no test binary {BINARY}"
    );
    let tests: Vec<Test> = listed(&binaries[BINARY], "--include-ignored")?
        .into_iter()
        .filter(|name| name.starts_with(MODULE))
        .map(|name| Test {
            binary: BINARY.to_string(),
            name,
        })
        .collect();
    ensure!(
        !tests.is_empty(),
        "{BINARY} has no test in {MODULE}: a systemd guest that runs nothing would pass unseen"
    );
    let out = crate::workspace().join("target/vmtest/systemd");
    std::fs::create_dir_all(&out)?;
    // The kernel tests' preload, which these tests do not use; the plan is the matrix's.
    let shim = build_verifier_stats(&out)?;
    // The kernel's sysctls are left as the kernel sets them: on Debian's,
    // kernel.perf_event_paranoid=3 (a patch of theirs under which perf_event_open, the classic
    // tracepoints' attach, needs CAP_SYS_ADMIN), which the unit as shipped must work under.
    let script = format!(
        "export {UNDER_SYSTEMD}=1\n{}",
        plan(&binaries, &tests, Some(&shim))
    );
    let guest = GuestPlan {
        plan: &script,
        init: Init::Systemd,
    };
    let cache = super::cache_dir()?;
    let reports: Vec<Report> = kernels
        .iter()
        .map(|name| {
            let kernel = KERNELS.iter().find(|k| k.name == *name).expect("checked");
            fetch(kernel, Arch::host(), &cache)
                .and_then(|files| boot(kernel, &files, &guest, &tests, &out))
                .unwrap_or_else(|error| Report::failed(kernel.name, format!("{error:#}")))
        })
        .collect();
    super::verdict("vmtest --systemd", &reports, started)
}
