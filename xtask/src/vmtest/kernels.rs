//! The kernels the matrix boots: which package of each series, for each architecture, fetched
//! through apt into the cache, unpacked, and the modules the guest loads (9p, virtio-blk, ext4),
//! in load order; for a guest of another architecture than this machine's, its busybox too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};

use super::apt::{Apt, Suite};
use crate::arch::Arch;
use crate::run_step;

/// A kernel series the matrix boots.
pub(super) struct Kernel {
    /// What the command line and the report call it.
    pub(super) name: &'static str,
    /// Whether a package name, its architecture's suffix (`-amd64`, `-arm64`) taken off, is one
    /// of this series' images.
    pub(super) matches: fn(&str) -> bool,
    /// Where to look for it, in order.
    pub(super) suites: &'static [Suite],
}

/// The matrix: the kernels of Debian's supported releases that production fleets run.
pub(super) const KERNELS: [Kernel; 3] = [
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
                .and_then(|rest| rest.split_once('+'))
                .is_some_and(|(patch, tag)| {
                    is_number(patch) && tag.chars().all(|c| c.is_ascii_alphanumeric())
                })
        },
        suites: &[Suite::Machine, Suite::Backports],
    },
];

/// `linux-image-X.Y.0-N` (the signed, generic flavour, its architecture's suffix taken off).
fn abi_image(package: &str, prefix: &str) -> bool {
    package.strip_prefix(prefix).is_some_and(is_number)
}

