//! Project automation, run as `cargo xtask <command>`:
//!
//! - `setup`: install what building the BPF programs needs (nightly `rust-src`, `bpf-linker`)
//!   and what the tests use besides the project's own programs (Go's `pprof` to read profiles,
//!   Prometheus's promtool to check the metrics, moto's S3 server). Idempotent, and quick once done.
//! - `run -- <args>`: set up, build the monitor (the dev profile, the build the tests use too)
//!   and run it with `<args>`.
//! - `test`: set up, check formatting and lints, build (the static release binary, its .deb
//!   and image too), and run every test: on this kernel, and in the vmtest matrix.
//! - `test --stress N`: set up, build, and run the whole suite N times under CPU and memory
//!   load (see `stress.rs`); not part of `test`.
//! - `bench [--quick] [--step SIZE] [--pause DURATION] [--monitor PATH]`: measure the static
//!   release binary, or another (see `bench.rs`); not a test.
//! - `fuzz [--seconds N]`: fuzz the parsers of untrusted input (see `fuzz.rs`); not a test.
//! - `vmtest [--arch arm64] [--only TEST] [KERNEL…]`: the eBPF-facing tests in qemu guests of
//!   Debian's kernels (see `vmtest.rs`), x86_64 or aarch64; `test` runs them too. `vmtest --faults [--cpus 2,8,32]`: the
//!   page-fault cost of each attach type's empty program as the guest's vCPUs grow;
//!   `vmtest --reaction`: breach → signal at 100 MiB and 1 GiB in each guest;
//!   `vmtest --systemd`: the packaged unit's tests in guests whose PID 1 is systemd (`test`
//!   runs it on 6.1).
//! - `dist`: the static release binaries (x86_64 and aarch64), the man page, shell
//!   completions, the service files and the .debs (amd64 and arm64), in `target/dist/` (see
//!   `dist.rs`).
//! - `image`: `dist`, then the container image for both (an OCI index; see `image.rs`).

mod arch;
mod bench;
mod dist;
mod fuzz;
mod image;
mod stress;
mod vmtest;

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};

/// The toolchain that builds the BPF crate (`-Z build-std` needs nightly): `nightly`, or the
/// one `MEMORY_MONITOR_NIGHTLY` names (`nightly-2026-05-20`: a pinned, reproducible build, as
/// the container image's). memory-monitor's build script reads the same variable.
fn nightly() -> String {
    std::env::var("MEMORY_MONITOR_NIGHTLY").unwrap_or_else(|_| "nightly".to_string())
}
/// The bpf-linker release installed by `setup`.
const BPF_LINKER_VERSION: &str = "0.13.0";

