//! `cargo xtask vmtest [KERNEL…]`: the eBPF-facing integration tests, run as root inside qemu
//! guests of Debian's own kernels (5.10, 6.1 and 6.12 by default), one guest per kernel.
//!
//! - **Kernels** come from Debian's registry by package name, through apt: the newest
//!   `linux-image-…-amd64` of each series. Bookworm's are in this machine's own apt sources;
//!   bullseye's come through a private apt configuration (its own sources list, state and
//!   cache under the cache directory) whose sources are this machine's, with only the suite
//!   changed. Packages are cached under `~/.cache/memory-monitor/vmtest/` (outside the work
//!   tree, so clones share them); delete it to fetch the newest again.
//! - **The guest** boots the kernel with a busybox initramfs (Debian's busybox-static) that
//!   loads the kernel's own 9p modules (and their dependencies, from its `modules.dep`), mounts
//!   this machine's root read-only over 9p, mounts proc, sys, tracefs, bpffs, cgroup2 and a
//!   tmpfs `/tmp` there, chroots into it and runs the host-built test binaries by name.
//! - **qemu** runs with TCG (`/dev/kvm` here cannot boot a stock kernel), 2 vCPUs. Each guest
//!   has a bounded wall time: a hang is a failure, shown with the console's last lines. Under
//!   TCG, disabling a trace event while another vCPU is busy can soft-lock the guest, so the
//!   guest panics (and so ends) on a soft lockup instead of hanging until the wall time.
//!
//! It prints, per kernel, each test's result and each BPF program's verified instruction
//! count, and fails if any test failed, hung or could not run, or a kernel could not be
//! fetched.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{cargo, run_step, shown};

mod faults;
mod reaction;

/// A kernel series the matrix boots.
struct Kernel {
    /// What the command line and the report call it.
    name: &'static str,
    /// Whether a package name is one of this series' `-amd64` images.
    matches: fn(&str) -> bool,
    /// Where to look for it, in order.
    suites: &'static [Suite],
}

