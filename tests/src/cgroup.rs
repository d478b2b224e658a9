//! Cgroups made for tests, targets born inside them, and where the memory controller is.

use std::ffi::CString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Target;

/// A cgroup made for a test, removed (its processes moved back to the root first) when dropped.
pub struct Cgroup {
    root: PathBuf,
    dir: PathBuf,
}

impl Cgroup {
    /// A new cgroup `name` in the hierarchy mounted at `root`.
    pub fn create(root: &Path, name: &str) -> Cgroup {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Cgroup {
            root: root.to_path_buf(),
            dir,
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its path as /proc/PID/cgroup shows it.
    pub fn path(&self) -> String {
        format!("/{}", self.dir.strip_prefix(&self.root).unwrap().display())
    }

    /// Moves process `pid` into it.
    pub fn add(&self, pid: i32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// Writes `value` into its control file `file`.
    pub fn set(&self, file: &str, value: &str) {
        std::fs::write(self.dir.join(file), value).unwrap();
    }

    /// `/…/cgroup.procs`, for a child to move itself in before it runs its program.
    pub fn procs(&self) -> CString {
        CString::new(self.dir.join("cgroup.procs").to_str().unwrap()).unwrap()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Ok(pids) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in pids.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Starts a target that moves itself into `cgroup` before its program runs: it is born there,
/// as a service's or a container's processes are.
pub fn spawn_inside(name: &str, cgroup: &Cgroup) -> Target {
    let procs = cgroup.procs();
    Target::spawn_with(name, move |command| {
        // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                match written {
                    1 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
    })
}

/// Where the memory controller is: the v2 hierarchy when it has it, else a v1 memory
/// hierarchy (hybrid hosts, like this project's CI machine); the file that limits memory there.
pub fn memory_hierarchy() -> Option<(PathBuf, &'static str)> {
    let v2 = v2_mount()?;
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+memory");
        return Some((v2.to_path_buf(), "memory.max"));
    }
    let v1 = find_mount(|fstype, options| {
        fstype == "cgroup" && options.split(',').any(|o| o == "memory")
    })?;
    Some((v1, "memory.limit_in_bytes"))
}

/// A cgroup v1 freezer hierarchy: the freezer that holds a process it froze even after
/// SIGKILL, until thawed (cgroup v2's lets a killed process die). The one mounted (hybrid
/// systems) or, where none is, one this test mounts on a directory of its own and unmounts when
/// dropped: v2 has no freezer controller, so v1's can be mounted beside a v2-only hierarchy.
pub struct V1Freezer {
    root: PathBuf,
    /// Mounted by this test, on a directory it made: both undone when dropped.
    mounted: bool,
}

impl V1Freezer {
    /// The freezer hierarchy mounted on this system, or a new mount of one.
    pub fn find_or_mount() -> V1Freezer {
        let found = find_mount(|fstype, options| {
            fstype == "cgroup" && options.split(',').any(|o| o == "freezer")
        });
        if let Some(root) = found {
            return V1Freezer {
                root,
                mounted: false,
            };
        }
        let root = std::env::temp_dir().join(crate::unique_name("mm-freezer"));
        std::fs::create_dir(&root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
        let dir = CString::new(root.to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated strings; a cgroup v1 hierarchy with the freezer controller on a
        // directory this test made.
        let mounted = unsafe {
            libc::mount(
                c"mm-freezer".as_ptr(),
                dir.as_ptr(),
                c"cgroup".as_ptr(),
                0,
                c"freezer".as_ptr().cast(),
            )
        };
        if mounted != 0 {
            let error = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&root);
            panic!("cannot mount a cgroup v1 freezer: {error}");
        }
        V1Freezer {
            root,
            mounted: true,
        }
    }

    /// Where the hierarchy is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for V1Freezer {
    fn drop(&mut self) {
        if self.mounted {
            let dir = CString::new(self.root.to_str().unwrap()).unwrap();
            // SAFETY: unmounting what `find_or_mount` mounted.
            unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
            let _ = std::fs::remove_dir(&self.root);
        }
    }
}

/// Where the cgroup v2 hierarchy is mounted (found once).
pub fn v2_mount() -> Option<&'static Path> {
    static V2: OnceLock<Option<PathBuf>> = OnceLock::new();
    V2.get_or_init(|| find_mount(|fstype, _| fstype == "cgroup2"))
        .as_deref()
}

/// The mount point of the first mount in `/proc/self/mountinfo` that `wanted(fstype, super
/// options)` accepts.
fn find_mount(wanted: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // `id parent major:minor root mountpoint options [optional...] - fstype source super`
        let (before, after) = line.split_once(" - ")?;
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let options = after.nth(1).unwrap_or_default();
        let mount_point = before.split(' ').nth(4)?;
        wanted(fstype, options).then(|| PathBuf::from(mount_point))
    })
}
