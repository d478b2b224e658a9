//! The workspace's built programs, and names no other test uses to run them under.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory with the workspace's built binaries (`target/<profile>`), found from this test
/// executable's location (`target/<profile>/deps/…`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("profile dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The path of a workspace binary, which must have been built (`cargo xtask test` does).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it first",
        path.display()
    );
    path
}

/// A process name no other test (or run) uses: `prefix` plus this test process's PID and a
/// counter, in base 36 so they stay short. The whole is at most 12 bytes, which leaves tests
/// room for a suffix of up to 3 (`{name}ok`, `{name}r7`) within the kernel's 15-byte `comm`:
/// a suffix cut off by the kernel would make two targets one name. The prefix is cut short
/// where needed, since what makes the name unique is its end.
pub fn unique_name(prefix: &str) -> String {
    const MAX: usize = 12;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let unique = format!("{}x{}", base36(std::process::id()), base36(n));
    let room = MAX.saturating_sub(unique.len());
    assert!(room >= 3, "{unique} leaves no room for a prefix");
    let prefix = &prefix[..prefix.len().min(room)];
    format!("{prefix}{unique}")
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).unwrap());
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// A directory for links named after targets, readable by every user (the unprivileged tests
/// run targets as `nobody`).
fn link_dir() -> PathBuf {
    // The PID namespace too: test programs run as PID 1 of namespaces of their own, side by side.
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|link| {
            link.to_string_lossy()
                .trim_matches(|c: char| !c.is_ascii_digit())
                .to_string()
        })
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("mm-tests-{}-{namespace}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create link dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A link named `name` to the program `target`: run through it, a process is named `name`.
pub fn link_to(target: impl AsRef<Path>, name: &str) -> PathBuf {
    let link = link_dir().join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target, &link).expect("link");
    link
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn unique_names_differ_and_leave_room_for_a_suffix() {
        let names: std::collections::HashSet<_> =
            (0..2000).map(|_| unique_name("a-long-prefix")).collect();
        assert_eq!(names.len(), 2000);
        assert!(names.iter().all(|name| name.len() + 3 <= 15), "{names:?}");
    }
}