/// Which apt sources a kernel is looked for in.
#[derive(Clone, Copy)]
enum Suite {
    /// This machine's own apt sources, as they are.
    Machine,
    /// This machine's sources with the release's codename replaced by this one (its
    /// `-security` and `-updates` suites likewise).
    Codename(&'static str),
    /// This machine's release's backports suite (`<codename>-backports`).
    Backports,
}

/// The matrix: the kernels of Debian's supported releases that production fleets run.
const KERNELS: [Kernel; 3] = [
    Kernel {
        name: "5.10",
        matches: |p| abi_image(p, "linux-image-5.10.0-"),
        suites: &[Suite::Codename("bullseye")],
    },
    Kernel {
        name: "6.1",
        matches: |p| abi_image(p, "linux-image-6.1.0-"),
        suites: &[Suite::Machine],
    },
    Kernel {
        name: "6.12",
        matches: |p| {
            p.strip_prefix("linux-image-6.12.")
                .and_then(|rest| rest.strip_suffix("-amd64"))
                .and_then(|rest| rest.split_once('+'))
                .is_some_and(|(patch, tag)| {
                    is_number(patch) && tag.chars().all(|c| c.is_ascii_alphanumeric())
                })
        },
        suites: &[Suite::Machine, Suite::Backports],
    },
];

/// `linux-image-X.Y.0-N-amd64` (the signed, generic flavour).
fn abi_image(package: &str, prefix: &str) -> bool {
    package
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix("-amd64"))
        .is_some_and(is_number)
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Newest first: by the numbers in the package name.
fn version_key(package: &str) -> Vec<u64> {
    package
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The eBPF-facing tests the guests run: (test binary, test name).
const TESTS: [(&str, &str); 14] = [
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

/// The longest one guest may run: its boot and all its tests (a whole run takes a few
/// minutes; a hung guest must not hold CI up for long).
const GUEST_WALL_TIME: Duration = Duration::from_secs(15 * 60);
/// The guest's size: 2 vCPUs (as the host), and room for the tests' processes.
const GUEST_CPUS: usize = 2;
const GUEST_MEMORY: &str = "2G";

/// The 9p modules' names, and the virtio transport's (built in on some kernels).
const GUEST_MODULES: [&str; 3] = ["virtio_pci", "9pnet_virtio", "9p"];

/// What `vmtest` is to run: which kernels, and which of the tests (or, with `--faults`, the
/// page-fault cost at each of these vCPU counts instead; with `--reaction`, breach → signal
/// by size).
pub struct Selection {
    kernels: Vec<&'static str>,
    /// Only the tests whose name holds this.
    only: Option<String>,
    faults: Option<Vec<usize>>,
    reaction: bool,
}

/// The vCPU counts `--faults` measures at unless `--cpus` says.
const FAULT_CPUS: [usize; 3] = [2, 8, 32];
/// The kernels `--faults` boots unless named: one whose counters are atomics, one whose are
/// per CPU.
const FAULT_KERNELS: [&str; 2] = ["6.1", "6.12"];

/// `vmtest`'s command line: `[--only PATTERN] [KERNEL…]` (all kernels, all tests by default),
/// `--faults [--cpus N,N…] [KERNEL…]`, or `--reaction [KERNEL…]`.
pub fn selection(args: &[OsString]) -> Result<Selection> {
    let mut kernels = Vec::new();
    let mut only = None;
    let mut faults = None;
    let mut reaction = false;
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if arg == "--only" {
            only = Some(
                args.next()
                    .context("--only needs a part of a test's name")?,
            );
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
    ensure!(
        (faults.is_none() && !reaction) || only.is_none(),
        "--only selects tests; --faults and --reaction run none"
    );
    ensure!(
        faults.is_none() || !reaction,
        "--faults and --reaction are measurements of their own: one at a time"
    );
    if kernels.is_empty() {
        kernels = match faults {
            Some(_) => FAULT_KERNELS.to_vec(),
            None => KERNELS.iter().map(|k| k.name).collect(),
        };
    }
    Ok(Selection {
        kernels,
        only,
        faults,
        reaction,
    })
}

/// Installs what the guests need: qemu and a static busybox.
pub fn setup() -> Result<()> {
    crate::ensure_debian_package("qemu-system-x86_64", "--version", "qemu-system-x86")?;
    let static_busybox =
        crate::output_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", "busybox-static"]))
            .is_some_and(|status| status.ends_with("installed"));
    if !static_busybox {
        crate::apt_get(
            &["install", "-y", "--no-install-recommends", "busybox-static"],
            None,
        )?;
    }
    Ok(())
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
    let started = Instant::now();
    setup()?;
    let binaries = test_binaries()?;
    let cache = cache_dir()?;
    let out = crate::workspace().join("target/vmtest");
    std::fs::create_dir_all(&out)?;
    let shim = build_verifier_stats(&out)?;
    let mut reports = Vec::new();
    let tests: Vec<(&str, &str)> = TESTS
        .into_iter()
        .filter(|(_, test)| {
            selection
                .only
                .as_ref()
                .is_none_or(|only| test.contains(only.as_str()))
        })
        .collect();
    ensure!(!tests.is_empty(), "no test matches --only");
    for name in &selection.kernels {
        let kernel = KERNELS.iter().find(|k| k.name == *name).expect("checked");
        let report = fetch(kernel, &cache)
            .and_then(|files| {
                boot(
                    kernel,
                    &files,
                    &plan(&binaries, &tests, &shim),
                    &tests,
                    &out,
                )
            })
            .unwrap_or_else(|error| Report::failed(kernel.name, format!("{error:#}")));
        reports.push(report);
    }
    print_reports(&reports);
    eprintln!(
        "vmtest: {} kernel(s) in {:.0?}",
        reports.len(),
        started.elapsed()
    );
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.kernel)
        .collect();
    ensure!(failed.is_empty(), "vmtest failed on {}", failed.join(", "));
    Ok(())
}

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
        let files = fetch(kernel, &cache)?;
        for &count in cpus {
            let guest = run_guest(kernel, &files, plan, count, &out, |line| {
                line.strip_prefix(marker).map(str::to_string)
            })?;
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

/// The guests run the host's binaries from its root, shared read-only, with a tmpfs of their
/// own on `/tmp`: a workspace under `/tmp` is hidden there, and every test would fail with
/// "not found". Said at once instead.
fn visible_in_guests(workspace: &Path) -> Result<()> {
    ensure!(
        !workspace.starts_with("/tmp"),
        "vmtest cannot run from {}: the guests mount a /tmp of their own, which hides it; clone the project outside /tmp",
        workspace.display()
    );
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

/// The library's unit tests' binary, whose BTF reading runs against each guest's kernel.
const LIBRARY_TESTS: &str = "memory_monitor";

/// Builds the test binaries the guests run and returns their paths by binary name.
fn test_binaries() -> Result<BTreeMap<String, PathBuf>> {
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

/// A fetched kernel: its image and the modules the guest loads, in load order.
struct KernelFiles {
    package: String,
    vmlinuz: PathBuf,
    modules: Vec<PathBuf>,
}

/// Fetches `kernel` (or finds it in the cache) and unpacks what the guest needs.
fn fetch(kernel: &Kernel, cache: &Path) -> Result<KernelFiles> {
    let dir = cache.join("kernels").join(kernel.name);
    let chosen = dir.join("package");
    if let Ok(package) = std::fs::read_to_string(&chosen)
        && let Ok(files) = unpacked(package.trim(), &dir)
    {
        return Ok(files);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (package, apt) = find_package(kernel, cache)
        .with_context(|| format!("cannot find Debian's {} kernel", kernel.name))?;
    eprintln!("vmtest: {}: fetching {package}", kernel.name);
    let mut download = apt.command("apt-get");
    download
        .args(["download", &package])
        .current_dir(&dir)
        .stdout(Stdio::null());
    run_step(&mut download).with_context(|| format!("cannot download {package}"))?;
    let deb = std::fs::read_dir(&dir)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb of {package}"))?;
    unpack(&deb, &dir)?;
    std::fs::remove_file(&deb)?;
    let files = unpacked(&package, &dir)?;
    std::fs::write(&chosen, &package)?;
    Ok(files)
}

/// Finds the newest package of `kernel`, trying its suites in order.
fn find_package(kernel: &Kernel, cache: &Path) -> Result<(String, Apt)> {
    let mut tried = Vec::new();
    for suite in kernel.suites {
        let apt = Apt::for_suite(*suite, cache)?;
        let mut found = apt.packages(kernel.matches)?;
        if found.is_empty() && apt.refresh()? {
            found = apt.packages(kernel.matches)?;
        }
        if let Some(newest) = found.into_iter().max_by_key(|p| version_key(p)) {
            return Ok((newest, apt));
        }
        tried.push(apt.describe());
    }
    bail!("no package matches in {}", tried.join("; then "))
}

/// A machine suite's name in the private configuration, if it has one there.
type SuiteRename = dyn Fn(&str) -> Option<String>;

/// Runs apt with this machine's configuration, or with a private one under the cache.
struct Apt {
    /// The private configuration's directory, if any.
    private: Option<PathBuf>,
    /// The suites of its sources, for messages.
    suites: Vec<String>,
}

impl Apt {
    fn for_suite(suite: Suite, cache: &Path) -> Result<Apt> {
        let stanzas = machine_sources()?;
        let release = machine_codename(&stanzas)?;
        let (label, rename): (String, Box<SuiteRename>) = match suite {
            Suite::Machine => {
                let suites = stanzas.iter().flat_map(|s| s.suites.clone()).collect();
                return Ok(Apt {
                    private: None,
                    suites,
                });
            }
            Suite::Codename(codename) => {
                let release = release.clone();
                (
                    codename.to_string(),
                    Box::new(move |suite: &str| {
                        let rest = suite.strip_prefix(release.as_str())?;
                        Some(format!("{codename}{rest}"))
                    }),
                )
            }
            Suite::Backports => {
                let release = release.clone();
                let backports = format!("{release}-backports");
                (
                    backports.clone(),
                    Box::new(move |suite: &str| (suite == release).then(|| backports.clone())),
                )
            }
        };
        let dir = cache.join("apt").join(&label);
        for sub in ["lists/partial", "archives/partial"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            std::fs::write(&status, "")?;
        }
        let mut list = String::new();
        let mut suites = Vec::new();
        for stanza in &stanzas {
            for suite in stanza.suites.iter().filter_map(|s| rename(s)) {
                for uri in &stanza.uris {
                    let options = match &stanza.signed_by {
                        Some(keyring) => format!("[signed-by={keyring}] "),
                        None => String::new(),
                    };
                    let components = stanza.components.join(" ");
                    list.push_str(&format!("deb {options}{uri} {suite} {components}\n"));
                }
                suites.push(suite);
            }
        }
        ensure!(
            !list.is_empty(),
            "this machine's apt sources have no suite to derive {label} from"
        );
        let sources = dir.join("sources.list");
        if std::fs::read_to_string(&sources).ok().as_deref() != Some(list.as_str()) {
            std::fs::write(&sources, &list)?;
            // New sources: the lists must be read anew.
            let _ = std::fs::remove_dir_all(dir.join("lists"));
            std::fs::create_dir_all(dir.join("lists/partial"))?;
        }
        Ok(Apt {
            private: Some(dir),
            suites,
        })
    }

    /// `program` (apt-get, apt-cache) with this configuration.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", "APT::Sandbox::User=root"]);
        if let Some(dir) = &self.private {
            let set = |key: &str, value: &Path| format!("{key}={}", value.display());
            for option in [
                set("Dir::Etc::SourceList", &dir.join("sources.list")),
                set("Dir::Etc::SourceParts", &dir.join("sources.list.d")),
                set("Dir::State", dir),
                set("Dir::State::Lists", &dir.join("lists")),
                set("Dir::State::status", &dir.join("status")),
                set("Dir::Cache", dir),
                set("Dir::Cache::Archives", &dir.join("archives")),
            ] {
                command.args(["-o", &option]);
            }
        }
        command
    }

    /// The kernel image packages that `matches` accepts.
    fn packages(&self, matches: fn(&str) -> bool) -> Result<Vec<String>> {
        let output = self
            .command("apt-cache")
            .args(["pkgnames", "linux-image-"])
            .output()
            .context("cannot run apt-cache")?;
        let names = String::from_utf8_lossy(&output.stdout);
        Ok(names
            .lines()
            .filter(|p| matches(p))
            .map(String::from)
            .collect())
    }

    /// Reads the package lists anew; false if they were just read (nothing new to find).
    fn refresh(&self) -> Result<bool> {
        let lists = match &self.private {
            Some(dir) => dir.join("lists"),
            None => PathBuf::from("/var/lib/apt/lists"),
        };
        let fresh = std::fs::metadata(&lists)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < Duration::from_secs(600)));
        let has_lists = std::fs::read_dir(&lists)
            .is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_file())));
        if fresh && has_lists {
            return Ok(false);
        }
        run_step(self.command("apt-get").arg("update").stdout(Stdio::null()))
            .context("apt-get update failed")?;
        Ok(true)
    }

    fn describe(&self) -> String {
        match &self.private {
            Some(dir) => format!(
                "{} (apt configuration {})",
                self.suites.join(" "),
                dir.display()
            ),
            None => format!("{} (this machine's apt sources)", self.suites.join(" ")),
        }
    }
}

/// One deb822 stanza of this machine's apt sources.
struct Stanza {
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: Option<String>,
}

/// The binary-package stanzas of `/etc/apt/sources.list.d/*.sources`.
fn machine_sources() -> Result<Vec<Stanza>> {
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
        .collect();
    files.sort();
    let mut stanzas = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        stanzas.extend(parse_sources(&text));
    }
    ensure!(
        !stanzas.is_empty(),
        "no deb source in {}/*.sources to take the mirror from",
        dir.display()
    );
    Ok(stanzas)
}

