//! `cargo xtask image`: the container image the DaemonSet runs, built with Podman from
//! `deploy/Containerfile`: the static binary of `cargo xtask dist` on `scratch`, so nothing is
//! pulled. It is kept in a Podman store of the workspace's own (`target/podman/`, apart from
//! other checkouts' images and the machine's), and written out as an OCI archive,
//! `target/dist/memory-monitor-VERSION.oci.tar`, to load or push elsewhere.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::{dist, run_step, workspace};

/// The image's name, without its tag: the DaemonSet's (`deploy/memory-monitor.yaml`).
const REPOSITORY: &str = "ghcr.io/memory-monitor/memory-monitor";

/// `podman` with the project's configuration (`xtask/containers.conf`) and its own store.
pub fn podman() -> Command {
    let root = workspace();
    let store = root.join("target/podman");
    let mut command = Command::new("podman");
    command
        .env("CONTAINERS_CONF", root.join("xtask/containers.conf"))
        .arg("--root")
        .arg(store.join("storage"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(["--storage-driver", "vfs"]);
    command
}

/// Builds the image from what `dist` wrote into `target/dist/`; returns the OCI archive.
pub fn build() -> Result<PathBuf> {
    let root = workspace();
    let reference = format!("{REPOSITORY}:{}", dist::version()?);
    run_step(
        podman()
            .args(["build", "--quiet", "--pull=never", "--file"])
            .arg(root.join("deploy/Containerfile"))
            .args(["--tag", &reference])
            .arg(dist::dir()),
    )?;
    let archive = dist::dir().join(format!("memory-monitor-{}.oci.tar", dist::version()?));
    let _ = std::fs::remove_file(&archive);
    run_step(
        podman()
            .args(["save", "--quiet", "--format", "oci-archive", "--output"])
            .arg(&archive)
            .arg(&reference),
    )?;
    eprintln!("image: {reference} (target/podman), {}", archive.display());
    Ok(archive)
}