fn main() -> std::process::ExitCode {
    match xtask() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn xtask() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let command = args
        .next()
        .and_then(|c| c.into_string().ok())
        .unwrap_or_default();
    let rest: Vec<OsString> = args.skip_while(|a| a == "--").collect();
    match command.as_str() {
        "setup" => setup(),
        "run" => run(&rest),
        "test" => match rest.as_slice() {
            [] => test(),
            [flag, value] if flag == "--stress" => {
                let runs = stress::runs(value)?;
                setup()?;
                stress::run(runs)
            }
            _ => bail!("usage: cargo xtask test [--stress N]"),
        },
        "dist" => {
            setup_dist()?;
            dist::run().map(drop)
        }
        "image" => {
            setup_dist()?;
            ensure_podman()?;
            dist::run()?;
            image::build().map(drop)
        }
        "vmtest" => {
            let selection = vmtest::selection(&rest)?;
            setup()?;
            vmtest::run(&selection)
        }
        "fuzz" => {
            let seconds = fuzz::seconds(&rest)?;
            setup_build()?;
            fuzz::run(seconds)
        }
        "bench" => {
            let options = bench::options(&rest)?;
            setup_dist()?;
            bench::run(&options)
        }
        _ => bail!(
            "usage: cargo xtask <setup | run -- <monitor args> | test [--stress N] | vmtest [--arch arm64] [--only TEST | --faults [--cpus N,N…] | --reaction | --systemd] [KERNEL…] | bench | dist | image | fuzz>\n\
             \n  setup   install what the builds and the tests need (idempotent)\
             \n  run     build the monitor and run it, e.g. cargo xtask run -- -m 500 my-app\
             \n  test    setup, fmt, clippy, build, and every test, on this kernel and in the vmtest matrix; --stress N: the suite N times under load\
             \n  vmtest  the eBPF tests in qemu guests of Debian's kernels 5.10, 6.1, 6.12 (or those named; --only: tests whose name holds TEST, or any TEST when given again; --faults: what attaching costs page faults at 2, 8 and 32 vCPUs, on 6.1 and 6.12 unless named; --reaction: breach → signal at 100 MiB and 1 GiB; --systemd: the packaged unit run by systemd as PID 1; --arch arm64: the eBPF tests in aarch64 guests of Debian's arm64 kernels)\
             \n  bench   measure latency, footprint and overhead (root; --quick: under 5 minutes)\
             \n  dist    static release binaries (x86_64, aarch64), man page, completions, service files and .debs (amd64, arm64) in target/dist\
             \n  image   dist, then the container image for amd64 and arm64 (Podman, from scratch; one OCI index)\
             \n  fuzz    fuzz the parsers of untrusted input, --seconds N each (default 60; not a test)"
        ),
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// A cargo command in the workspace, with cargo's bin directory (where `setup` installs
/// bpf-linker) on PATH.
fn cargo() -> Command {
    let mut command = Command::new("cargo");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(cargo_home().join("bin")).chain(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(paths) {
        command.env("PATH", joined);
    }
    command.current_dir(workspace());
    command
}

/// Whether xtask runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `cargo test` of the whole workspace, every test run whatever fails. As root, the tests that
/// need root too (they are `#[ignore = "needs root"]`, so that a run without root shows them
/// as ignored, never as passed).
fn test_suite() -> Command {
    let mut command = cargo();
    command.args(["test", "--locked", "--workspace", "--no-fail-fast"]);
    if is_root() {
        command.args(["--", "--include-ignored"]);
    }
    command
}

/// How many of the workspace's tests need root (`#[ignore = "needs root"]`): what a run
/// without root leaves out.
fn root_only_tests() -> Result<usize> {
    let mut command = cargo();
    command.args([
        "test",
        "--locked",
        "--workspace",
        "--",
        "--list",
        "--ignored",
        "--format",
        "terse",
    ]);
    eprintln!("==> {}", shown(&command));
    let output = command.stderr(Stdio::inherit()).output()?;
    ensure!(
        output.status.success(),
        "listing the tests that need root failed"
    );
    Ok(vmtest::parse_list(&String::from_utf8_lossy(&output.stdout)).len())
}

/// What a run without root says, before and after the suite, so that a green run is not read
/// as the whole suite.
fn without_root(count: usize) -> String {
    format!(
        "\n!!! NOT ROOT: {count} tests that need root were left out on this machine (eBPF mode, \
         signals, cgroups, namespaces): they show as ignored, not passed. Only the kernel matrix \
         (vmtest, root inside its guests) runs the eBPF ones. Run `sudo cargo xtask test` for \
         the whole suite; CI does (.ci/run refuses to run without root).\n"
    )
}

/// Runs `command`, echoing it first; fails if it fails.
fn run_step(command: &mut Command) -> Result<()> {
    eprintln!("==> {}", shown(command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", shown(command)))?;
    ensure!(status.success(), "{} failed ({status})", shown(command));
    Ok(())
}

/// Runs `command` quietly and returns its stdout, or None if it cannot run or fails.
fn output_of(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn shown(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Everything: what the builds need and what the tests use.
fn setup() -> Result<()> {
    setup_dist()?;
    // The profile tests read the monitor's profiles with an independent reader, `go tool
    // pprof`; the service tests check the units with `systemd-analyze verify`.
    ensure_debian_package("go", "version", "golang-go")?;
    ensure_debian_package("systemd-analyze", "--version", "systemd")?;
    // `test --stress` loads the machine with it.
    ensure_debian_package("stress-ng", "--version", "stress-ng")?;
    ensure_promtool()?;
    ensure_moto_server()?;
    ensure_podman()?;
    ensure_kubernetes_validate()?;
    // vmtest's guests: qemu, and a static busybox for their initramfs.
    vmtest::setup()
}

/// What building the monitor needs (for `run`, `bench`: no test tools, no root).
fn setup_build() -> Result<()> {
    ensure_nightly_components()?;
    ensure_bpf_linker()
}

/// What `dist` needs besides: the static targets' standard libraries, the aarch64
/// cross-compiler, and lintian, which checks the .debs.
fn setup_dist() -> Result<()> {
    setup_build()?;
    for arch in arch::Arch::ALL {
        ensure_musl_target(arch.musl())?;
    }
    // The release build's C dependencies (aws-lc-sys, under object_store's TLS) are compiled
    // for musl with Debian's musl-gcc wrapper on x86_64, and with its GNU cross-compiler (which
    // links the aarch64 binary too) for aarch64: see `arch.rs`.
    ensure_debian_package("x86_64-linux-musl-gcc", "--version", "musl-tools")?;
    ensure_debian_package(
        "aarch64-linux-gnu-gcc",
        "--version",
        "gcc-aarch64-linux-gnu",
    )?;
    // The C headers the aarch64 build compiles against (only a recommendation of the
    // compiler's package).
    ensure_installed("libc6-dev-arm64-cross")?;
    ensure_debian_package("lintian", "--version", "lintian")
}

/// Installs Debian's `package` unless dpkg has it installed: for packages with no command to
/// try.
fn ensure_installed(package: &str) -> Result<()> {
    let status = output_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]));
    if status.is_some_and(|status| status.ends_with(" installed")) {
        return Ok(());
    }
    apt_get(&["install", "-y", "--no-install-recommends", package], None)
}

/// A musl target's standard library, for a static binary.
fn ensure_musl_target(target: &str) -> Result<()> {
    let libdir =
        output_of(Command::new("rustc").args(["--print", "target-libdir", "--target", target]));
    if libdir.is_some_and(|dir| Path::new(&dir).join("self-contained").is_dir()) {
        return Ok(());
    }
    run_step(Command::new("rustup").args(["target", "add", target]))
}

/// Podman builds and runs the image (Debian's, with Debian's runc: see `xtask/containers.conf`).
fn ensure_podman() -> Result<()> {
    ensure_debian_package("podman", "--version", "podman")?;
    ensure_debian_package("runc", "--version", "runc")
}

/// The deploy test checks every manifest against the Kubernetes API's schemas with
/// kubernetes-validate (PyPI), which carries them.
fn ensure_kubernetes_validate() -> Result<()> {
    if output_of(Command::new("kubernetes-validate").arg("--version")).is_some() {
        return Ok(());
    }
    run_step(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "kubernetes-validate",
    ]))
}

/// Installs Debian's `package` unless `command argument` already runs.
fn ensure_debian_package(command: &str, argument: &str, package: &str) -> Result<()> {
    if output_of(Command::new(command).arg(argument)).is_some() {
        return Ok(());
    }
    apt_get(&["install", "-y", "--no-install-recommends", package], None)
}

/// The metrics test checks the exposition with Prometheus's own checker, `promtool`, taken
/// out of Debian's prometheus package: unpacked, not installed, so no Prometheus server is
/// set up or started.
fn ensure_promtool() -> Result<()> {
    if output_of(Command::new("promtool").arg("--version")).is_some() {
        return Ok(());
    }
    let work = std::env::temp_dir().join("memory-monitor-promtool");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    apt_get(&["download", "prometheus"], Some(&work))?;
    let package = std::fs::read_dir(&work)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no prometheus .deb")?;
    let unpacked = work.join("unpacked");
    run_step(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&package)
            .arg(&unpacked),
    )?;
    let target = Path::new("/usr/local/bin/promtool");
    std::fs::copy(unpacked.join("usr/bin/promtool"), target)
        .with_context(|| format!("installing {}", target.display()))?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// `apt-get ARGS` (in `dir`), reading the package lists first when a fresh machine has none.
fn apt_get(args: &[&str], dir: Option<&Path>) -> Result<()> {
    let command = || {
        let mut command = Command::new("apt-get");
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command
    };
    if run_step(&mut command()).is_err() {
        run_step(Command::new("apt-get").args(["update"]))?;
        run_step(&mut command())?;
    }
    Ok(())
}

/// The S3 writer's test writes to a real S3-compatible server on loopback: moto's, from PyPI.
fn ensure_moto_server() -> Result<()> {
    let has_moto = Command::new("python3")
        .args(["-c", "import moto.server, flask, flask_cors"])
        .output()
        .is_ok_and(|output| output.status.success());
    if has_moto {
        return Ok(());
    }
    run_step(Command::new("python3").args(["-m", "pip", "install", "--quiet", "moto[server]"]))
}

/// `-Z build-std=core` builds `core` for the BPF target from the nightly toolchain's sources;
/// clippy lints the BPF programs on their own target.
fn ensure_nightly_components() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    let has_sources = sysroot.join("lib/rustlib/src/rust/library/core").is_dir();
    let has_clippy = sysroot.join("bin/cargo-clippy").is_file();
    if has_sources && has_clippy {
        return Ok(());
    }
    run_step(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "clippy",
        "--toolchain",
        &nightly(),
    ]))
}

