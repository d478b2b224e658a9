//! A program that watches its own memory: past 64 MiB it writes a profile of where its memory
//! is into ./profiles (or the directory given as the first argument).
//!
//! ```sh
//! cargo run --example self_monitor -- /tmp/profiles
//! go tool pprof -top /tmp/profiles/*.pb.gz
//! ```

use std::time::Duration;

use memory_monitor::SelfMonitor;
use memory_monitor::sink::dir::DirWriter;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "profiles".to_owned());
    let monitor = SelfMonitor::new(DirWriter::new(dir.as_ref()))
        .with_memory_limit(64 << 20)
        .with_monitor_freq(Duration::from_millis(100))
        .start()
        .expect("start the self monitor");
    // Grow to 96 MiB, one touched MiB at a time, as a leaking program would.
    let mut leak: Vec<Vec<u8>> = Vec::new();
    for _ in 0..96 {
        leak.push(vec![1; 1 << 20]);
        std::thread::sleep(Duration::from_millis(5));
    }
    while monitor.profiles_written() == 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "profile written to {dir}/ after {} checks",
        monitor.checks()
    );
}
