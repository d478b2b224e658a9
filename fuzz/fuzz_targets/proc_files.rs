//! `/proc` files and names are written by the kernel but shaped by whoever names a process:
//! every parser of them must take any bytes without panicking.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use memory_monitor::fuzzing::{self, Escaped, Frame};
use memory_monitor::matcher::{MatchMode, Matcher};

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

/// How a monitor in a cgroup namespace of its own places other processes' cgroups.
static FRAMES: LazyLock<Vec<Frame>> = LazyLock::new(|| {
    let names = |parts: &[&str]| parts.iter().map(|part| part.to_string()).collect();
    vec![
        Frame::Inside { root: Vec::new() },
        Frame::Inside {
            root: names(&["svc"]),
        },
        Frame::Above {
            names: names(&["kubepods", "pod", "c"]),
        },
    ]
});

fuzz_target!(|data: &[u8]| {
    if let Ok(stat) = fuzzing::parse_stat(data) {
        let _ = stat.is_kernel_thread();
        let _ = Escaped(stat.comm).to_string();
    }
    let _ = fuzzing::parse_statm(data);
    let _ = fuzzing::parse_status_rss(data);
    let comm = fuzzing::parse_comm(data);
    let _ = fuzzing::argv0_basename(data);
    let _ = fuzzing::v2_path_of(data);
    for frame in FRAMES.iter() {
        let mut buf = [0u8; 256];
        let _ = frame.place(data, &mut buf);
    }
    let _ = Escaped(data).to_string();
    for matcher in MATCHERS.iter() {
        let _ = matcher.check_comm(comm);
        let _ = matcher.matches_cmdline(&mut data.to_vec());
    }
});