/// Parses deb822 sources (`Types`, `URIs`, `Suites`, `Components`, `Signed-By`), keeping the
/// stanzas of binary packages that are not disabled.
fn parse_sources(text: &str) -> Vec<Stanza> {
    let mut stanzas = Vec::new();
    for block in text.split("\n\n") {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for line in block.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if let Some((key, value)) = line.split_once(':')
                && !line.starts_with(' ')
            {
                fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let words = |key: &str| -> Vec<String> {
            fields
                .get(key)
                .map(|v| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        let enabled = fields.get("enabled").is_none_or(|v| v != "no");
        if enabled && words("types").iter().any(|t| t == "deb") {
            stanzas.push(Stanza {
                uris: words("uris"),
                suites: words("suites"),
                components: words("components"),
                signed_by: fields.get("signed-by").cloned(),
            });
        }
    }
    stanzas
}

/// The release this machine's sources name (the one suite without a `-` suffix).
fn machine_codename(stanzas: &[Stanza]) -> Result<String> {
    stanzas
        .iter()
        .flat_map(|s| &s.suites)
        .find(|suite| !suite.contains('-') && !suite.contains('/'))
        .cloned()
        .context("this machine's apt sources name no release suite")
}

/// Unpacks the kernel image and the modules the guest loads from `deb` into `dir`, and
/// writes their dependencies there as a `modules.dep` (Debian's packages leave that file to
/// `depmod` at install): each module's own `depends=` (the `.modinfo` entry `depmod` reads
/// too), followed until every dependency is unpacked.
fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    let listing = list_deb(deb)?;
    let release = listing
        .iter()
        .find_map(|path| path.strip_prefix("boot/vmlinuz-"))
        .context("no vmlinuz in the package")?
        .to_string();
    let prefix = format!("lib/modules/{release}/");
    let paths: BTreeMap<&str, &str> = listing
        .iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&prefix)?;
            relative
                .contains(".ko")
                .then(|| (module_name(relative), relative))
        })
        .collect();
    extract(
        deb,
        dir,
        &[
            format!("./boot/vmlinuz-{release}"),
            format!("./{prefix}modules.builtin"),
        ],
    )?;
    let root = modules_root(dir, &release);
    let builtin = std::fs::read_to_string(root.join("modules.builtin")).unwrap_or_default();
    let is_builtin = |name: &str| builtin.lines().any(|path| module_name(path) == name);
    let mut dep = String::new();
    let mut known: Vec<String> = Vec::new();
    let mut todo: Vec<String> = GUEST_MODULES.iter().map(|m| m.to_string()).collect();
    while !todo.is_empty() {
        let mut batch: Vec<String> = std::mem::take(&mut todo)
            .into_iter()
            .filter(|name| paths.contains_key(name.as_str()) || !is_builtin(name))
            .filter(|name| !known.contains(name))
            .collect();
        batch.sort();
        batch.dedup();
        if batch.is_empty() {
            break;
        }
        let mut patterns = Vec::new();
        for name in &batch {
            let path = paths
                .get(name.as_str())
                .with_context(|| format!("the package has no module {name}"))?;
            patterns.push(format!("./{prefix}{path}"));
        }
        extract(deb, dir, &patterns)?;
        for name in batch {
            let path = paths[name.as_str()];
            let depends = module_depends(&module_bytes(&root.join(path))?);
            let deps: Vec<&str> = depends
                .iter()
                .filter_map(|d| paths.get(d.as_str()).copied())
                .collect();
            dep.push_str(&format!("{path}: {}\n", deps.join(" ")));
            todo.extend(depends);
            known.push(name);
        }
    }
    std::fs::write(root.join("modules.dep"), dep)?;
    Ok(())
}

