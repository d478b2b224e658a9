//! Where tests put files that must be on a disk: a swap file (swap on a tmpfs is refused) and
//! page cache the kernel can reclaim (a tmpfs file's pages are shared memory, which without swap
//! it cannot).

use std::path::Path;

/// A directory on a disk-backed file system: `/var/tmp`, the temporary directory that outlives
/// a reboot and so is on a disk wherever `/tmp` is a tmpfs (as on many distributions, and in
/// `cargo xtask vmtest`'s guests, which mount their scratch disk on `/var/tmp`).
pub fn disk_backed_dir() -> &'static Path {
    Path::new("/var/tmp")
}
