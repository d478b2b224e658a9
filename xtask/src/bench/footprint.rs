//! The monitor's footprint (section 3): RSS, CPU and wake-ups watching 1 to 10,000 sleeping
//! processes, idle and under event load.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::{
    Binaries, Footprint, LIMIT_MIB, Monitor, Options, WATCHED, cpu_and_switches, field, status_kib,
};

/// A watched process that swings its RSS across the limit and back, over and over, while
/// running: the event load.
pub(super) struct Oscillator {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Oscillator {
    pub(super) fn start(bins: &Binaries, name: &str) -> Result<Oscillator> {
        let link = bins.named(name, &bins.path("mm-target"))?;
        let mut child = Command::new(link)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ask = move |stdin: &mut ChildStdin, command: &str| -> bool {
            if writeln!(stdin, "{command}").is_err() {
                return false;
            }
            let mut line = String::new();
            loop {
                line.clear();
                match stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => return false,
                    Ok(_) if line.starts_with("ok") => return true,
                    Ok(_) => {}
                }
            }
        };
        ask(&mut stdin, &format!("grow {}", LIMIT_MIB - 6));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                while !stop.load(Ordering::SeqCst) {
                    if !ask(&mut stdin, "grow 8") || !ask(&mut stdin, "madvise 8") {
                        break;
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        });
        Ok(Oscillator {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Oscillator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sleeping processes named `mmb-sleep`, for the monitor to watch.
pub(super) struct Sleepers(pub(super) Vec<Child>);

impl Sleepers {
    pub(super) fn grow_to(&mut self, bins: &Binaries, count: usize) -> Result<()> {
        let link = bins.named("mmb-sleep", Path::new("/bin/sleep"))?;
        while self.0.len() < count {
            self.0.push(
                Command::new(&link)
                    .arg("100000")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .context("spawn a sleeper")?,
            );
        }
        Ok(())
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

pub(super) fn footprint(bins: &Binaries, options: &Options) -> Result<Vec<Footprint>> {
    let mut sleepers = Sleepers(Vec::new());
    let mut results = Vec::new();
    let window = options.window();
    let per_minute = 60.0 / window.as_secs_f64();
    for processes in WATCHED {
        sleepers.grow_to(bins, processes)?;
        for mode in ["ebpf", "poll"] {
            eprintln!("footprint: {processes} processes, {mode}");
            let limit = format!("{LIMIT_MIB}M");
            let args = ["--mode", mode, "-m", &limit, "-s", "USR1", "-v", "mmb-s"];
            let mut monitor = Monitor::start(bins, &args)?;
            let checked = monitor.wait_for(&["checked"])?;
            let watched = field(&checked, "watched").unwrap_or(0) as usize;
            let peak_rss_kib = status_kib(monitor.pid(), "VmHWM:");
            std::thread::sleep(Duration::from_secs(1));
            let steady_rss_kib = status_kib(monitor.pid(), "VmRSS:");
            let (cpu0, switches0) = cpu_and_switches(monitor.pid());
            std::thread::sleep(window);
            let (cpu1, switches1) = cpu_and_switches(monitor.pid());
            let breaches0 = monitor.count("over the limit");
            let oscillator = Oscillator::start(bins, "mmb-swing")?;
            std::thread::sleep(window);
            let (cpu2, _) = cpu_and_switches(monitor.pid());
            drop(oscillator);
            let breaches = monitor.count("over the limit") - breaches0;
            let events = field(&monitor.stop()?, "events").unwrap_or(0);
            results.push(Footprint {
                processes,
                mode: mode.to_string(),
                watched,
                steady_rss_kib,
                peak_rss_kib,
                idle_cpu_s_per_min: (cpu1 - cpu0) as f64 / 1e9 * per_minute,
                idle_wakeups_per_min: (switches1 - switches0) as f64 * per_minute,
                load_cpu_s_per_min: (cpu2 - cpu1) as f64 / 1e9 * per_minute,
                load_breaches_per_s: breaches as f64 / window.as_secs_f64(),
                load_events_per_s: events as f64 / window.as_secs_f64(),
            });
        }
    }
    Ok(results)
}
