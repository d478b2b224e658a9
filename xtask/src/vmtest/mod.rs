//! `cargo xtask vmtest [--arch arm64] [--spread] [--only PATTERN]… [KERNEL…]`: the eBPF-facing
//! tests, run as root inside qemu guests of Debian's own kernels (5.10, 6.1 and 6.12 by
//! default), one guest per kernel. `--systemd`: the packaged unit's tests, in guests whose PID 1
//! is systemd (see `systemd.rs`).
//!
//! - **`--arch arm64`** boots Debian's arm64 kernels of the same series in aarch64 guests
//!   (`qemu-system-aarch64`, `virt`), running the tests' static aarch64 builds: the tests of
//!   eBPF mode and the kernel tests (`FOREIGN_GUEST_TESTS` in `run.rs`). The host's programs
//!   are x86_64, so such a guest does not move into the host's root: it stays on its initramfs
//!   (an arm64 busybox, fetched as the kernels are) and binds the host's `/etc` and the
//!   workspace in, at their own paths.
//!
//! - **Which tests** is a rule, not a list (see `run.rs`): in the test binaries that drive the
//!   monitor, every test that needs root, and every test of the `kernel` modules; each binary
//!   is asked on the host (`--list`) what the rule picks, a rule that picks nothing fails, and
//!   a module left out of the guests is counted and said on every run. By default every guest
//!   runs all of them; `--spread` (what `cargo xtask test` runs) keeps the kernel tests on every
//!   kernel and deals each other test to one kernel, rotating by day.
//! - **Kernels** come from Debian's registry by package name, through apt: the newest
//!   `linux-image-…-amd64` of each series. Bookworm's are in this machine's own apt sources;
//!   bullseye's come through a private apt configuration (its own sources list, state and
//!   cache under the cache directory) whose sources are this machine's, with only the suite
//!   changed. Packages are cached under `~/.cache/memory-monitor/vmtest/` (outside the work
//!   tree, so clones share them); delete it to fetch the newest again.
//! - **The guest** boots the kernel with a busybox initramfs (Debian's busybox-static) that
//!   loads the kernel's own 9p, virtio-blk and ext4 modules (and their dependencies, from its
//!   `modules.dep`), mounts this machine's root read-only over 9p, mounts proc, sys, tracefs,
//!   bpffs, cgroup2, a tmpfs `/tmp` and a scratch disk of its own on `/var/tmp` there (for the
//!   tests that need a disk: a swap file, reclaimable page cache), brings up loopback, moves it
//!   to `/` and chroots into it, and runs the host-built test binaries, each test alone.
//! - **qemu** runs with TCG (`/dev/kvm` here cannot boot a stock kernel), 2 vCPUs. A test has
//!   a bounded wall time, and each guest one that grows with its tests: a hang is a failure,
//!   shown with the console's last lines. Under TCG, disabling a trace event while another
//!   vCPU is busy can soft-lock the guest, so the guest panics (and so ends) on a soft lockup
//!   instead of hanging until the wall time.
//!
//! It prints, per kernel, each test's result and time, per test binary how many tests the host
//! listed and how many ran and passed in the guest, and each BPF program's verified
//! instruction count. It fails if any test failed, hung, could not run, or ran no test (a run
//! that exits 0 without libtest's `1 passed` is a failure), or a kernel could not be fetched.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};

use crate::arch::Arch;

mod apt;
mod faults;
mod guest;
mod kernels;
mod reaction;
mod report;
mod run;
mod systemd;

use guest::{GuestPlan, Init, run_guest, tail};
use kernels::{KERNELS, fetch};
use report::{Report, print_reports};
pub(crate) use run::parse_list;
use run::{
    Test, boot, build_verifier_stats, guest_tests, plan, rules, spread, test_binaries,
    test_executables,
};

/// What `vmtest` is to run: which kernels, and which of the tests (or, with `--faults`, the
/// page-fault cost at each of these vCPU counts instead; with `--reaction`, breach → signal
/// by size; with `--systemd`, the packaged unit's tests under systemd).
pub struct Selection {
    /// The guests' architecture.
    arch: Arch,
    kernels: Vec<&'static str>,
    /// Only the tests whose name holds one of these (all when empty).
    only: Vec<String>,
    /// Each test on one kernel only, but the kernel tests on all (see [`run::spread`]): what CI
    /// runs, to stay within its time.
    spread: bool,
    faults: Option<Vec<usize>>,
    reaction: bool,
    systemd: bool,
}

