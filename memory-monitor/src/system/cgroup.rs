//! cgroups: which cgroup a process is in, whether that is inside a rule's cgroup, and the
//! memory limit its cgroup puts on it (for limits given as a share of it).
//!
//! Paths are paths in the cgroup hierarchy as it is mounted (`/system.slice/nginx.service`,
//! under `/sys/fs/cgroup`): the host's paths wherever the host's hierarchy is mounted.
//! `/proc/PID/cgroup` prints paths relative to the reader's cgroup namespace, which for a
//! monitor in a container (a Kubernetes pod on cgroup v2) is the container's own cgroup: other
//! pods' processes read as `/../../kubepods-…`. Such paths are put back in the mount's terms
//! (see [`Frame`]), so a rule names a cgroup the same way wherever the monitor runs. On hybrid
//! hosts, where the memory controller still sits in a v1 hierarchy, its
//! `memory.limit_in_bytes` is used for limits.

use std::ffi::CStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::io::Errno;

use crate::system::procfs::ProcRoot;

/// A cgroup path in a hierarchy, normalised (`/a/b`; the root is `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath(String);

/// Why a cgroup argument cannot name a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupError {
    /// Empty, or with `.` / `..` components.
    #[error("'{0}' is not a cgroup path (write it like /system.slice/nginx.service)")]
    Malformed(String),
    /// A directory of a cgroup file system other than the v2 hierarchy (a v1 controller's, on
    /// a hybrid host).
    #[error("'{0}' is not in the cgroup v2 hierarchy, which is mounted at {1}")]
    OtherHierarchy(String, String),
    /// The host has no cgroup v2 hierarchy mounted.
    #[error(
        "no cgroup v2 hierarchy is mounted (looked for a cgroup2 mount in /proc/self/mountinfo)"
    )]
    NoHierarchy,
}

impl CgroupPath {
    /// Parses a cgroup given as a path in the hierarchy (`/system.slice/x.service`, leading
    /// slash optional) or as its directory under the cgroup2 mount (`/sys/fs/cgroup/...`).
    pub fn parse(text: &str) -> Result<CgroupPath, CgroupError> {
        let malformed = || CgroupError::Malformed(text.to_string());
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(malformed());
        }
        let mount = v2_mount();
        let relative = match mount.and_then(|mount| Path::new(trimmed).strip_prefix(mount).ok()) {
            Some(rest) => rest.to_string_lossy().into_owned(),
            // Under the usual place of cgroup file systems but not in the v2 mount.
            None if Path::new(trimmed).starts_with("/sys/fs/cgroup") => {
                return Err(CgroupError::OtherHierarchy(
                    text.to_string(),
                    mount.map_or_else(|| "nowhere".to_string(), |m| m.display().to_string()),
                ));
            }
            None => trimmed.to_string(),
        };
        let mut path = String::new();
        for part in relative.split('/').filter(|part| !part.is_empty()) {
            if part == "." || part == ".." {
                return Err(malformed());
            }
            path.push('/');
            path.push_str(part);
        }
        if path.is_empty() {
            path.push('/');
        }
        Ok(CgroupPath(path))
    }

    /// The path, `/a/b`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a process in the cgroup at `path` (a path in the hierarchy, as `cgroup_of`
    /// gives it) is in this cgroup or one below it.
    pub fn contains(&self, path: &[u8]) -> bool {
        let own = self.0.as_bytes();
        if own == b"/" {
            return path.starts_with(b"/");
        }
        path.strip_prefix(own)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
    }

    /// Its directory in the cgroup2 mount.
    pub fn directory(&self) -> Result<PathBuf, CgroupError> {
        let mount = v2_mount().ok_or(CgroupError::NoHierarchy)?;
        Ok(mount.join(self.0.trim_start_matches('/')))
    }

    /// Its parent's path and its own name; `None` for the root.
    pub fn split_last(&self) -> Option<(CgroupPath, &str)> {
        let (parent, name) = self.0.rsplit_once('/')?;
        (!name.is_empty()).then(|| {
            let parent = if parent.is_empty() { "/" } else { parent };
            (CgroupPath(parent.to_string()), name)
        })
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the paths in `/proc/PID/cgroup`, relative to the root of the monitor's cgroup
/// namespace, lie in a mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The mount shows the namespace's root or, with `root`, a cgroup below it: a path under
    /// `root` is that path without it. (A monitor in the host's namespace: `root` is empty and
    /// every path is already the mount's.)
    Inside {
        /// The mount's root below the namespace's, by component.
        root: Vec<String>,
    },
    /// The mount shows a cgroup above the namespace's root (the host's hierarchy mounted in a
    /// container); `names` lead from it down to the namespace's root.
    Above {
        /// From the mount's root down to the namespace's root.
        names: Vec<String>,
    },
    /// The mount shows a cgroup above the namespace's root that the monitor could not find
    /// itself in: no path can be placed.
    Unknown,
}

