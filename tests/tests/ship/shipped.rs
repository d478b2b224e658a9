//! What ships: the static release binary links nothing at run time and works, eBPF mode
//! included; the .deb installs where Debian puts things, runs, and goes away cleanly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use memory_monitor_tests::shipped::{deb, deb_of, released, static_binary, workspace};
use memory_monitor_tests::{Monitor, Target, unique_name, usr1_over_32m};

/// `readelf ARGS binary`'s output.
fn readelf(args: &[&str], binary: &Path) -> String {
    let output = Command::new("readelf")
        .args(args)
        .arg(binary)
        .output()
        .expect("readelf (binutils)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The version the workspace is at.
fn version() -> String {
    let manifest: toml::Table = std::fs::read_to_string(workspace().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    manifest["workspace"]["package"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_static_binary_needs_no_loader_nor_library_and_runs() {
    let binary = static_binary();
    // No program interpreter (ld.so) to load it, no shared library to find.
    let headers = readelf(&["--program-headers", "--wide"], &binary);
    assert!(!headers.contains("INTERP"), "{headers}");
    let dynamic = readelf(&["--dynamic", "--wide"], &binary);
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");

    let output = Command::new(&binary).arg("--version").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("memory-monitor {}\n", version())
    );
    let rules = workspace().join("packaging/rules.toml");
    let output = Command::new(&binary)
        .arg("--config")
        .arg(&rules)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("rule 'my-app'"),
        "{output:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn the_static_binary_signals_a_crossing_in_ebpf_mode() {
    let name = unique_name("mmx-static");
    let mut target = Target::spawn(&name);
    let mut monitor = Monitor::start_with(&usr1_over_32m("ebpf", &[&name]), released);
    monitor.expect_log(&["watching", "mode=ebpf"]);
    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    monitor.expect_log(&["over the limit", &format!("pid={}", target.pid())]);
    assert!(monitor.stop().success());
}

/// A throwaway root: the machine's own `/` under an overlay whose upper layer is a tmpfs, in
/// a mount namespace of its own held by a sleeping process. Whatever is installed there is
/// written to the tmpfs and goes with the namespace when the process ends.
struct Throwaway {
    holder: Child,
    merged: PathBuf,
}

impl Throwaway {
    fn new() -> Throwaway {
        let dir = std::env::temp_dir().join(unique_name("mm-deb-root"));
        let merged = dir.join("merged");
        let script = format!(
            "set -e; mkdir -p {dir}; mount -t tmpfs mm-deb {dir}; \
             mkdir {dir}/upper {dir}/work {merged}; \
             mount -t overlay mm-deb -o lowerdir=/,upperdir={dir}/upper,workdir={dir}/work {merged}; \
             mount -t proc proc {merged}/proc; mount --rbind /dev {merged}/dev; \
             mount -t tmpfs mm-deb-run {merged}/run; mount -t tmpfs mm-deb-tmp {merged}/tmp; \
             echo ready; exec sleep infinity",
            dir = dir.display(),
            merged = merged.display()
        );
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let mut ready = String::new();
        use std::io::BufRead as _;
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the throwaway root was not made");
        Throwaway { holder, merged }
    }

    /// Runs `command` chrooted into the throwaway root.
    fn run(&self, command: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg("chroot")
            .arg(&self.merged)
            .args(command)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("nsenter")
    }

    /// Runs `command` in the root; it must succeed. Its stdout.
    fn ok(&self, command: &[&str]) -> String {
        let output = self.run(command);
        assert!(
            output.status.success(),
            "{command:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether `path` (absolute, inside the root) exists there.
    fn exists(&self, path: &str) -> bool {
        let seen = PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(self.merged.strip_prefix("/").unwrap())
            .join(path.trim_start_matches('/'));
        std::fs::symlink_metadata(seen).is_ok()
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The paths the package holds (files and directories of its own), from `dpkg-deb --contents`.
fn package_paths(deb: &Path) -> Vec<String> {
    let output = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(deb)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(|path| {
            path.trim_start_matches('.')
                .trim_end_matches('/')
                .to_string()
        })
        .filter(|path| !path.is_empty())
        .collect()
}

/// A package's control field.
fn control_field(deb: &Path, field: &str) -> String {
    let output = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(field)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn the_arm64_deb_is_the_amd64_one_with_the_static_aarch64_binary() {
    let (amd64, arm64) = (deb(), deb_of("arm64"));
    assert_eq!(control_field(&amd64, "Architecture"), "amd64");
    assert_eq!(control_field(&arm64, "Architecture"), "arm64");
    assert_eq!(package_paths(&arm64), package_paths(&amd64));
    // Its binary, taken out of the package: aarch64, and as static as the x86_64 one.
    let dir = std::env::temp_dir().join(unique_name("mm-deb-arm64"));
    std::fs::create_dir_all(&dir).unwrap();
    let unpacked = Command::new("dpkg-deb")
        .arg("--extract")
        .arg(&arm64)
        .arg(&dir)
        .status()
        .unwrap();
    assert!(unpacked.success());
    let binary = dir.join("usr/bin/memory-monitor");
    let header = readelf(&["--file-header"], &binary);
    assert!(header.contains("AArch64"), "{header}");
    let headers = readelf(&["--program-headers", "--wide"], &binary);
    assert!(!headers.contains("INTERP"), "{headers}");
    let dynamic = readelf(&["--dynamic", "--wide"], &binary);
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");
    // The BPF programs are embedded: an ELF object for the BPF machine (`e_machine` 247, at
    // byte 18 of its header) within the binary.
    let contents = std::fs::read(&binary).unwrap();
    let embedded = (1..contents.len().saturating_sub(20))
        .filter(|&at| contents[at..].starts_with(b"\x7fELF"))
        .any(|at| contents[at + 18..at + 20] == [247, 0]);
    assert!(embedded, "no BPF object embedded in the aarch64 binary");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The conffile the package installs.
const RULES: &str = "/etc/memory-monitor/rules.toml";

#[test]
#[ignore = "needs root"]
fn the_deb_installs_runs_and_leaves_only_its_conffile_until_purged() {
    let deb = deb();
    let paths = package_paths(&deb);
    for expected in [
        "/usr/bin/memory-monitor",
        "/usr/share/man/man1/memory-monitor.1.gz",
        "/usr/share/bash-completion/completions/memory-monitor",
        "/usr/share/zsh/vendor-completions/_memory-monitor",
        "/usr/share/fish/vendor_completions.d/memory-monitor.fish",
        "/lib/systemd/system/memory-monitor.service",
        "/lib/systemd/system/memory-monitor@.service",
        RULES,
        "/usr/share/doc/memory-monitor/copyright",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected}: {paths:?}");
    }
    // What is the package's own: not /usr/bin, but /etc/memory-monitor and its doc directory.
    let owned: Vec<&String> = paths
        .iter()
        .filter(|path| path.contains("memory-monitor"))
        .collect();
    let root = Throwaway::new();
    for path in &owned {
        assert!(!root.exists(path), "{path} is there before installing");
    }

    // The .deb is handed in through dpkg's standard input, so nothing is written outside.
    let install = Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", root.holder.id()))
        .arg("chroot")
        .arg(&root.merged)
        .args(["sh", "-c", "cat > /tmp/mm.deb && dpkg -i /tmp/mm.deb"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::fs::File::open(&deb).unwrap())
        .output()
        .unwrap();
    assert!(install.status.success(), "dpkg -i: {install:?}");
    for path in &owned {
        assert!(root.exists(path), "{path} is not installed");
    }

    let version = root.ok(&["memory-monitor", "--version"]);
    assert!(version.starts_with("memory-monitor "), "{version}");
    root.ok(&["memory-monitor", "--config", RULES, "--check-config"]);
    for unit in ["memory-monitor.service", "memory-monitor@example.service"] {
        let file = format!("/lib/systemd/system/{}", unit.replace("@example", "@"));
        let text = root.ok(&["cat", &file]);
        assert!(
            text.contains("ExecStart=/usr/bin/memory-monitor "),
            "{text}"
        );
        assert!(!text.contains("/usr/local"), "{text}");
        // verify wants an instance for a template: a link named after one.
        let checked = format!("/tmp/{unit}");
        root.ok(&["ln", "-s", &file, &checked]);
        let output = root.run(&["systemd-analyze", "verify", "--man=no", &checked]);
        let complaints = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && complaints.trim().is_empty(),
            "{unit}: {complaints}"
        );
    }

    root.ok(&["dpkg", "--remove", "memory-monitor"]);
    for path in &owned {
        let kept = *path == RULES || *path == "/etc/memory-monitor";
        assert_eq!(root.exists(path), kept, "{path} after dpkg --remove");
    }
    root.ok(&["dpkg", "--purge", "memory-monitor"]);
    for path in &owned {
        assert!(!root.exists(path), "{path} after dpkg --purge");
    }
    let status = root.run(&["dpkg", "--status", "memory-monitor"]);
    assert!(!status.status.success(), "{status:?}");
}