/// What `cargo xtask test` runs in an arm64 guest, within CI's time (a guest of another
/// architecture is several times slower under TCG): the kernel's verdict on every program, and
/// eBPF mode's essentials — a crossing signalled, one stopping just past the limit caught, one
/// just under it left alone, discovery without polling, `--kernel-signal`, nothing left in the
/// kernel after an exit — on one kernel. `cargo xtask vmtest --arch arm64` runs all of them on
/// every kernel.
const ARM64_IN_TEST: [&str; 7] = [
    "kernel::every_program_loads_well_within_the_verifier_budget",
    "ebpf::a_crossing_is_signalled_and_nothing_else_is",
    "ebpf::a_process_stopping_just_past_its_limit_is_caught",
    "ebpf::a_process_stopping_just_under_its_limit_is_not_signalled",
    "ebpf::processes_are_discovered_at_exec_fork_and_rename_without_polling",
    "ebpf::kernel_signal_is_sent_from_the_kernel_once_per_crossing",
    "ebpf::nothing_is_left_in_the_kernel_after_exit_or_kill",
];
/// The kernels a guest of another architecture boots unless named: bullseye's arm64 5.10 is
/// left out, as its packages are not in the mirror this project is tested through
/// (`bullseye-security`'s pool answers 404 for them); name it to try.
const FOREIGN_KERNELS: [&str; 2] = ["6.1", "6.12"];

/// The kernel of [`ARM64_IN_TEST`]'s guest.
const ARM64_IN_TEST_KERNEL: &str = "6.12";

/// The arm64 guest `cargo xtask test` runs (see [`ARM64_IN_TEST`]).
pub fn arm64_in_test() -> Result<Selection> {
    let mut args: Vec<OsString> = vec!["--arch".into(), "arm64".into()];
    for test in ARM64_IN_TEST {
        args.extend(["--only".into(), test.into()]);
    }
    args.push(ARM64_IN_TEST_KERNEL.into());
    selection(&args)
}

/// The vCPU counts `--faults` measures at unless `--cpus` says.
const FAULT_CPUS: [usize; 3] = [2, 8, 32];
/// The kernels `--faults` boots unless named: one whose counters are atomics, one whose are
/// per CPU.
const FAULT_KERNELS: [&str; 2] = ["6.1", "6.12"];

/// `vmtest`'s command line: `[--arch ARCH] [--only PATTERN]… [--spread] [KERNEL…]` (this
/// machine's architecture, all kernels, all tests on each by default; `--only` again adds a
/// pattern),
/// `--faults [--cpus N,N…] [KERNEL…]`, `--reaction [KERNEL…]`, or `--systemd [KERNEL…]`.
pub fn selection(args: &[OsString]) -> Result<Selection> {
    let mut kernels = Vec::new();
    let mut only = Vec::new();
    let mut spread = false;
    let mut faults = None;
    let mut reaction = false;
    let mut systemd = false;
    let mut arch = Arch::host();
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if arg == "--arch" {
            arch = Arch::parse(&args.next().context("--arch needs amd64 or arm64")?)?;
            continue;
        }
        if arg == "--only" {
            only.push(
                args.next()
                    .context("--only needs a part of a test's name")?,
            );
            continue;
        }
        if arg == "--spread" {
            spread = true;
            continue;
        }
        if arg == "--faults" {
            faults.get_or_insert(FAULT_CPUS.to_vec());
            continue;
        }
        if arg == "--reaction" {
            reaction = true;
            continue;
        }
        if arg == "--systemd" {
            systemd = true;
            continue;
        }
        if arg == "--cpus" {
            let list = args
                .next()
                .context("--cpus needs vCPU counts, e.g. 2,8,32")?;
            let counts = list
                .split(',')
                .map(|n| n.parse::<usize>().ok().filter(|&n| n > 0))
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("--cpus: {list:?} is not a list of vCPU counts"))?;
            faults = Some(counts);
            continue;
        }
        let kernel = KERNELS.iter().find(|k| k.name == arg).with_context(|| {
            let known: Vec<_> = KERNELS.iter().map(|k| k.name).collect();
            format!("unknown kernel {arg:?}: vmtest knows {}", known.join(", "))
        })?;
        kernels.push(kernel.name);
    }
    let own_runs = usize::from(faults.is_some()) + usize::from(reaction) + usize::from(systemd);
    ensure!(
        own_runs == 0 || (only.is_empty() && !spread),
        "--only and --spread select the matrix's tests; --faults, --reaction and --systemd run their own"
    );
    ensure!(
        own_runs <= 1,
        "--faults, --reaction and --systemd are runs of their own: one at a time"
    );
    ensure!(
        own_runs == 0 || arch.is_host(),
        "--faults, --reaction and --systemd run the host's programs: {} guests only",
        Arch::host().debian()
    );
    if kernels.is_empty() {
        kernels = match (faults.is_some(), arch.is_host()) {
            (true, _) => FAULT_KERNELS.to_vec(),
            (false, true) => KERNELS.iter().map(|k| k.name).collect(),
            (false, false) => FOREIGN_KERNELS.to_vec(),
        };
    }
    Ok(Selection {
        arch,
        kernels,
        only,
        spread,
        faults,
        reaction,
        systemd,
    })
}