impl Frame {
    /// `path` (as `/proc/PID/cgroup` shows it) as a path under the mount, written into `buf`
    /// unless it already is one; `None` when the mount does not show that cgroup.
    pub fn place<'a>(&self, path: &'a [u8], buf: &'a mut [u8]) -> Option<&'a [u8]> {
        let mut parts = path
            .split(|&b| b == b'/')
            .filter(|part| !part.is_empty())
            .peekable();
        let mut up = 0;
        while parts.next_if(|part| *part == b"..").is_some() {
            up += 1;
        }
        let mut out = PathWriter { buf, len: 0 };
        match self {
            Frame::Inside { root } if root.is_empty() && up == 0 => return Some(path),
            Frame::Inside { root } => {
                if up > 0 {
                    return None;
                }
                for name in root {
                    parts.next_if(|part| *part == name.as_bytes())?;
                }
            }
            Frame::Above { names } => {
                let kept = names.len().checked_sub(up)?;
                for name in &names[..kept] {
                    out.push(name.as_bytes())?;
                }
            }
            Frame::Unknown => return None,
        }
        for part in parts {
            out.push(part)?;
        }
        Some(out.finish())
    }

    /// Works out the frame of a hierarchy mounted at `mount` whose root, as mountinfo shows it,
    /// is `root` (relative to the namespace's root, like `/proc/PID/cgroup` paths), for process
    /// `pid` in the cgroup `own` (its own `/proc/PID/cgroup` path).
    fn find(mount: &Path, root: &str, own: &str, pid: u32) -> Frame {
        let parts: Vec<&str> = root.split('/').filter(|p| !p.is_empty()).collect();
        let up = parts.iter().take_while(|part| **part == "..").count();
        if up == 0 {
            return Frame::Inside {
                root: parts.iter().map(|part| part.to_string()).collect(),
            };
        }
        if up < parts.len() {
            return Frame::Unknown;
        }
        // The namespace's root is the cgroup `up` levels below the mount's root in which
        // this process's own cgroup (`own`, below the namespace's root) lists it.
        let own = own.trim_start_matches('/');
        let lists_pid = |dir: &Path| {
            std::fs::read_to_string(dir.join(own).join("cgroup.procs"))
                .is_ok_and(|procs| procs.lines().any(|line| line.trim() == pid.to_string()))
        };
        find_at_depth(mount, up, &lists_pid).map_or(Frame::Unknown, |names| Frame::Above { names })
    }
}

/// The first directory `depth` levels below `dir` that `wanted` accepts, as names from `dir`.
fn find_at_depth(dir: &Path, depth: usize, wanted: &dyn Fn(&Path) -> bool) -> Option<Vec<String>> {
    if depth == 0 {
        return wanted(dir).then(Vec::new);
    }
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Some(mut names) = find_at_depth(&entry.path(), depth - 1, wanted) {
            names.insert(0, entry.file_name().to_string_lossy().into_owned());
            return Some(names);
        }
    }
    None
}

/// Writes a path component by component into a caller's buffer.
struct PathWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> PathWriter<'a> {
    fn push(&mut self, part: &[u8]) -> Option<()> {
        let end = self.len + 1 + part.len();
        let slot = self.buf.get_mut(self.len..end)?;
        slot[0] = b'/';
        slot[1..].copy_from_slice(part);
        self.len = end;
        Some(())
    }

    fn finish(self) -> &'a [u8] {
        match self.len {
            0 => b"/",
            len => &self.buf[..len],
        }
    }
}

/// A mounted cgroup hierarchy: where, and how `/proc/PID/cgroup` paths lie in it.
#[derive(Debug)]
pub(crate) struct Hierarchy {
    mount: PathBuf,
    frame: Frame,
}

impl Hierarchy {
    /// Where it is mounted.
    pub(crate) fn mount(&self) -> &Path {
        &self.mount
    }

