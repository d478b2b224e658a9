//! Builds the BPF programs (memory-monitor-ebpf's binary) for the BPF target with the nightly
//! toolchain and bpf-linker, so the monitor can embed them (`cargo xtask setup` installs both).

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let programs = Path::new(&manifest_dir).join("../memory-monitor-ebpf");
    let programs = programs.to_str().expect("UTF-8 workspace path");
    println!("cargo:rerun-if-env-changed=PATH");
    // A pinned nightly (`cargo xtask` reads the same variable), else the latest installed.
    println!("cargo:rerun-if-env-changed=MEMORY_MONITOR_NIGHTLY");
    let pinned = std::env::var("MEMORY_MONITOR_NIGHTLY").ok();
    let toolchain = match pinned.as_deref() {
        Some(name) => aya_build::Toolchain::Custom(name),
        None => aya_build::Toolchain::default(),
    };
    if which_bpf_linker().is_none() {
        anyhow::bail!(
            "bpf-linker is not on PATH: it builds memory-monitor's BPF programs. Run `cargo xtask setup` (or use `cargo xtask run`/`cargo xtask test`, which do)."
        );
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "memory-monitor-ebpf",
            root_dir: programs,
            features: &["programs"],
            ..Default::default()
        }],
        toolchain,
    )
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|candidate| candidate.is_file())
}