/// Installs what the guests need: qemu (for both architectures) and a static busybox.
pub fn setup() -> Result<()> {
    crate::ensure_debian_package("qemu-system-x86_64", "--version", "qemu-system-x86")?;
    crate::ensure_debian_package("qemu-system-aarch64", "--version", "qemu-system-arm")?;
    crate::ensure_installed("busybox-static")
}

/// Runs the matrix as `selection` says (see [`selection`]), building the tests first.
pub fn run(selection: &Selection) -> Result<()> {
    visible_in_guests(&crate::workspace())?;
    if let Some(cpus) = &selection.faults {
        return faults::run(&selection.kernels, cpus);
    }
    if selection.reaction {
        return reaction::run(&selection.kernels);
    }
    if selection.systemd {
        return systemd::run(&selection.kernels);
    }
    let started = Instant::now();
    setup()?;
    let arch = selection.arch;
    let rules = rules(arch);
    let binaries = test_binaries(arch, rules)?;
    // Which tests there are is asked of this machine's build of the same binaries.
    let listing = match arch.is_host() {
        true => binaries.clone(),
        false => test_executables(Arch::host(), rules)?,
    };
    let cache = cache_dir()?;
    let out = crate::workspace().join("target/vmtest");
    std::fs::create_dir_all(&out)?;
    let shim = match arch.is_host() {
        true => Some(build_verifier_stats(&out)?),
        false => None,
    };
    let mut reports = Vec::new();
    let tests: Vec<Test> = guest_tests(&listing, arch)?
        .into_iter()
        .filter(|test| {
            let id = test.id();
            selection.only.is_empty() || selection.only.iter().any(|only| id.contains(only))
        })
        .collect();
    ensure!(!tests.is_empty(), "no test matches --only");
    let shares = match selection.spread {
        true => {
            let day = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs() / 86_400);
            let rotation = (day % selection.kernels.len() as u64) as usize;
            eprintln!(
                "vmtest: --spread (rotation {rotation}): the kernel tests on every kernel, each other test on one"
            );
            spread(&tests, selection.kernels.len(), rotation)
        }
        false => vec![tests; selection.kernels.len()],
    };
    for (name, tests) in selection.kernels.iter().zip(&shares) {
        let kernel = KERNELS.iter().find(|k| k.name == *name).expect("checked");
        let guest = GuestPlan {
            plan: &plan(&binaries, tests, shim.as_deref()),
            init: match arch.is_host() {
                true => Init::Shell,
                false => Init::Initramfs,
            },
        };
        let report = fetch(kernel, arch, &cache)
            .and_then(|files| boot(kernel, &files, &guest, tests, &out))
            .unwrap_or_else(|error| Report::failed(kernel.name, format!("{error:#}")));
        reports.push(report);
    }
    verdict("vmtest", &reports, started)
}

/// Prints `reports` and the time since `started`; fails if a guest did not pass.
fn verdict(run: &str, reports: &[Report], started: Instant) -> Result<()> {
    print_reports(reports);
    eprintln!(
        "{run}: {} kernel(s) in {:.0?}",
        reports.len(),
        started.elapsed()
    );
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.kernel)
        .collect();
    ensure!(failed.is_empty(), "{run} failed on {}", failed.join(", "));
    Ok(())
}

