//! `cargo xtask fuzz [--seconds N]`: runs every fuzz target in `fuzz/` (cargo-fuzz,
//! libFuzzer) for a fixed budget each. Any crash fails the run and leaves its input in
//! `fuzz/artifacts/<target>/`. Not part of `cargo xtask test`: a fuzzing budget is not a test.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cargo, nightly, output_of, run_step, workspace};

/// The fuzz targets, each a parser of untrusted input.
const TARGETS: [&str; 3] = ["proc_files", "units", "rules_file"];
/// Default budget per target.
const DEFAULT_SECONDS: u64 = 60;

/// Parses `--seconds N`.
pub fn seconds(args: &[std::ffi::OsString]) -> Result<u64> {
    match args {
        [] => Ok(DEFAULT_SECONDS),
        [flag, value] if flag == "--seconds" => value
            .to_str()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .context("--seconds takes a whole number of seconds"),
        _ => bail!("usage: cargo xtask fuzz [--seconds N]"),
    }
}

/// Installs cargo-fuzz when missing, then fuzzes each target for `seconds`.
pub fn run(seconds: u64) -> Result<()> {
    if output_of(Command::new("cargo").args(["fuzz", "--version"])).is_none() {
        run_step(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = workspace().join("fuzz");
    for target in TARGETS {
        run_step(
            cargo()
                .current_dir(&fuzz_dir)
                .args([&format!("+{}", nightly()), "fuzz", "run", target, "--"])
                .arg(format!("-max_total_time={seconds}"))
                .arg("-print_final_stats=1"),
        )
        .with_context(|| {
            format!("fuzz target {target} found a crash (see fuzz/artifacts/{target}/)")
        })?;
    }
    eprintln!(
        "fuzzed {} targets for {seconds} s each: no crash",
        TARGETS.len()
    );
    Ok(())
}
