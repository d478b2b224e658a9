//! A guest: its initramfs (busybox, `/init`, the plan, the modules) and qemu, run until it
//! powers off or its wall time is spent.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::kernels::{Kernel, KernelFiles, module_bytes, module_name};
use crate::arch::Arch;
use crate::run_step;

/// The longest one guest may run: its boot, and a share of time per planned test (a test
/// under TCG takes from a second to a few minutes on a loaded host). A hung test alone is
/// stopped sooner, after [`TEST_WALL_TIME`]; this bounds a guest that hangs outside one.
pub(super) fn guest_wall_time(tests: usize) -> Duration {
    Duration::from_secs(10 * 60 + 4 * 60 * tests as u64)
}
/// The longest one test may run in a guest before it is stopped and counted as failed.
pub(super) const TEST_WALL_TIME: Duration = Duration::from_secs(10 * 60);
/// The guest's size: 2 vCPUs (as the host), and room for the tests' processes.
pub(super) const GUEST_CPUS: usize = 2;
const GUEST_MEMORY: &str = "2G";
/// The scratch disk's size: room for a test's swap file and page cache (a few hundred MiB
/// each), in a sparse file that takes on the host only what the guest wrote.
const SCRATCH_DISK_BYTES: u64 = 2 << 30;

/// What runs the plan once the host's root is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Init {
    /// A shell, chrooted into the host's root; the guest powers off when the plan ends.
    Shell,
    /// The host's systemd as PID 1 (see [`SYSTEMD`]), which runs only the plan's service.
    Systemd,
    /// A shell on the initramfs itself, for a guest of another architecture, which cannot run
    /// the host's programs (see [`INITRAMFS`]); the guest powers off when the plan ends.
    Initramfs,
}

/// The guest's `/init`, after a line setting `root` (where the plan's root is: `/host`, the
/// host's, or empty, the initramfs): mount what the tests need there, then run `/plan.sh` as
/// `init` says (the last lines, [`SHELL`], [`SYSTEMD`] or [`INITRAMFS`]). `/var/tmp` is the
/// scratch disk (see [`scratch_disk`]), as on a booted system a disk-backed directory where the
/// tests put what a tmpfs cannot hold: a swap file, page cache the kernel can reclaim.
const INIT: &str = r#"/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /modules/order); do
    insmod "/modules/$module" || echo "@@ fatal insmod $module failed"
done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /host \
    || { echo "@@ fatal cannot mount the host's root over 9p"; poweroff -f; }
if [ -n "$root" ]; then
    mount -t proc proc $root/proc
    mount -t sysfs sys $root/sys
    mount -t devtmpfs dev $root/dev
fi
mkdir -p $root/tmp $root/var/tmp $root/run
mount -t tmpfs -o mode=1777 tmp $root/tmp
mount -t ext4 /dev/vda $root/var/tmp \
    || { echo "@@ fatal cannot mount the scratch disk on /var/tmp"; poweroff -f; }
chmod 1777 $root/var/tmp
mount -t tmpfs run $root/run
mount -t tracefs tracefs $root/sys/kernel/tracing
mount -t bpf bpf $root/sys/fs/bpf
mount -t cgroup2 cgroup2 $root/sys/fs/cgroup
ip link set lo up
cp /plan.sh $root/tmp/plan.sh
echo "@@ booted $(uname -r) $(uname -m)"
"#;

/// The end of [`INIT`] for [`Init::Shell`]. The host's root becomes the mount namespace's
/// root, as in a booted system or a container (whose runtime pivots into its root): a bare
/// chroot would leave /host in every path the kernel prints for a mount seen from another
/// namespace (/proc/PID/maps). This shell stays on the initramfs, where it finds its poweroff.
const SHELL: &str = r#"cd /host && mount --move . / && chroot . /bin/sh /tmp/plan.sh
echo "@@ done"
poweroff -f
"#;

/// The end of [`INIT`] for [`Init::Initramfs`]: the host's programs are of another
/// architecture, so the plan runs here, on the initramfs's busybox (its `sh`, `mount`,
/// `timeout`), with of the host's root only what the tests need, at the same paths: its `/etc`
/// (users and groups) and the workspace (`@WORKSPACE@`), where the tests' static binaries of
/// the guest's architecture are.
const INITRAMFS: &str = r#"mkdir -p /etc '@WORKSPACE@'
mount --bind /host/etc /etc
mount --bind '/host@WORKSPACE@' '@WORKSPACE@'
cd /tmp && sh /tmp/plan.sh
echo "@@ done"
poweroff -f
"#;

