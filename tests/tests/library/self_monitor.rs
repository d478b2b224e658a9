//! The library's in-process monitor (`SelfMonitor`): this test process is the one watched.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use memory_monitor::SelfMonitor;
use memory_monitor::sink::{ProfileWriter, WriteError};
use memory_monitor_tests::{pprof_top, pprof_top_entry, resident_bytes, wait_until};

/// Profiles by name.
type Profiles = Mutex<Vec<(String, Vec<u8>)>>;

/// A custom writer, as a user of the library would write one: keeps profiles in memory.
#[derive(Clone, Default)]
struct Keep(Arc<Profiles>);

impl ProfileWriter for Keep {
    fn write(&self, name: &str, profile: &[u8]) -> Result<(), WriteError> {
        self.0
            .lock()
            .unwrap()
            .push((name.to_owned(), profile.to_vec()));
        Ok(())
    }
}

#[test]
fn a_process_over_its_limit_gets_one_profile_through_its_writer_and_none_before() {
    let kept = Keep::default();
    let limit = resident_bytes("self") + (48 << 20);
    let monitor = SelfMonitor::new(kept.clone())
        .with_memory_limit(limit)
        .with_monitor_freq(Duration::from_millis(20))
        .start()
        .unwrap();
    assert!(wait_until(|| monitor.checks() >= 5));
    assert!(
        kept.0.lock().unwrap().is_empty(),
        "a profile while under the limit"
    );

    // Over the limit, and held there: memory malloc_trim cannot give back.
    let block = vec![7u8; 96 << 20];
    assert!(wait_until(|| monitor.profiles_written() == 1));
    let checks = monitor.checks();
    assert!(wait_until(|| monitor.checks() >= checks + 5));
    let profiles = kept.0.lock().unwrap().clone();
    assert_eq!(profiles.len(), 1, "one profile per episode over the limit");
    let (name, bytes) = &profiles[0];
    assert!(name.contains(&format!("_{}_", std::process::id())) && name.ends_with(".pb.gz"));
    assert_eq!(&bytes[..2], [0x1f, 0x8b], "gzip");
    let file = std::env::temp_dir().join(format!("mm-self-{}.pb.gz", std::process::id()));
    std::fs::write(&file, bytes).unwrap();
    // The block is the largest mapping: anonymous memory, named by its address range.
    let top = pprof_top_entry(&file);
    assert!(top.contains("[anon rw-p"), "top entry: {top}");
    std::fs::remove_file(&file).unwrap();
    drop(block);
}

#[test]
fn on_jemalloc_the_profile_is_the_allocation_profile_naming_the_allocating_code() {
    let dir = std::env::temp_dir().join(format!("mm-self-jemalloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The library's example, built with its `jemalloc` feature by `cargo xtask test`.
    let output =
        std::process::Command::new(memory_monitor_tests::bin("examples/self_monitor_jemalloc"))
            .arg(&dir)
            .arg("48")
            .output()
            .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "profiles=1",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let top = pprof_top(&files[0].path(), "inuse_space");
    assert!(
        top.contains("grow_the_heap_here"),
        "allocation profile:\n{top}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
