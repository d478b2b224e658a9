//! `cargo xtask image`: the container image the DaemonSet runs, built with Podman from
//! `deploy/Containerfile`: the static binary of `cargo xtask dist` on `scratch`, so nothing is
//! pulled. It is kept in a Podman store of the workspace's own (`target/podman/`, apart from
//! other checkouts' images and the machine's), and written out as an OCI archive,
//! `target/dist/memory-monitor-VERSION.oci.tar`, to load or push elsewhere.

use std::path::PathBuf;
use std::process::Command;

use std::os::unix::fs::PermissionsExt as _;

use anyhow::{Context as _, Result};

use crate::{dist, run_step, workspace};

/// The image's name, without its tag: the DaemonSet's (`deploy/memory-monitor.yaml`).
const REPOSITORY: &str = "ghcr.io/memory-monitor/memory-monitor";

/// `podman` with the project's configuration (`xtask/containers.conf`) and its own store:
/// `target/podman/podman`, a script written here, which the image's tests run too.
pub fn podman() -> Result<Command> {
    let root = workspace();
    let store = root.join("target/podman");
    std::fs::create_dir_all(&store)
        .with_context(|| format!("cannot create {}", store.display()))?;
    let script = store.join("podman");
    let text = format!(
        "#!/bin/sh\n# Written by `cargo xtask image`: podman with this workspace's own store.\n\
         CONTAINERS_CONF='{conf}' exec podman --root '{store}/storage' --runroot '{store}/run' \
         --storage-driver vfs \"$@\"\n",
        conf = root.join("xtask/containers.conf").display(),
        store = store.display(),
    );
    std::fs::write(&script, text).with_context(|| format!("cannot write {}", script.display()))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(Command::new(script))
}

/// Builds the image from what `dist` wrote into `target/dist/`; returns the OCI archive.
pub fn build() -> Result<PathBuf> {
    let root = workspace();
    let reference = format!("{REPOSITORY}:{}", dist::version()?);
    run_step(
        podman()?
            .args(["build", "--quiet", "--pull=never", "--file"])
            .arg(root.join("deploy/Containerfile"))
            .args(["--tag", &reference])
            .arg(dist::dir()),
    )?;
    let archive = dist::dir().join(format!("memory-monitor-{}.oci.tar", dist::version()?));
    let _ = std::fs::remove_file(&archive);
    run_step(
        podman()?
            .args(["save", "--quiet", "--format", "oci-archive", "--output"])
            .arg(&archive)
            .arg(&reference),
    )?;
    eprintln!("image: {reference} (target/podman), {}", archive.display());
    Ok(archive)
}