/// The longest a measurement's guest may run (each takes a few minutes).
const MEASURE_WALL_TIME: Duration = Duration::from_secs(15 * 60);

/// A measurement in guests (`--faults`, `--reaction`): `plan` run in a guest of each of
/// `kernels`, once per vCPU count in `cpus`, the console's lines that start with `marker`
/// shown as they come, and each guest's console read into a result by `read` (kernel, vCPUs,
/// console).
fn measure<T>(
    kernels: &[&'static str],
    cpus: &[usize],
    plan: &str,
    marker: &str,
    read: impl Fn(&'static str, usize, &str) -> Result<T>,
) -> Result<Vec<T>> {
    let cache = cache_dir()?;
    let out = crate::workspace().join("target/vmtest");
    std::fs::create_dir_all(&out)?;
    let mut results = Vec::new();
    for name in kernels {
        let kernel = KERNELS.iter().find(|k| k.name == *name).expect("checked");
        let files = fetch(kernel, Arch::host(), &cache)?;
        for &count in cpus {
            let guest = run_guest(
                kernel,
                &files,
                plan,
                count,
                &out,
                MEASURE_WALL_TIME,
                |line| line.strip_prefix(marker).map(str::to_string),
            )?;
            ensure!(
                !guest.timed_out,
                "{} with {count} vCPUs did not end within its wall time:\n{}",
                kernel.name,
                tail(&guest.console, 30)
            );
            results.push(read(kernel.name, count, &guest.console)?);
        }
    }
    Ok(results)
}

/// Where the guests mount file systems of their own over the host's root (a tmpfs, the
/// scratch disk), hiding what the host has there.
const GUEST_OWN_DIRS: [&str; 2] = ["/tmp", "/var/tmp"];

/// The guests run the host's binaries from its root, shared read-only, with file systems of
/// their own on [`GUEST_OWN_DIRS`]: a workspace under one is hidden there, and every test would
/// fail with "not found". Said at once instead.
fn visible_in_guests(workspace: &Path) -> Result<()> {
    for dir in GUEST_OWN_DIRS {
        ensure!(
            !workspace.starts_with(dir),
            "vmtest cannot run from {}: the guests mount a {dir} of their own, which hides it; clone the project outside {dir}",
            workspace.display()
        );
    }
    Ok(())
}

/// Where fetched kernels are kept: `$XDG_CACHE_HOME` or `~/.cache`, `memory-monitor/vmtest`.
fn cache_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    let dir = base.join("memory-monitor/vmtest");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_guests_run_the_matrix_s_tests_only_and_test_runs_its_essentials_on_one_kernel() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let arm64 = selection(&args(&["--arch", "arm64"])).unwrap();
        assert_eq!(arm64.arch, Arch::Aarch64);
        assert_eq!(arm64.kernels, FOREIGN_KERNELS);
        let Err(error) = selection(&args(&["--arch", "arm64", "--systemd"])) else {
            panic!("--systemd is taken for arm64");
        };
        assert!(error.to_string().contains("amd64 guests only"), "{error}");
        assert!(selection(&args(&["--arch", "riscv64"])).is_err());
        let in_test = arm64_in_test().unwrap();
        assert_eq!(in_test.arch, Arch::Aarch64);
        assert_eq!(in_test.kernels, [ARM64_IN_TEST_KERNEL]);
        assert_eq!(in_test.only, ARM64_IN_TEST);
        assert!(!in_test.spread);
    }

    #[test]
    fn a_workspace_under_a_guest_s_own_dir_is_refused_as_the_guests_cannot_see_it() {
        let error = visible_in_guests(Path::new("/tmp/clone")).unwrap_err();
        assert!(error.to_string().contains("outside /tmp"), "{error}");
        let error = visible_in_guests(Path::new("/var/tmp/clone")).unwrap_err();
        assert!(error.to_string().contains("outside /var/tmp"), "{error}");
        assert!(visible_in_guests(Path::new("/work/clone")).is_ok());
        assert!(visible_in_guests(Path::new("/tmpfs-ws/clone")).is_ok());
    }
}
