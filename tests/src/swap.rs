//! Swap for the tests of what counts toward a limit: a real swap file, and targets whose
//! memory cgroup is too small for them, so that most of their pages go to swap.

use std::path::PathBuf;
use std::process::Command;

use crate::cgroup::{Cgroup, memory_hierarchy};
use crate::disk::disk_backed_dir;
use crate::{kib_field, unique_name};

/// A swap file in use (made on a disk-backed file system, `swapon`ed), turned off and removed
/// when dropped.
pub struct SwapFile(PathBuf);

impl SwapFile {
    /// Makes a swap file of `mib` MiB and turns it on.
    pub fn on(mib: usize) -> SwapFile {
        let path = disk_backed_dir().join(format!("mm-test-swap-{}", unique_name("s")));
        let run = |program: &str, args: &[&str]| {
            let output = Command::new(program).args(args).output().expect(program);
            assert!(
                output.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let file = path.to_str().unwrap().to_owned();
        let file = file.as_str();
        run(
            "dd",
            &[
                "if=/dev/zero",
                &format!("of={file}"),
                "bs=1M",
                &format!("count={mib}"),
            ],
        );
        run("chmod", &["600", file]);
        run("mkswap", &[file]);
        let swap = SwapFile(path);
        run("swapon", &[file]);
        swap
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.0).status();
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A memory cgroup holding at most `mib` MiB in memory: a process in it that grows past that
/// has the rest swapped out.
pub fn limited(mib: u64) -> Cgroup {
    let (root, file) = memory_hierarchy().expect("a memory cgroup controller");
    let cgroup = Cgroup::create(&root, &unique_name("mms-cg"));
    cgroup.set(file, &(mib << 20).to_string());
    cgroup
}

/// The swap a process has (`VmSwap`), in bytes.
pub fn swap_of(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    kib_field(&status, "VmSwap")
}