/// The paths in `deb`'s data, without their leading `./`.
fn list_deb(deb: &Path) -> Result<Vec<String>> {
    let listing = data_tar(deb, Command::new("tar").arg("-t"))
        .with_context(|| format!("cannot list {}", deb.display()))?;
    Ok(String::from_utf8_lossy(&listing)
        .lines()
        .map(|line| line.trim_start_matches("./").to_string())
        .collect())
}

/// Extracts `paths` of `deb`'s data into `dir`.
fn extract(deb: &Path, dir: &Path, paths: &[String]) -> Result<()> {
    data_tar(
        deb,
        Command::new("tar").arg("-x").arg("-C").arg(dir).args(paths),
    )
    .with_context(|| format!("cannot unpack {} from {}", paths.join(" "), deb.display()))?;
    Ok(())
}

/// Runs `tar` on `deb`'s data (`dpkg-deb --fsys-tarfile`); what it printed.
fn data_tar(deb: &Path, tar: &mut Command) -> Result<Vec<u8>> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run dpkg-deb")?;
    let output = tar
        .stdin(dpkg.stdout.take().expect("piped"))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run tar")?;
    ensure!(
        dpkg.wait()?.success() && output.status.success(),
        "dpkg-deb or tar failed"
    );
    Ok(output.stdout)
}