    /// Finds the first mount that `wanted(fstype, super options)` accepts and places it, for
    /// this process, whose `/proc/self/cgroup` line for the hierarchy `own_line` picks.
    fn find(
        wanted: impl Fn(&str, &str) -> bool,
        own_line: impl Fn(&[u8]) -> Option<&[u8]>,
    ) -> Option<Hierarchy> {
        let (mount, root) = find_mount(wanted)?;
        let own_text = std::fs::read("/proc/self/cgroup").unwrap_or_default();
        let own = own_line(&own_text)
            .map_or_else(String::new, |p| String::from_utf8_lossy(p).into_owned());
        let frame = Frame::find(&mount, &root, &own, std::process::id());
        if frame == Frame::Unknown {
            tracing::warn!(
                event = "cgroup_namespace",
                "the cgroups mounted at {} are above this monitor's cgroup namespace, which it cannot find in them: cgroup rules and limits cannot be resolved",
                mount.display()
            );
        }
        Some(Hierarchy { mount, frame })
    }
}

/// Finds the hierarchies now (at start-up: finding them allocates, and is done once).
pub(crate) fn find_hierarchies() {
    let _ = (v2(), v1_memory());
}

/// The cgroup v2 hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts),
/// found once.
pub(crate) fn v2() -> Option<&'static Hierarchy> {
    static V2: OnceLock<Option<Hierarchy>> = OnceLock::new();
    V2.get_or_init(|| Hierarchy::find(|fstype, _| fstype == "cgroup2", v2_path_of))
        .as_ref()
}

/// Where the cgroup v2 hierarchy is mounted.
pub(crate) fn v2_mount() -> Option<&'static Path> {
    v2().map(Hierarchy::mount)
}

/// A v1 hierarchy with the memory controller, if any (hybrid hosts), found once.
fn v1_memory() -> Option<&'static Hierarchy> {
    static V1: OnceLock<Option<Hierarchy>> = OnceLock::new();
    V1.get_or_init(|| {
        Hierarchy::find(
            |fstype, options| {
                fstype == "cgroup" && options.split(',').any(|option| option == "memory")
            },
            v1_memory_path_of,
        )
    })
    .as_ref()
}

/// The mount point and root of the first mount in `/proc/self/mountinfo` that
/// `wanted(fstype, super options)` accepts.
fn find_mount(wanted: impl Fn(&str, &str) -> bool) -> Option<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        // `id parent major:minor root mountpoint options [optional...] - fstype source super`
        let (before, after) = line.split_once(" - ")?;
        let mut fields = before.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let options = after.nth(1).unwrap_or_default();
        wanted(fstype, options).then(|| {
            (
                PathBuf::from(unescape_mount_path(mount_point)),
                unescape_mount_path(root),
            )
        })
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v2 path in a `/proc/PID/cgroup` text (the `0::/path` line), as the reader's
/// namespace shows it.
pub fn v2_path_of(text: &[u8]) -> Option<&[u8]> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"0::"))
}

/// The memory cgroup in a `/proc/PID/cgroup` text, as the reader's namespace shows it: the
/// v1 memory hierarchy's path where there is one (hybrid hosts keep the memory controller
/// there), else the v2 path. A process already `exiting` shows `/` in every v1 hierarchy (the
/// kernel's choice; v2 keeps its path), so there it has none.
pub(crate) fn memory_path_of(text: &[u8], exiting: bool) -> Option<&[u8]> {
    match v1_memory_path_of(text) {
        Some(_) if exiting => None,
        Some(path) => Some(path),
        None => v2_path_of(text),
    }
}

/// The path in the v1 memory hierarchy in a `/proc/PID/cgroup` text (`N:memory:/path`).
fn v1_memory_path_of(text: &[u8]) -> Option<&[u8]> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let mut parts = line.splitn(3, |&b| b == b':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(|&b| b == b',')
            .any(|c| c == b"memory")
            .then_some(path)
    })
}

/// The v2 cgroup of a process whose `/proc/PID/cgroup` reads `text`, as a path in the
/// mounted hierarchy (written into `buf` when it has to be placed); `None` when there is none
/// or the mount does not show it.
pub(crate) fn cgroup_of<'a>(text: &'a [u8], buf: &'a mut [u8]) -> Option<&'a [u8]> {
    v2()?.frame.place(v2_path_of(text)?, buf)
}

