//! What ships, as `cargo xtask test` builds it before the tests (`cargo xtask dist`, `cargo
//! xtask image`): the static release binary, the .deb, and the container image in the
//! workspace's own Podman store.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bin_dir;

/// The workspace's directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The target directory (above the tests' own `target/debug`).
fn target_dir() -> PathBuf {
    bin_dir().parent().expect("target/").to_path_buf()
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds what ships first",
        path.display()
    );
    path
}

/// The static release binary (musl, with the HTTP and S3 profile writers).
pub fn static_binary() -> PathBuf {
    built(target_dir().join("x86_64-unknown-linux-musl/release/memory-monitor"))
}

/// What `cargo xtask dist` wrote.
pub fn dist_dir() -> PathBuf {
    built(target_dir().join("dist"))
}

/// The .deb in `target/dist/` for this machine (amd64).
pub fn deb() -> PathBuf {
    deb_of("amd64")
}

/// The .deb in `target/dist/` for Debian's architecture `arch` (`amd64`, `arm64`).
pub fn deb_of(arch: &str) -> PathBuf {
    let suffix = format!("_{arch}.deb");
    let found = std::fs::read_dir(dist_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with(&suffix));
    built(found.unwrap_or_else(|| dist_dir().join(format!("memory-monitor_VERSION{suffix}"))))
}

/// For `Monitor::start_with`: runs the static release binary instead of the tests' build,
/// with the same arguments and environment.
pub fn released(command: &mut Command) {
    let mut released = Command::new(static_binary());
    released.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => released.env(key, value),
            None => released.env_remove(key),
        };
    }
    *command = released;
}

/// `podman` as `cargo xtask image` runs it, with the workspace's own store, where the image
/// is (the script `cargo xtask image` writes).
pub fn podman() -> Command {
    Command::new(target_dir().join("podman/podman"))
}

/// A container that is removed, whatever became of it, when this is dropped.
pub struct Container(pub String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "0", &self.0])
            .output();
    }
}