/// The end of [`INIT`] for [`Init::Systemd`]: the host's own systemd becomes PID 1 in its
/// root and starts [`TARGET`] alone (not the host's default target, so none of its services),
/// whose service runs the plan and powers the guest off. systemd sets up the services it
/// starts in directories it must be able to write: `StateDirectory=` in /var/lib, `PrivateTmp=`
/// in /var/tmp (the scratch disk already), the journal in /var/log; on the read-only root the
/// other two get a tmpfs each. The units go in /run/systemd/system, the runtime units'
/// directory, before systemd reads it.
const SYSTEMD: &str = r#"for dir in lib log; do
    mount -t tmpfs -o mode=0755 var-$dir /host/var/$dir
done
mkdir -p /host/run/systemd/system
cp /units/* /host/run/systemd/system/
cd /host && mount --move . / && exec chroot . /lib/systemd/systemd --unit=mm-vmtest.target
"#;

/// The target [`SYSTEMD`] starts: its service only.
const TARGET: &str = "[Unit]
Description=vmtest: the plan alone
Requires=mm-vmtest.service
After=mm-vmtest.service
AllowIsolate=yes
";

/// The plan as a service of [`TARGET`]: on the console, with no time limit of its own (the
/// guest's wall time bounds it, and each test its `timeout`), powering the guest off when it
/// ends, passed or failed. It needs nothing started before it; what it starts pulls in what
/// that needs (a unit with default dependencies: `sysinit.target`, the journal).
const PLAN_SERVICE: &str = r#"[Unit]
Description=vmtest: the plan
DefaultDependencies=no
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/bin/sh -c '/bin/sh /tmp/plan.sh; echo "@@ done"'
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
"#;

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

/// The initramfs for `kernel`: busybox, `/init` (ending as `init` says), the plan, the
/// modules, and for systemd its units.
fn initramfs(files: &KernelFiles, plan: &str, init: Init) -> Result<Vec<u8>> {
    let busybox = std::fs::read(&files.busybox)
        .with_context(|| format!("no {} (busybox-static)", files.busybox.display()))?;
    let script = match init {
        Init::Shell => format!("#!/bin/busybox sh\nroot=/host\n{INIT}{SHELL}"),
        Init::Systemd => format!("#!/bin/busybox sh\nroot=/host\n{INIT}{SYSTEMD}"),
        Init::Initramfs => {
            let workspace = crate::workspace();
            let workspace = workspace
                .to_str()
                .context("a workspace path that is UTF-8")?;
            anyhow::ensure!(
                !workspace.contains('\''),
                "the guests cannot bind a workspace whose path holds a quote: {workspace}"
            );
            let tail = INITRAMFS.replace("@WORKSPACE@", workspace);
            format!("#!/bin/busybox sh\nroot=\n{INIT}{tail}")
        }
    };
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
        CpioEntry::file("init", 0o755, script.into_bytes()),
        CpioEntry::file("plan.sh", 0o644, plan.as_bytes().to_vec()),
    ];
    if init == Init::Systemd {
        entries.extend([
            CpioEntry::dir("units"),
            CpioEntry::file("units/mm-vmtest.target", 0o644, TARGET.into()),
            CpioEntry::file("units/mm-vmtest.service", 0o644, PLAN_SERVICE.into()),
        ]);
    }
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

/// Makes a fresh scratch disk at `path` for one guest: a sparse raw image of
/// [`SCRATCH_DISK_BYTES`] with an empty file system, which the guest mounts on `/var/tmp`.
/// Its layout is ext2's (no journal, no checksums: nothing a scratch disk needs, and no
/// feature that a newer `mke2fs` turns on by default and an older kernel cannot mount read-write);
/// the guest mounts it with the ext4 driver, which Debian's kernels use for ext2 too.
fn scratch_disk(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    std::fs::File::create(path)
        .and_then(|file| file.set_len(SCRATCH_DISK_BYTES))
        .with_context(|| format!("cannot make {}", path.display()))?;
    let mut mkfs = Command::new("mke2fs");
    mkfs.args(["-q", "-F", "-t", "ext2", "-m", "0"])
        .arg(path)
        .stdout(Stdio::null());
    run_step(&mut mkfs).context("cannot make the guest's scratch disk (mke2fs, from e2fsprogs)")
}

/// What a guest printed, and how it ended.
pub(super) struct Guest {
    pub(super) console: String,
    pub(super) timed_out: bool,
    pub(super) wall: Duration,
}

/// Boots `kernel` with `cpus` vCPUs to run `plan` from a shell, until it powers off or its
/// wall time is spent; `progress` picks the console lines worth showing as they come.
pub(super) fn run_guest(
    kernel: &Kernel,
    files: &KernelFiles,
    plan: &str,
    cpus: usize,
    out: &Path,
    wall: Duration,
    progress: impl Fn(&str) -> Option<String>,
) -> Result<Guest> {
    let guest = GuestPlan {
        plan,
        init: Init::Shell,
    };
    run_guest_with(kernel, files, &guest, cpus, out, wall, progress)
}

/// A plan, and what runs it.
pub(super) struct GuestPlan<'a> {
    pub(super) plan: &'a str,
    pub(super) init: Init,
}

/// [`run_guest`], with the plan run as `guest.init` says.
pub(super) fn run_guest_with(
    kernel: &Kernel,
    files: &KernelFiles,
    guest: &GuestPlan,
    cpus: usize,
    out: &Path,
    wall: Duration,
    progress: impl Fn(&str) -> Option<String>,
) -> Result<Guest> {
    // The files of another architecture's guest are named for it too: both can be in `out`.
    let label = match files.arch.is_host() {
        true => kernel.name.to_string(),
        false => format!("{}-{}", kernel.name, files.arch.debian()),
    };
    let initrd = out.join(format!("initramfs-{label}.cpio"));
    std::fs::write(&initrd, initramfs(files, guest.plan, guest.init)?)?;
    let disk = out.join(format!("scratch-{label}.img"));
    scratch_disk(&disk)?;
    let console_path = out.join(format!("console-{label}.log"));
    let console = std::fs::File::create(&console_path)?;
    let machine = Machine::of(files.arch);
    let mut qemu = Command::new(machine.qemu);
    qemu.args(["-accel", "tcg,thread=multi"])
        .args(machine.args)
        .args(["-smp", &cpus.to_string(), "-m", GUEST_MEMORY])
        .args(["-nodefaults", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&files.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        // psi=1: pressure stall information on, whatever the kernel's build says
        // (CONFIG_PSI_DEFAULT_DISABLED); the pressure triggers' tests need it.
        .arg("-append")
        .arg(format!(
            "console={} panic=-1 softlockup_panic=1 random.trust_cpu=on mitigations=off quiet loglevel=4 psi=1 rdinit=/init",
            machine.console
        ))
        .args([
            "-fsdev",
            "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device",
            "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        ])
        // The scratch disk, thrown away after, so never flushed (`cache=unsafe`); a comma in
        // its path is doubled, as qemu's option syntax asks.
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=scratch,cache=unsafe",
            disk.to_string_lossy().replace(',', ",,")
        ))
        .args(["-device", "virtio-blk-pci,drive=scratch"])
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
    let mut child = qemu
        .spawn()
        .with_context(|| format!("cannot start {}", machine.qemu))?;
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
        if started.elapsed() > wall {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = std::fs::remove_file(&disk);
    log.seek(SeekFrom::Start(0))?;
    let mut console = String::new();
    log.read_to_string(&mut console)?;
    Ok(Guest {
        console,
        timed_out,
        wall: started.elapsed(),
    })
}

/// How qemu emulates a guest of an architecture.
struct Machine {
    qemu: &'static str,
    /// The machine and CPU.
    args: &'static [&'static str],
    /// The serial console's device in the guest.
    console: &'static str,
}

impl Machine {
    fn of(arch: Arch) -> Machine {
        match arch {
            Arch::X86_64 => Machine {
                qemu: "qemu-system-x86_64",
                args: &["-cpu", "max"],
                console: "ttyS0",
            },
            // `virt` has PCI, so the same virtio devices serve. Pointer authentication with
            // the architecture's own cipher is the slowest part of emulating `max` (every
            // function's entry and return in the kernel); qemu's cheaper cipher keeps the
            // feature at a fraction of the cost.
            Arch::Aarch64 => Machine {
                qemu: "qemu-system-aarch64",
                args: &["-machine", "virt", "-cpu", "max,pauth-impdef=on"],
                console: "ttyAMA0",
            },
        }
    }
}

/// The last `n` lines of `text`.
pub(super) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
