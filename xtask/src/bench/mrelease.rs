//! How soon a killed process's memory is free, with and without `process_mrelease`: a 4 GiB
//! process (`mm-target`) is sent SIGKILL through a pidfd, as the monitor sends it, and then
//! either reaped at once with `process_mrelease` through the same pidfd (what the monitor
//! does after a SIGKILL) or left to free its memory as it exits. Rounds alternate the two.
//! The time is from the SIGKILL until the memory is free: until `process_mrelease` returns
//! (it frees every page before it does), or until the pidfd reports the exit (the process
//! has freed its memory by then). Results go to `target/bench/mrelease.json`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use serde::Serialize;

use super::{Binaries, Options, percentile};

/// The victim's size (MiB).
const VICTIM_MIB: u64 = 4096;

/// One way's figures.
#[derive(Serialize)]
pub struct Release {
    way: &'static str,
    victim_mib: u64,
    rounds: usize,
    /// Median and slowest milliseconds from SIGKILL until the memory is free.
    free_ms: f64,
    free_ms_max: f64,
    /// Median milliseconds from SIGKILL until the exit (the pidfd readable), for both ways.
    exit_ms: f64,
}

pub fn run(bins: &Binaries, options: &Options) -> Result<Vec<Release>> {
    let rounds = if options.quick { 3 } else { 7 };
    let link = bins.named("mmb-mrelease", &bins.path("mm-target"))?;
    // Per way: (free, exit) milliseconds per round.
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (way, times) in times.iter_mut().enumerate() {
            times.push(kill_once(&link, way == 0)?);
        }
    }
    let rows: Vec<Release> = ["process_mrelease", "exit only"]
        .into_iter()
        .zip(times)
        .map(|(way, times)| {
            let mut free: Vec<f64> = times.iter().map(|t| t.0).collect();
            let mut exit: Vec<f64> = times.iter().map(|t| t.1).collect();
            free.sort_by(f64::total_cmp);
            exit.sort_by(f64::total_cmp);
            Release {
                way,
                victim_mib: VICTIM_MIB,
                rounds,
                free_ms: percentile(&free, 50.0),
                free_ms_max: free[free.len() - 1],
                exit_ms: percentile(&exit, 50.0),
            }
        })
        .collect();
    let out = crate::workspace().join("target/bench/mrelease.json");
    std::fs::write(&out, serde_json::to_string_pretty(&rows)? + "\n")?;
    println!("| SIGKILL of a {VICTIM_MIB} MiB process | memory free (median, max) | exited |");
    println!("| --- | --- | --- |");
    for row in &rows {
        println!(
            "| {} | {:.1} ms, {:.1} ms | {:.1} ms |",
            row.way, row.free_ms, row.free_ms_max, row.exit_ms
        );
    }
    eprintln!("results: {}", out.display());
    Ok(rows)
}

/// Starts a victim of [`VICTIM_MIB`], kills it and reaps it with `process_mrelease` or not;
/// returns the milliseconds until its memory was free and until it exited.
fn kill_once(link: &std::path::Path, mrelease: bool) -> Result<(f64, f64)> {
    let mut child = Command::new(link)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start mm-target")?;
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    writeln!(stdin, "grow {VICTIM_MIB}")?;
    let mut line = String::new();
    while !line.starts_with("ok") {
        line.clear();
        ensure!(stdout.read_line(&mut line)? > 0, "mm-target ended early");
    }
    let pidfd = pidfd_open(child.id() as i32)?;
    let start = Instant::now();
    // SAFETY: pidfd_send_signal takes a live pidfd, a signal number, no siginfo and no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    ensure!(sent == 0, "SIGKILL: {}", std::io::Error::last_os_error());
    if mrelease {
        // SAFETY: process_mrelease takes a live pidfd and no flags.
        let reaped = unsafe { libc::syscall(libc::SYS_process_mrelease, pidfd.as_raw_fd(), 0) };
        if reaped != 0 {
            bail!("process_mrelease: {}", std::io::Error::last_os_error());
        }
    }
    let free = start.elapsed();
    let mut exited = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    ensure!(
        unsafe { libc::poll(&mut exited, 1, -1) } == 1,
        "poll: {}",
        std::io::Error::last_os_error()
    );
    let exit = start.elapsed();
    child.wait()?;
    let free = if mrelease { free } else { exit };
    Ok((free.as_secs_f64() * 1e3, exit.as_secs_f64() * 1e3))
}

fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    ensure!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd the call just returned, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