/// The modules a module needs loaded first: its `.modinfo` entry `depends=a,b`.
fn module_depends(module: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = module.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let value = &module[at + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect()
}

/// The kernel release (`uname -r`) of an unpacked image.
fn release_of(dir: &Path) -> Result<String> {
    let boot = std::fs::read_dir(dir.join("boot")).context("no /boot in the package")?;
    boot.flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(String::from)
        })
        .next()
        .context("no vmlinuz in the package")
}

fn modules_root(dir: &Path, release: &str) -> PathBuf {
    dir.join("lib/modules").join(release)
}

/// The module files (relative to the modules directory) to load, dependencies first, for
/// [`GUEST_MODULES`]; those built into the kernel are left out.
fn module_order(root: &Path) -> Result<Vec<String>> {
    let dep = std::fs::read_to_string(root.join("modules.dep")).context("no modules.dep")?;
    let builtin = std::fs::read_to_string(root.join("modules.builtin")).unwrap_or_default();
    resolve_modules(&dep, &builtin, &GUEST_MODULES)
}

/// A module's name from its path: `kernel/net/9p/9pnet_virtio.ko.xz` → `9pnet_virtio`.
fn module_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file)
}

/// Orders `wanted` and everything they depend on by `modules.dep` (`path: dep dep…`), each
/// after its dependencies; a wanted module listed in `modules.builtin` needs nothing.
fn resolve_modules(dep: &str, builtin: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let table: BTreeMap<&str, (&str, Vec<&str>)> = dep
        .lines()
        .filter_map(|line| {
            let (path, deps) = line.split_once(':')?;
            Some((module_name(path), (path, deps.split_whitespace().collect())))
        })
        .collect();
    let is_builtin = |name: &str| builtin.lines().any(|path| module_name(path) == name);
    fn visit<'a>(
        name: &str,
        table: &BTreeMap<&'a str, (&'a str, Vec<&'a str>)>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        let (path, deps) = table
            .get(name)
            .with_context(|| format!("modules.dep has no module {name}"))?;
        if order.iter().any(|p| p == path) {
            return Ok(());
        }
        for dep in deps {
            visit(module_name(dep), table, order)?;
        }
        order.push((*path).to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for name in wanted {
        if !table.contains_key(name) && is_builtin(name) {
            continue;
        }
        visit(name, &table, &mut order)?;
    }
    Ok(order)
}

/// The files of an unpacked kernel, if all there.
fn unpacked(package: &str, dir: &Path) -> Result<KernelFiles> {
    let release = release_of(dir)?;
    let root = modules_root(dir, &release);
    let modules = module_order(&root)?
        .into_iter()
        .map(|path| root.join(path))
        .collect::<Vec<_>>();
    for module in &modules {
        ensure!(module.is_file(), "{} is missing", module.display());
    }
    Ok(KernelFiles {
        package: package.to_string(),
        vmlinuz: dir.join("boot").join(format!("vmlinuz-{release}")),
        modules,
    })
}

/// A module's contents, decompressed (busybox's insmod takes plain `.ko` files).
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let decompressor = [(".ko.xz", "xz"), (".ko.zst", "zstd"), (".ko.gz", "gzip")]
        .into_iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, tool)| tool);
    match decompressor {
        None => Ok(std::fs::read(path)?),
        Some(tool) => {
            let output = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .with_context(|| format!("cannot run {tool} for {name}"))?;
            ensure!(output.status.success(), "{tool} cannot decompress {name}");
            Ok(output.stdout)
        }
    }
}

/// The guest's `/init`: mount what the tests need, then run `/plan.sh` in the host's root.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /modules/order); do
    insmod "/modules/$module" || echo "@@ fatal insmod $module failed"
