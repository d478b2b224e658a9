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
    share_programs_build()?;
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

/// aya-build compiles the programs (and `core`, for the BPF target) under this build script's
/// own `OUT_DIR`, so every build of the monitor — each profile, feature set and target: the
/// tests', clippy's, the static release's — would compile the same programs again. Its target
/// directory there is pointed at one in the workspace's target directory instead, which every
/// build for the same architecture shares (aya-build compiles the programs with the target's
/// architecture as `bpf_target_arch`, so one directory for two would be rebuilt at every turn);
/// cargo's lock on it keeps builds running at once from writing it together.
fn share_programs_build() -> anyhow::Result<()> {
    let out_dir =
        std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The target directory is the first above OUT_DIR that cargo marked as one.
    let Some(target_dir) = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
    else {
        return Ok(());
    };
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH")?;
    let shared = target_dir.join("bpf-programs").join(arch);
    let private = out_dir.join("aya-build/target/memory-monitor-ebpf");
    std::fs::create_dir_all(&shared)?;
    std::fs::create_dir_all(private.parent().expect("a parent"))?;
    if std::fs::read_link(&private).ok().as_deref() != Some(shared.as_path()) {
        let _ = std::fs::remove_dir_all(&private);
        let _ = std::fs::remove_file(&private);
        std::os::unix::fs::symlink(&shared, &private)?;
    }
    Ok(())
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|candidate| candidate.is_file())
}