/// Whether process `pid`'s (v2) cgroup is `cgroup` or below it, as `/proc/PID/cgroup` says
/// now. Read by PID: it is that process's answer only while the process lives. Allocates
/// nothing.
pub(crate) fn holds(cgroup: &CgroupPath, proc: &ProcRoot, pid: i32) -> bool {
    let mut text = [0u8; 4096];
    let mut placed = [0u8; 4096];
    let Ok(text) = proc.read_file(pid, "cgroup", &mut text) else {
        return false;
    };
    cgroup_of(text, &mut placed).is_some_and(|path| cgroup.contains(path))
}

/// Kills every process of `cgroup` and those below it at once, the kernel's way: `1` written
/// to its `cgroup.kill` (Linux 5.14+). The kernel takes them all in one go, those forking
/// meanwhile included. `Err(NOENT)` where the file does not exist (an older kernel, or the
/// root cgroup): the caller kills them one by one. The file's name is built on the stack.
pub(crate) fn kill(cgroup: &CgroupPath) -> Result<(), Errno> {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::ffi::OsStrExt as _;
    let mount = v2_mount().ok_or(Errno::NOENT)?.as_os_str().as_bytes();
    let mut name = [0u8; 4096];
    let parts: [&[u8]; 4] = [mount, cgroup.as_str().as_bytes(), b"/cgroup.kill", b"\0"];
    let mut at = 0;
    for part in parts {
        name.get_mut(at..at + part.len())
            .ok_or(Errno::NAMETOOLONG)?
            .copy_from_slice(part);
        at += part.len();
    }
    let file = CStr::from_bytes_with_nul(&name[..at]).map_err(|_| Errno::INVAL)?;
    let fd = rustix::fs::open(file, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::io::write(&fd, b"1").map(|_| ())
}

/// The tightest memory limit on a process whose `/proc/PID/cgroup` reads `text`: the
/// smallest `memory.max` from its cgroup up to the root (v2), or on hybrid hosts the v1
/// `memory.limit_in_bytes`. `None`: no cgroup limits it. Each limit file read is shown to
/// `read` (to follow its changes). Allocates nothing.
pub(crate) fn memory_limit(text: &[u8], mut read: impl FnMut(&CStr)) -> Option<u64> {
    let mut buf = [0u8; 4096];
    let v2 = v2().and_then(|v2| {
        let path = v2.frame.place(v2_path_of(text)?, &mut buf)?;
        tightest(&v2.mount, path, "memory.max", &mut read)
    });
    v2.or_else(|| {
        let mut buf = [0u8; 4096];
        let v1 = v1_memory()?;
        let path = v1.frame.place(v1_memory_path_of(text)?, &mut buf)?;
        tightest(&v1.mount, path, "memory.limit_in_bytes", &mut read)
    })
}

/// Where the kernel counts the OOM kills of the memory cgroup of a process whose
/// `/proc/PID/cgroup` reads `text`, written into `name` (NUL-terminated), and that cgroup's
/// path as `text` has it: `memory.oom_control` in the v1 memory hierarchy where the memory
/// controller is there (hybrid hosts), else `memory.events.local` in v2. `None` when the
/// mount does not show it. (The v2 root has no such file: opening it fails.) Allocates
/// nothing.
pub(crate) fn oom_count_file<'a, 'n>(
    text: &'a [u8],
    name: &'n mut [u8],
) -> Option<(&'n CStr, &'a [u8])> {
    use std::os::unix::ffi::OsStrExt as _;
    let (hierarchy, seen, file) = match v1_memory() {
        Some(v1) => (v1, v1_memory_path_of(text)?, "memory.oom_control"),
        None => (v2()?, v2_path_of(text)?, "memory.events.local"),
    };
    let mut buf = [0u8; 4096];
    let path = hierarchy.frame.place(seen, &mut buf)?;
    if path.split(|&b| b == b'/').any(|part| part == b"..") {
        return None;
    }
    let dir = path.strip_suffix(b"/").unwrap_or(path);
    let mount = hierarchy.mount.as_os_str().as_bytes();
    let parts: [&[u8]; 5] = [mount, dir, b"/", file.as_bytes(), b"\0"];
    let mut at = 0;
    for part in parts {
        name.get_mut(at..at + part.len())?.copy_from_slice(part);
        at += part.len();
    }
    Some((CStr::from_bytes_with_nul(&name[..at]).ok()?, seen))
}

/// The smallest limit in `file` from `mount`/`path` up to `mount`, each file's path built
/// on the stack.
fn tightest(mount: &Path, path: &[u8], file: &str, read: &mut dyn FnMut(&CStr)) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    if path.split(|&b| b == b'/').any(|part| part == b"..") {
        return None;
    }
    let mount = mount.as_os_str().as_bytes();
    let mut dir = path.strip_suffix(b"/").unwrap_or(path);
    let mut tightest: Option<u64> = None;
    loop {
        let mut name = [0u8; 4096];
        let parts: [&[u8]; 5] = [mount, dir, b"/", file.as_bytes(), b"\0"];
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let mut at = 0;
        for part in parts {
            name.get_mut(at..at + part.len())?.copy_from_slice(part);
            at += part.len();
        }
        let limit_file = CStr::from_bytes_with_nul(&name[..len]).ok()?;
        let mut text = [0u8; 64];
        if let Some(value) = read_small(limit_file, &mut text) {
            read(limit_file);
            if let Some(limit) = std::str::from_utf8(value).ok().and_then(parse_limit) {
                tightest = Some(tightest.map_or(limit, |t| t.min(limit)));
            }
        }
        match dir.iter().rposition(|&b| b == b'/') {
            Some(cut) => dir = &dir[..cut],
            None => break,
        }
    }
    tightest
}

