//! `cargo xtask image`: the container image the DaemonSet runs, built with Podman from
//! `deploy/Containerfile`: the static binaries of `cargo xtask dist` on `scratch`, so nothing is
//! pulled, for linux/amd64 and linux/arm64 under one name (an OCI index). It is kept in a
//! Podman store of the workspace's own (`target/podman/`, apart from other checkouts' images
//! and the machine's), and written out as an OCI archive with the index and both images,
//! `target/dist/memory-monitor-VERSION.oci.tar`, to load or push elsewhere
//! (`skopeo copy --all oci-archive:… docker://…` keeps both).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::os::unix::fs::PermissionsExt as _;

use anyhow::{Context as _, Result};

use crate::arch::Arch;
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

/// Builds the image from what `dist` wrote into `target/dist/`: one per architecture, from
/// that architecture's binary (`scratch` has nothing to run, so no emulation is needed), tagged
/// `VERSION-amd64` and `VERSION-arm64`, and `VERSION` naming the list of both (an OCI index),
/// which is what the DaemonSet runs and a node of either architecture pulls its own from.
/// Returns the OCI archive, which holds the index and both images.
pub fn build() -> Result<PathBuf> {
    let root = workspace();
    let reference = format!("{REPOSITORY}:{}", dist::version()?);
    // The last build's list and images go first: a name is one image or one list.
    let _ = podman()?
        .args(["manifest", "rm", &reference])
        .stderr(Stdio::null())
        .output();
    let tags: Vec<String> = Arch::ALL
        .iter()
        .map(|arch| format!("{reference}-{}", arch.debian()))
        .collect();
    let _ = podman()?
        .args(["rmi", "--ignore", &reference])
        .args(&tags)
        .output();
    // What builds without a cache leave untagged; before the list is made, as Podman 4.3
    // cannot tell what is dangling while a list of local images is in the store.
    let _ = podman()?.args(["image", "prune", "--force"]).output();
    run_step(podman()?.args(["manifest", "create", &reference]))?;
    for (arch, tag) in Arch::ALL.into_iter().zip(&tags) {
        let binary = dist::binary_in_dist(arch);
        let context = binary.parent().expect("a directory");
        // No cache: the build cache would hand the other architecture's image back, as the
        // steps are the same.
        run_step(
            podman()?
                .args(["build", "--quiet", "--pull=never", "--no-cache"])
                .args(["--platform", &format!("linux/{}", arch.debian())])
                .arg("--file")
                .arg(root.join("deploy/Containerfile"))
                .args(["--tag", tag])
                .arg(context),
        )?;
        run_step(podman()?.args([
            "manifest",
            "add",
            &reference,
            &format!("containers-storage:{tag}"),
        ]))?;
    }
    let archive = dist::dir().join(format!("memory-monitor-{}.oci.tar", dist::version()?));
    let _ = std::fs::remove_file(&archive);
    run_step(
        podman()?
            .args(["manifest", "push", "--quiet", "--all", "--format", "oci"])
            .arg(&reference)
            .arg(format!("oci-archive:{}:{reference}", archive.display())),
    )?;
    eprintln!("image: {reference} (target/podman), {}", archive.display());
    Ok(archive)
}