done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /host \
    || { echo "@@ fatal cannot mount the host's root over 9p"; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t tmpfs -o mode=1777 tmp /host/tmp
mount -t tmpfs run /host/run
mount -t tracefs tracefs /host/sys/kernel/tracing
mount -t bpf bpf /host/sys/fs/bpf
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup
cp /plan.sh /host/tmp/plan.sh
echo "@@ booted $(uname -r)"
chroot /host /bin/sh /tmp/plan.sh
echo "@@ done"
poweroff -f
"#;

/// Builds the verifier-statistics library (`xtask/shim/verifier_stats.rs`) that the kernel
/// tests' monitors preload, for kernels whose program info has no `verified_insns`.
fn build_verifier_stats(out: &Path) -> Result<PathBuf> {
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
fn plan(binaries: &BTreeMap<String, PathBuf>, tests: &[(&str, &str)], shim: &Path) -> String {
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

/// Writes a `newc` cpio archive (the initramfs format the kernel unpacks) of `entries`:
/// `(path, mode, contents)`; a directory has mode `0o040_000 | perm` and no contents, a
/// character device `0o020_000 | perm` and its `(major, minor)` in place of contents.
/// Hand-written: the format is a header of hex fields per file, and the guest needs only this.
fn cpio(entries: &[CpioEntry]) -> Vec<u8> {
    let mut archive = Vec::new();
    let pad = |archive: &mut Vec<u8>| {
        while !archive.len().is_multiple_of(4) {
            archive.push(0);
        }
    };
    let trailer = CpioEntry {
        path: "TRAILER!!!".to_string(),
        mode: 0,
        data: Vec::new(),
        device: (0, 0),
    };
    for (ino, entry) in entries.iter().chain([&trailer]).enumerate() {
        let fields = [
            ino as u32 + 1,
            entry.mode,
            0,
            0,
            1,
            0,
            entry.data.len() as u32,
            0,
            0,
            entry.device.0,
            entry.device.1,
            entry.path.len() as u32 + 1,
            0,
        ];
        archive.extend_from_slice(b"070701");
        for field in fields {
            archive.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        archive.extend_from_slice(entry.path.as_bytes());
        archive.push(0);
        pad(&mut archive);
        archive.extend_from_slice(&entry.data);
        pad(&mut archive);
    }
    archive
}

struct CpioEntry {
    path: String,
    mode: u32,
    data: Vec<u8>,
    device: (u32, u32),
}

impl CpioEntry {
    fn dir(path: &str) -> CpioEntry {
        CpioEntry {
            path: path.to_string(),
            mode: 0o040_755,
            data: Vec::new(),
            device: (0, 0),
        }
    }

    fn file(path: &str, mode: u32, data: Vec<u8>) -> CpioEntry {
        CpioEntry {
            path: path.to_string(),
            mode: 0o100_000 | mode,
            data,
            device: (0, 0),
        }
    }
}

/// The initramfs for `kernel`: busybox, `/init`, the plan and the modules.
fn initramfs(files: &KernelFiles, plan: &str) -> Result<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox").context("no /bin/busybox (busybox-static)")?;
    let mut entries = vec![
        CpioEntry::dir("bin"),
        CpioEntry::dir("dev"),
        CpioEntry::dir("proc"),
        CpioEntry::dir("sys"),
        CpioEntry::dir("host"),
        CpioEntry::dir("modules"),
        CpioEntry {
            path: "dev/console".to_string(),
            mode: 0o020_600,
            data: Vec::new(),
            device: (5, 1),
        },
        CpioEntry::file("bin/busybox", 0o755, busybox),
        CpioEntry::file("init", 0o755, INIT.as_bytes().to_vec()),
        CpioEntry::file("plan.sh", 0o644, plan.as_bytes().to_vec()),
    ];
    let mut order = String::new();
    for module in &files.modules {
        let name = format!("{}.ko", module_name(&module.to_string_lossy()));
        entries.push(CpioEntry::file(
            &format!("modules/{name}"),
            0o644,
            module_bytes(module)?,
        ));
        order.push_str(&name);
        order.push('\n');
    }
    entries.push(CpioEntry::file("modules/order", 0o644, order.into_bytes()));
    Ok(cpio(&entries))
}

/// What one guest showed.
struct Report {
    kernel: &'static str,
    /// The package booted, or why none was.
    package: Result<String, String>,
    /// Each planned test's result, in plan order.
    results: Vec<(String, Outcome)>,
    /// The BPF programs' verified instruction counts, by attach type and program.
    insns: BTreeMap<(String, String), String>,
    /// What the monitor's start lines said: attach type and the figure that decides.
    starts: Vec<String>,
    /// `kmem:rss_stat` events per MiB grown.
    events_per_mib: Option<String>,
    /// The guest's end: ran through, or why not (a hang, with the console's tail).
    ending: Option<String>,
    wall: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed(String),
    NotRun,
}

impl Report {
    fn failed(kernel: &'static str, why: String) -> Report {
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

    fn passed(&self) -> bool {
        self.package.is_ok()
            && self.ending.is_none()
            && !self.results.is_empty()
            && self.results.iter().all(|(_, o)| *o == Outcome::Passed)
    }
}

/// Boots `kernel` with the tests of `plan` and reads its report.
fn boot(
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

/// What a guest printed, and how it ended.
struct Guest {
    console: String,
    timed_out: bool,
    wall: Duration,
}

/// Boots `kernel` with `cpus` vCPUs to run `plan`, until it powers off or its wall time is
/// spent; `progress` picks the console lines worth showing as they come.
fn run_guest(
    kernel: &Kernel,
    files: &KernelFiles,
    plan: &str,
    cpus: usize,
    out: &Path,
    progress: impl Fn(&str) -> Option<String>,
) -> Result<Guest> {
    let initrd = out.join(format!("initramfs-{}.cpio", kernel.name));
    std::fs::write(&initrd, initramfs(files, plan)?)?;
    let console_path = out.join(format!("console-{}.log", kernel.name));
    let console = std::fs::File::create(&console_path)?;
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg,thread=multi", "-cpu", "max"])
        .args(["-smp", &cpus.to_string(), "-m", GUEST_MEMORY])
        .args(["-nodefaults", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&files.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 softlockup_panic=1 random.trust_cpu=on mitigations=off quiet loglevel=4 rdinit=/init",
        ])
        .args([
            "-fsdev",
            "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device",
            "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        ])
        .stdin(Stdio::null())
        .stdout(console.try_clone()?)
        .stderr(console);
    eprintln!(
        "vmtest: {}: booting {} ({cpus} vCPUs, {}; console in {})",
        kernel.name,
        files.package,
        GUEST_MEMORY,
        console_path.display()
    );
    let started = Instant::now();
    let mut child = qemu.spawn().context("cannot start qemu-system-x86_64")?;
    let mut log = std::fs::File::open(&console_path)?;
    // The console's last line while it is incomplete.
    let mut partial = Vec::new();
    let mut timed_out = false;
    loop {
        let exited = child.try_wait()?.is_some();
        log.read_to_end(&mut partial)?;
        if let Some(last) = partial.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = partial.drain(..=last).collect();
            for line in String::from_utf8_lossy(&complete).lines() {
                if let Some(shown) = progress(line.trim()) {
                    eprintln!("vmtest: {}: {shown}", kernel.name);
                }
            }
        }
        if exited {
            break;
        }
        if started.elapsed() > GUEST_WALL_TIME {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    log.seek(SeekFrom::Start(0))?;
    let mut console = String::new();
    log.read_to_string(&mut console)?;
    Ok(Guest {
        console,
        timed_out,
        wall: started.elapsed(),
    })
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads a guest's console: the markers of [`plan`] and the `vmtest:` lines the kernel
/// tests print.
fn read_report(
    kernel: &'static str,
    package: &str,
    console: &str,
    tests: &[(&str, &str)],
) -> Report {
    let mut report = Report::failed(kernel, String::new());
    report.package = Ok(package.to_string());
    let mut outputs: BTreeMap<String, (Outcome, Vec<&str>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(test) = line.strip_prefix("@@ begin ") {
            current = Some(test.to_string());
            outputs.insert(test.to_string(), (Outcome::NotRun, Vec::new()));
            continue;
        }
        if let Some(end) = line.strip_prefix("@@ end ")
            && let Some((test, status)) = end.rsplit_once(' ')
            && let Some((outcome, output)) = outputs.get_mut(test)
        {
            *outcome = match status {
                "0" => Outcome::Passed,
                _ => Outcome::Failed(tail(&output.join("\n"), 60)),
            };
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
            && let Some((_, output)) = outputs.get_mut(test)
        {
            output.push(line);
        }
    }
    for (binary, test) in tests {
        let name = format!("{binary}::{test}");
        let outcome = match outputs.remove(&name) {
            Some((Outcome::NotRun, output)) => Outcome::Failed(format!(
                "did not finish; its last output:\n{}",
                tail(&output.join("\n"), 40)
            )),
            Some((outcome, _)) => outcome,
            None => Outcome::NotRun,
        };
        report.results.push((name, outcome));
    }
    if report.ending.is_none() && !console.contains("@@ done") {
        report.ending = Some(format!(
            "the guest ended before its plan did; its console's last lines:\n{}",
            tail(console, 40)
        ));
    }
    report
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

fn print_reports(reports: &[Report]) {
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
        text.push_str("   | test | result |\n   | --- | --- |\n");
        for (test, outcome) in &report.results {
            let shown = match outcome {
                Outcome::Passed => "passed",
                Outcome::Failed(_) => "FAILED",
                Outcome::NotRun => "NOT RUN",
            };
            text.push_str(&format!("   | {test} | {shown} |\n"));
        }
        if !report.insns.is_empty() {
            text.push_str(
                "   | attach | program | verified instructions |\n   | --- | --- | --: |\n",
            );
            for ((attach, program), insns) in &report.insns {
                text.push_str(&format!("   | {attach} | {program} | {insns} |\n"));
            }
        }
        for (test, outcome) in &report.results {
            if let Outcome::Failed(output) = outcome {
                text.push_str(&format!(
                    "\n-- {} {test} failed:\n{output}\n",
                    report.kernel
                ));
            }
        }
        if let Some(ending) = &report.ending {
            text.push_str(&format!("\n-- {}: {ending}\n", report.kernel));
        }
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_packages_are_told_apart_by_name() {
        let [k510, k61, k612] = &KERNELS;
        assert!((k510.matches)("linux-image-5.10.0-46-amd64"));
        assert!(!(k510.matches)("linux-image-5.10.0-46-cloud-amd64"));
        assert!(!(k510.matches)("linux-image-5.10.0-46-amd64-dbg"));
        assert!((k61.matches)("linux-image-6.1.0-57-amd64"));
        assert!(!(k61.matches)("linux-image-6.1.0-57-rt-amd64"));
        assert!(!(k61.matches)("linux-image-6.1.0-57-amd64-unsigned"));
        assert!((k612.matches)("linux-image-6.12.115+deb12-amd64"));
        assert!((k612.matches)("linux-image-6.12.12+bpo-amd64"));
        assert!(!(k612.matches)("linux-image-6.12.115+deb12-cloud-amd64"));
        assert!(!(k612.matches)("linux-image-6.12-amd64"));
        let newest = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64"]
            .into_iter()
            .max_by_key(|p| version_key(p));
        assert_eq!(newest, Some("linux-image-6.1.0-57-amd64"));
    }

    #[test]
    fn sources_are_read_and_suites_derived() {
        let text = "Types: deb\n# http://old.example/debian\nURIs: http://mirror.example/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                    Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\n\
                    Components: main\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\nEnabled: no\n";
        let stanzas = parse_sources(text);
        assert_eq!(stanzas.len(), 1);
        assert_eq!(stanzas[0].uris, ["http://mirror.example/debian"]);
        assert_eq!(stanzas[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            stanzas[0].signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        assert_eq!(machine_codename(&stanzas).unwrap(), "bookworm");
    }

    #[test]
    fn a_workspace_under_tmp_is_refused_as_the_guests_cannot_see_it() {
        let error = visible_in_guests(Path::new("/tmp/clone")).unwrap_err();
        assert!(error.to_string().contains("outside /tmp"), "{error}");
        assert!(visible_in_guests(Path::new("/work/clone")).is_ok());
        assert!(visible_in_guests(Path::new("/tmpfs-ws/clone")).is_ok());
    }

    #[test]
    fn modules_come_after_what_they_depend_on() {
        let dep = "kernel/fs/9p/9p.ko.xz: kernel/fs/netfs/netfs.ko.xz kernel/net/9p/9pnet.ko.xz\n\
                   kernel/fs/netfs/netfs.ko.xz:\n\
                   kernel/net/9p/9pnet.ko.xz:\n\
                   kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n";
        let builtin = "kernel/drivers/virtio/virtio_pci.ko\n";
        let order = resolve_modules(dep, builtin, &GUEST_MODULES).unwrap();
        assert_eq!(
            order,
            [
                "kernel/net/9p/9pnet.ko.xz",
                "kernel/net/9p/9pnet_virtio.ko.xz",
                "kernel/fs/netfs/netfs.ko.xz",
                "kernel/fs/9p/9p.ko.xz"
            ]
        );
        assert!(resolve_modules(dep, "", &GUEST_MODULES).is_err());
    }

    #[test]
    fn a_module_says_what_it_depends_on() {
        let modinfo = b"\x7fELF...\0license=GPL\0depends=netfs,9pnet\0intree=Y\0name=9p\0";
        assert_eq!(module_depends(modinfo), ["netfs", "9pnet"]);
        assert!(module_depends(b"\0license=GPL\0depends=\0name=netfs\0").is_empty());
        assert!(module_depends(b"no modinfo").is_empty());
    }

    #[test]
    fn cpio_entries_are_aligned_and_end_with_a_trailer() {
        let archive = cpio(&[CpioEntry::file("init", 0o755, b"#!/bin/sh\n".to_vec())]);
        assert!(archive.starts_with(b"070701"));
        assert_eq!(archive.len() % 4, 0);
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("init\0"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's size field (the 7th) is its length in hex.
        assert_eq!(&archive[6 + 6 * 8..6 + 7 * 8], b"0000000a");
    }

    #[test]
    fn the_console_is_read_into_a_report() {
        let console = "@@ booted 6.1.0-57-amd64\n@@ begin ebpf::a\nrunning 1 test\n\
                       vmtest: attach=tp-btf program=rss_stat_btf verified_insns=1234\n\
                       @@ end ebpf::a 0\n@@ begin ebpf::b\nthread panicked\n@@ end ebpf::b 101\n\
                       @@ done\n";
        let report = read_report("6.1", "linux-image-6.1.0-57-amd64", console, &TESTS);
        assert_eq!(
            report
                .insns
                .get(&("tp-btf".to_string(), "rss_stat_btf".to_string())),
            Some(&"1234".to_string())
        );
        assert!(report.ending.is_none());
        // Planned tests the console never mentions were not run.
        assert!(
            report
                .results
                .iter()
                .all(|(_, outcome)| *outcome == Outcome::NotRun)
        );
        assert!(!report.passed());
    }
}