/// Cargo from the nightly toolchain (for the BPF target), with cargo's own overrides cleared
/// so the outer stable cargo's compiler is not used.
fn nightly_cargo() -> Command {
    let mut command = cargo();
    command
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTDOC");
    command
        .env("RUSTUP_TOOLCHAIN", nightly())
        .env_remove("CARGO");
    command
}

fn nightly_sysroot() -> Result<PathBuf> {
    if let Some(sysroot) =
        output_of(Command::new("rustc").args([&format!("+{}", nightly()), "--print", "sysroot"]))
    {
        return Ok(PathBuf::from(sysroot));
    }
    run_step(Command::new("rustup").args([
        "toolchain",
        "install",
        &nightly(),
        "--profile",
        "minimal",
    ]))?;
    output_of(Command::new("rustc").args([&format!("+{}", nightly()), "--print", "sysroot"]))
        .map(PathBuf::from)
        .context("the nightly toolchain is installed but `rustc +nightly` does not run")
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// bpf-linker links the BPF object with the same LLVM that nightly rustc uses. crates.io's
/// build wants a system LLVM, so it is built against the nightly toolchain's own `libLLVM`,
/// through a prefix of links that stays in place (the binary keeps it as its rpath).
fn ensure_bpf_linker() -> Result<()> {
    let installed = cargo_home().join("bin/bpf-linker");
    if output_of(Command::new(&installed).arg("--version")).is_some() {
        return Ok(());
    }
    let sysroot = nightly_sysroot()?;
    let version = output_of(Command::new("rustc").args([
        &format!("+{}", nightly()),
        "--version",
        "--verbose",
    ]))
    .context("cannot ask nightly rustc for its version")?;
    let llvm_major = version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("nightly rustc does not say which LLVM it uses")?;
    let library = std::fs::read_dir(sysroot.join("lib"))
        .context("cannot list the nightly toolchain's lib directory")?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", sysroot.join("lib").display()))?;
    let library_name = library.file_name().expect("a file").to_owned();
    let prefix = cargo_home().join("bpf-linker-llvm").join(&library_name);
    let lib64 = prefix.join("lib64");
    std::fs::create_dir_all(&lib64)
        .with_context(|| format!("cannot create {}", lib64.display()))?;
    for link in [lib64.join("libLLVM.so"), lib64.join(&library_name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&library, &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    run_step(
        cargo()
            .env("LLVM_PREFIX", &prefix)
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ]),
    )?;
    ensure!(
        output_of(Command::new(&installed).arg("--version")).is_some(),
        "bpf-linker was installed but does not run: {}",
        installed.display()
    );
    Ok(())
}

fn run(args: &[OsString]) -> Result<()> {
    setup_build()?;
    // The dev profile: the build `test` makes too, and the quickest from scratch (the release
    // profile's whole-program optimization is for what ships: `cargo xtask dist`).
    run_step(cargo().args(["build", "--locked", "--package", "memory-monitor"]))?;
    let binary = workspace().join("target/debug/memory-monitor");
    // exec: the monitor takes this process's place, so Ctrl-C and its exit status are its own.
    let error = Command::new(&binary).args(args).exec();
    Err(error).with_context(|| format!("cannot run {}", binary.display()))
}

fn test() -> Result<()> {
    setup()?;
    run_step(cargo().args(["fmt", "--all", "--check"]))?;
    // Linted and documented with the HTTP and S3 writers, which only the release build has.
    run_step(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--features",
        "memory-monitor/object-store",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_step(nightly_cargo().args([
        "clippy",
        "--locked",
        "--package",
        "memory-monitor-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--features",
        "programs",
        "--bins",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The library's documentation builds without a broken or private link.
    run_step(
        cargo()
            .args([
                "doc",
                "--locked",
                "--package",
                "memory-monitor",
                "--no-deps",
                "--features",
                "object-store",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    build_for_tests()?;
    let left_out = match is_root() {
        true => None,
        false => Some(root_only_tests()?),
    };
    if let Some(count) = left_out {
        eprintln!("{}", without_root(count));
    }
    let host = run_step(&mut test_suite());
    if let Some(count) = left_out {
        eprintln!("{}", without_root(count));
    }
    // The eBPF tests again on the kernels users run, whatever this kernel said.
    // Spread: every test runs on one of the kernels, the kernel tests on all (all of them on
    // all kernels is a few times CI's time; `cargo xtask vmtest` runs that).
    let matrix = vmtest::run(&vmtest::selection(&["--spread".into()])?);
    // The packaged unit run by systemd as PID 1, which this machine need not have: one guest.
    let unit = vmtest::run(&vmtest::selection(&["--systemd".into(), "6.1".into()])?);
    // The aarch64 builds in an arm64 guest: eBPF mode's essentials, on one kernel.
    let arm64 = vmtest::run(&vmtest::arm64_in_test()?);
    host.and(matrix).and(unit).and(arm64)
}

/// Builds everything the test suite runs: the workspace's programs, the jemalloc example, and
/// what ships (the static binary, the .deb and the image).
pub(crate) fn build_for_tests() -> Result<()> {
    run_step(cargo().args(["build", "--locked", "--workspace", "--bins"]))?;
    // The self-monitoring example on jemalloc: the library with its `jemalloc` feature, built
    // apart so that the workspace's build keeps the binary's features.
    run_step(cargo().args([
        "build",
        "--locked",
        "--package",
        "memory-monitor",
        "--example",
        "self_monitor_jemalloc",
        "--features",
        "jemalloc",
    ]))?;
    // What ships, which the tests of the static binary, the .deb and the image run.
    dist::run()?;
    image::build().map(drop)
}
