//! `/proc` files and names are written by the kernel but shaped by whoever names a process:
//! every parser of them must take any bytes without panicking.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use memory_monitor::matcher::{MatchMode, Matcher};
use memory_monitor::procfs::{self, Escaped};

/// One matcher of each way names are compared (made once: compiling a regex per input would
/// starve the fuzzer).
static MATCHERS: LazyLock<Vec<Matcher>> = LazyLock::new(|| {
    [
        (MatchMode::Prefix, "my-app"),
        (MatchMode::Exact, "a-name-longer-than-comm"),
        (MatchMode::Regex, "^(web|api)-[0-9]+$"),
        (MatchMode::Cmdline, "--port 80"),
    ]
    .into_iter()
    .map(|(mode, name)| Matcher::new(mode, name).expect("a valid name"))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    if let Ok(stat) = procfs::parse_stat(data) {
        let _ = stat.is_kernel_thread();
        let _ = Escaped(stat.comm).to_string();
    }
    let _ = procfs::parse_statm(data);
    let _ = procfs::parse_status_rss(data);
    let comm = procfs::parse_comm(data);
    let _ = procfs::argv0_basename(data);
    let _ = memory_monitor::cgroup::v2_path_of(data);
    let _ = Escaped(data).to_string();
    for matcher in MATCHERS.iter() {
        let _ = matcher.check_comm(comm);
        let _ = matcher.matches_cmdline(&mut data.to_vec());
    }
});