/// Reads a small file into `buf`; `None` if it cannot be read.
fn read_small<'b>(file: &CStr, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let len = rustix::io::read(&fd, &mut *buf).ok()?;
    Some(&buf[..len])
}

/// A limit file's value: a number of bytes, or none (`max`; v1 writes "unlimited" as a number
/// near `i64::MAX` rounded to pages).
fn parse_limit(text: &str) -> Option<u64> {
    const UNLIMITED_V1: u64 = 1 << 62;
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes < UNLIMITED_V1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> CgroupPath {
        CgroupPath::parse(text).unwrap()
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(
            path("/system.slice/x.service/").as_str(),
            "/system.slice/x.service"
        );
        assert_eq!(
            path("system.slice//x.service").as_str(),
            "/system.slice/x.service"
        );
        assert_eq!(path("/").as_str(), "/");
        if let Some(mount) = v2_mount() {
            let under = format!("{}/a/b", mount.display());
            assert_eq!(path(&under).as_str(), "/a/b");
            if mount != Path::new("/sys/fs/cgroup") {
                // A hybrid host: /sys/fs/cgroup/memory/... is a v1 hierarchy's.
                let v1 = CgroupPath::parse("/sys/fs/cgroup/memory/a").unwrap_err();
                assert!(
                    v1.to_string().contains("not in the cgroup v2 hierarchy"),
                    "{v1}"
                );
            }
        }
        assert!(CgroupPath::parse(" ").is_err());
        assert!(CgroupPath::parse("/a/../b").is_err());
        let (deep, shallow) = (path("/a/b"), path("/a"));
        let (parent, name) = deep.split_last().unwrap();
        assert_eq!((parent.as_str(), name), ("/a", "b"));
        let (parent, name) = shallow.split_last().unwrap();
        assert_eq!((parent.as_str(), name), ("/", "a"));
        assert!(path("/").split_last().is_none());
    }

    #[test]
    fn a_cgroup_contains_itself_and_what_is_below_it() {
        let service = path("/system.slice/web.service");
        assert!(service.contains(b"/system.slice/web.service"));
        assert!(service.contains(b"/system.slice/web.service/worker"));
        assert!(!service.contains(b"/system.slice/web.service2"));
        assert!(!service.contains(b"/system.slice"));
        assert!(path("/").contains(b"/anything"));
    }

    #[test]
    fn proc_cgroup_lines() {
        let hybrid = b"9:name=systemd:/\n4:memory:/box/a\n3:cpu,cpuacct:/\n0::/box/a\n";
        assert_eq!(v2_path_of(hybrid), Some(&b"/box/a"[..]));
        assert_eq!(v1_memory_path_of(hybrid), Some(&b"/box/a"[..]));
        assert_eq!(v1_memory_path_of(b"0::/x\n"), None);
        assert_eq!(v2_path_of(b"4:memory:/x\n"), None);
    }

    fn place(frame: &Frame, path: &str) -> Option<String> {
        let mut buf = [0u8; 64];
        frame
            .place(path.as_bytes(), &mut buf)
            .map(|placed| String::from_utf8(placed.to_vec()).unwrap())
    }

    fn names(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|part| part.to_string()).collect()
    }

    #[test]
    fn paths_relative_to_a_cgroup_namespace_are_placed_in_the_mount() {
        // The host's namespace: paths are the mount's as they are.
        let host = Frame::Inside { root: Vec::new() };
        assert_eq!(place(&host, "/a/b").as_deref(), Some("/a/b"));
        assert_eq!(place(&host, "/").as_deref(), Some("/"));
        assert_eq!(place(&host, "/../a"), None);
        // A pod at /kubepods/pod1/c1, with the host's hierarchy mounted.
        let pod = Frame::Above {
            names: names(&["kubepods", "pod1", "c1"]),
        };
        assert_eq!(place(&pod, "/").as_deref(), Some("/kubepods/pod1/c1"));
        assert_eq!(
            place(&pod, "/sub").as_deref(),
            Some("/kubepods/pod1/c1/sub")
        );
        assert_eq!(
            place(&pod, "/../../pod2/c2").as_deref(),
            Some("/kubepods/pod2/c2")
        );
        assert_eq!(
            place(&pod, "/../../../init.scope").as_deref(),
            Some("/init.scope")
        );
        assert_eq!(place(&pod, "/../../../.."), None, "above the mount");
        // The namespace's own mount, showing only what is below it.
        let own = Frame::Inside { root: Vec::new() };
        assert_eq!(place(&own, "/../../pod2"), None);
        // A mount of a cgroup below the namespace's root.
        let below = Frame::Inside {
            root: names(&["svc"]),
        };
        assert_eq!(place(&below, "/svc/x").as_deref(), Some("/x"));
        assert_eq!(place(&below, "/other"), None);
        assert_eq!(place(&Frame::Unknown, "/x"), None);
        // Too long for the buffer: not placed, never cut.
        let deep = Frame::Above {
            names: names(&["a-long-component-name-that-fills-much"]),
        };
        assert_eq!(place(&deep, "/another-long-component-name"), None);
    }

    #[test]
    fn the_namespace_root_is_found_where_the_process_is_listed() {
        let mount = std::env::temp_dir().join(format!("mm-frame-{}", std::process::id()));
        let leaf = mount.join("kubepods/pod1/c1");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::create_dir_all(mount.join("kubepods/pod0/c0")).unwrap();
        std::fs::write(mount.join("kubepods/pod0/c0/cgroup.procs"), "1\n2\n").unwrap();
        std::fs::write(leaf.join("cgroup.procs"), "7\n4242\n").unwrap();
        assert_eq!(
            Frame::find(&mount, "/../../..", "/", 4242),
            Frame::Above {
                names: names(&["kubepods", "pod1", "c1"])
            }
        );
        assert_eq!(Frame::find(&mount, "/../../..", "/", 99), Frame::Unknown);
        assert_eq!(Frame::find(&mount, "/../x", "/", 4242), Frame::Unknown);
        assert_eq!(
            Frame::find(&mount, "/", "/", 4242),
            Frame::Inside { root: Vec::new() }
        );
        std::fs::remove_dir_all(&mount).unwrap();
    }

    #[test]
    fn limits_come_from_the_tightest_ancestor() {
        let root = std::env::temp_dir().join(format!("mm-cgroup-{}", std::process::id()));
        let leaf = root.join("outer/inner");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("outer/memory.max"), "1048576\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        let mut read = Vec::new();
        let mut note = |file: &CStr| read.push(PathBuf::from(&*file.to_string_lossy()));
        assert_eq!(
            tightest(&root, b"/outer/inner", "memory.max", &mut note),
            Some(1 << 20)
        );
        assert_eq!(
            read,
            [leaf.join("memory.max"), root.join("outer/memory.max")],
            "every limit file read is told"
        );
        std::fs::write(leaf.join("memory.max"), "4096\n").unwrap();
        assert_eq!(
            tightest(&root, b"/outer/inner", "memory.max", &mut |_| {}),
            Some(4096)
        );
        assert_eq!(
            tightest(&root, b"/elsewhere", "memory.max", &mut |_| {}),
            None
        );
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(parse_limit("9223372036854771712\n"), None);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
