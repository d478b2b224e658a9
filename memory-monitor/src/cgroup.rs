//! cgroups: which cgroup (v2) a process is in, whether that is inside a rule's cgroup, and the
//! memory limit its cgroup puts on it (for limits given as a share of it).
//!
//! Paths are as this monitor sees them: relative to the root of its cgroup namespace, the way
//! `/proc/PID/cgroup` prints them (`/system.slice/nginx.service`). On hybrid hosts, where the
//! memory controller still sits in a v1 hierarchy, the v1 `memory.limit_in_bytes` is used for
//! limits.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A cgroup v2 path, normalised (`/a/b`; the root is `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath(String);

/// Why a cgroup argument cannot name a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupError {
    /// Empty, or with `.` / `..` components.
    #[error("'{0}' is not a cgroup path (write it like /system.slice/nginx.service)")]
    Malformed(String),
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
        let relative = v2_mount()
            .and_then(|mount| Path::new(trimmed).strip_prefix(mount).ok())
            .map(|rest| rest.to_string_lossy().into_owned())
            .unwrap_or_else(|| trimmed.to_string());
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

    /// Whether a process in the cgroup at `process_path` (as in `/proc/PID/cgroup`) is in
    /// this cgroup or one below it.
    pub fn contains(&self, process_path: &[u8]) -> bool {
        let own = self.0.as_bytes();
        if own == b"/" {
            return process_path.starts_with(b"/");
        }
        process_path
            .strip_prefix(own)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
    }

    /// Its directory in the cgroup2 mount.
    pub fn directory(&self) -> Result<PathBuf, CgroupError> {
        let mount = v2_mount().ok_or(CgroupError::NoHierarchy)?;
        Ok(mount.join(self.0.trim_start_matches('/')))
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// hybrid hosts), read once.
pub fn v2_mount() -> Option<&'static Path> {
    static MOUNT: OnceLock<Option<PathBuf>> = OnceLock::new();
    MOUNT
        .get_or_init(|| find_mount(|fstype, _| fstype == "cgroup2"))
        .as_deref()
}

/// Where a v1 hierarchy with the memory controller is mounted, if any (hybrid hosts).
fn v1_memory_mount() -> Option<&'static Path> {
    static MOUNT: OnceLock<Option<PathBuf>> = OnceLock::new();
    MOUNT
        .get_or_init(|| {
            find_mount(|fstype, options| {
                fstype == "cgroup" && options.split(',').any(|option| option == "memory")
            })
        })
        .as_deref()
}

/// The mount point of the first mount in `/proc/self/mountinfo` that `wanted(fstype, super
/// options)` accepts.
fn find_mount(wanted: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        // `id parent major:minor root mountpoint options [optional...] - fstype source super`
        let (before, after) = line.split_once(" - ")?;
        let mount_point = before.split(' ').nth(4)?;
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let options = after.nth(1).unwrap_or_default();
        wanted(fstype, options).then(|| PathBuf::from(unescape_mount_path(mount_point)))
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

/// The v2 path in a `/proc/PID/cgroup` text (the `0::/path` line).
pub fn v2_path_of(text: &[u8]) -> Option<&[u8]> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"0::"))
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

/// The tightest memory limit on a process whose `/proc/PID/cgroup` reads `text`: the
/// smallest `memory.max` from its cgroup up to the root (v2), or on hybrid hosts the v1
/// `memory.limit_in_bytes`. `None`: no cgroup limits it.
pub fn memory_limit(text: &[u8]) -> Option<u64> {
    let v2 = v2_mount()
        .zip(v2_path_of(text))
        .and_then(|(mount, path)| tightest(mount, path, "memory.max"));
    v2.or_else(|| {
        v1_memory_mount()
            .zip(v1_memory_path_of(text))
            .and_then(|(mount, path)| tightest(mount, path, "memory.limit_in_bytes"))
    })
}

/// The smallest limit in `file` from `mount`/`path` up to `mount`.
fn tightest(mount: &Path, path: &[u8], file: &str) -> Option<u64> {
    let path = String::from_utf8_lossy(path);
    let mut dir = mount.join(path.trim_start_matches('/'));
    let mut tightest: Option<u64> = None;
    while dir.starts_with(mount) {
        if let Some(limit) = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| parse_limit(&text))
        {
            tightest = Some(tightest.map_or(limit, |t| t.min(limit)));
        }
        if !dir.pop() {
            break;
        }
    }
    tightest
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
        }
        assert!(CgroupPath::parse(" ").is_err());
        assert!(CgroupPath::parse("/a/../b").is_err());
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

    #[test]
    fn limits_come_from_the_tightest_ancestor() {
        let root = std::env::temp_dir().join(format!("mm-cgroup-{}", std::process::id()));
        let leaf = root.join("outer/inner");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("outer/memory.max"), "1048576\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        assert_eq!(
            tightest(&root, b"/outer/inner", "memory.max"),
            Some(1 << 20)
        );
        std::fs::write(leaf.join("memory.max"), "4096\n").unwrap();
        assert_eq!(tightest(&root, b"/outer/inner", "memory.max"), Some(4096));
        assert_eq!(tightest(&root, b"/elsewhere", "memory.max"), None);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(parse_limit("9223372036854771712\n"), None);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