/// Whether `package` is one of `kernel`'s images for `arch`.
fn is_image(kernel: &Kernel, arch: Arch, package: &str) -> bool {
    package
        .strip_suffix(arch.debian())
        .and_then(|rest| rest.strip_suffix('-'))
        .is_some_and(kernel.matches)
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

/// The modules the guest loads (those built in are left out): the virtio transport, 9p for the
/// host's root, and the block driver and file system of its scratch disk, with the crc32c
/// crypto driver that ext4 asks the crypto API for at mount (so it is no `depends` of ext4).
pub(super) const GUEST_MODULES: [&str; 6] = [
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
];

/// A fetched kernel: its architecture, image and the modules the guest loads, in load order,
/// and the static busybox of its architecture that the guest's initramfs runs.
pub(super) struct KernelFiles {
    pub(super) arch: Arch,
    pub(super) package: String,
    pub(super) vmlinuz: PathBuf,
    pub(super) modules: Vec<PathBuf>,
    pub(super) busybox: PathBuf,
}

/// Fetches `kernel` for `arch` (or finds it in the cache) and unpacks what the guest needs.
pub(super) fn fetch(kernel: &Kernel, arch: Arch, cache: &Path) -> Result<KernelFiles> {
    let busybox = busybox(arch, cache)?;
    let dir = cache.join("kernels").join(arch.debian()).join(kernel.name);
    let chosen = dir.join("package");
    if let Ok(package) = std::fs::read_to_string(&chosen)
        && let Ok(files) = unpacked(package.trim(), &dir, arch, &busybox)
    {
        return Ok(files);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (package, apt) = find_package(kernel, arch, cache).with_context(|| {
        format!(
            "cannot find Debian's {} kernel for {}",
            kernel.name,
            arch.debian()
        )
    })?;
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
    let files = unpacked(&package, &dir, arch, &busybox)?;
    std::fs::write(&chosen, &package)?;
    Ok(files)
}

/// The static busybox the guest's initramfs runs: this machine's (`busybox-static`, which
/// `setup` installs) for its own architecture; for another, the same package of that
/// architecture, fetched through apt into the cache and unpacked.
fn busybox(arch: Arch, cache: &Path) -> Result<PathBuf> {
    if arch.is_host() {
        return Ok(PathBuf::from("/bin/busybox"));
    }
    let dir = cache.join("busybox").join(arch.debian());
    let busybox = dir.join("bin/busybox");
    if busybox.is_file() {
        return Ok(busybox);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let apt = Apt::for_suite(Suite::Machine, arch, cache)?;
    apt.refresh()?;
    let mut download = apt.command("apt-get");
    download
        .args(["download", "busybox-static"])
        .current_dir(&dir)
        .stdout(Stdio::null());
    run_step(&mut download).context("cannot download busybox-static")?;
    let deb = std::fs::read_dir(&dir)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb of busybox-static")?;
    extract(&deb, &dir, &["./bin/busybox".to_string()])?;
    std::fs::remove_file(&deb)?;
    ensure!(busybox.is_file(), "busybox-static has no /bin/busybox");
    Ok(busybox)
}

/// Finds the newest package of `kernel` for `arch`, trying its suites in order.
fn find_package(kernel: &Kernel, arch: Arch, cache: &Path) -> Result<(String, Apt)> {
    let mut tried = Vec::new();
    let matches = |package: &str| is_image(kernel, arch, package);
    for suite in kernel.suites {
        let apt = Apt::for_suite(*suite, arch, cache)?;
        let mut found = apt.packages(matches)?;
        if found.is_empty() && apt.refresh()? {
            found = apt.packages(matches)?;
        }
        if let Some(newest) = found.into_iter().max_by_key(|p| version_key(p)) {
            return Ok((newest, apt));
        }
        tried.push(apt.describe());
    }
    bail!("no package matches in {}", tried.join("; then "))
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
pub(super) fn module_name(path: &str) -> &str {
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

/// The files of an unpacked kernel of `arch`, if all there.
fn unpacked(package: &str, dir: &Path, arch: Arch, busybox: &Path) -> Result<KernelFiles> {
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
        arch,
        package: package.to_string(),
        vmlinuz: dir.join("boot").join(format!("vmlinuz-{release}")),
        modules,
        busybox: busybox.to_path_buf(),
    })
}

/// A module's contents, decompressed (busybox's insmod takes plain `.ko` files).
pub(super) fn module_bytes(path: &Path) -> Result<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_packages_are_told_apart_by_name() {
        let [k510, k61, k612] = &KERNELS;
        let amd64 = |kernel, package| is_image(kernel, Arch::X86_64, package);
        assert!(amd64(k510, "linux-image-5.10.0-46-amd64"));
        assert!(!amd64(k510, "linux-image-5.10.0-46-cloud-amd64"));
        assert!(!amd64(k510, "linux-image-5.10.0-46-amd64-dbg"));
        assert!(amd64(k61, "linux-image-6.1.0-57-amd64"));
        assert!(!amd64(k61, "linux-image-6.1.0-57-rt-amd64"));
        assert!(!amd64(k61, "linux-image-6.1.0-57-amd64-unsigned"));
        assert!(amd64(k612, "linux-image-6.12.115+deb12-amd64"));
        assert!(amd64(k612, "linux-image-6.12.12+bpo-amd64"));
        assert!(!amd64(k612, "linux-image-6.12.115+deb12-cloud-amd64"));
        assert!(!amd64(k612, "linux-image-6.12-amd64"));
        // The same series for arm64, and never the other architecture's.
        let arm64 = |kernel, package| is_image(kernel, Arch::Aarch64, package);
        assert!(arm64(k61, "linux-image-6.1.0-57-arm64"));
        assert!(!arm64(k61, "linux-image-6.1.0-57-amd64"));
        assert!(!amd64(k61, "linux-image-6.1.0-57-arm64"));
        assert!(!arm64(k61, "linux-image-6.1.0-57-arm64-unsigned"));
        assert!(arm64(k612, "linux-image-6.12.118+deb12-arm64"));
        assert!(!arm64(k612, "linux-image-6.12.118+deb12-cloud-arm64"));
        assert!(!arm64(k612, "linux-image-6.12.118+deb12-rt-arm64"));
        assert!(arm64(k510, "linux-image-5.10.0-46-arm64"));
        let newest = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64"]
            .into_iter()
            .max_by_key(|p| version_key(p));
        assert_eq!(newest, Some("linux-image-6.1.0-57-amd64"));
    }

    #[test]
    fn modules_come_after_what_they_depend_on() {
        let dep = "kernel/fs/9p/9p.ko.xz: kernel/fs/netfs/netfs.ko.xz kernel/net/9p/9pnet.ko.xz\n\
                   kernel/fs/netfs/netfs.ko.xz:\n\
                   kernel/net/9p/9pnet.ko.xz:\n\
                   kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n\
                   kernel/drivers/block/virtio_blk.ko.xz:\n\
                   kernel/crypto/crc32c_generic.ko.xz:\n\
                   kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz\n\
                   kernel/fs/jbd2/jbd2.ko.xz:\n\
                   kernel/fs/mbcache.ko.xz:\n";
        let builtin = "kernel/drivers/virtio/virtio_pci.ko\n";
        let order = resolve_modules(dep, builtin, &GUEST_MODULES).unwrap();
        assert_eq!(
            order,
            [
                "kernel/net/9p/9pnet.ko.xz",
                "kernel/net/9p/9pnet_virtio.ko.xz",
                "kernel/fs/netfs/netfs.ko.xz",
                "kernel/fs/9p/9p.ko.xz",
                "kernel/drivers/block/virtio_blk.ko.xz",
                "kernel/crypto/crc32c_generic.ko.xz",
                "kernel/fs/jbd2/jbd2.ko.xz",
                "kernel/fs/mbcache.ko.xz",
                "kernel/fs/ext4/ext4.ko.xz"
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
}
