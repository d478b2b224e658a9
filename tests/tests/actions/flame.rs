//! The flame graph written beside each profile: in eBPF mode it draws the growth stacks and
//! names the function the target grew its memory in (`touch_every_page`, as the pprof growth
//! profile does); in poll mode, without growth stacks, it draws the mappings and names the
//! target's largest (a named memfd).

use std::path::PathBuf;

use memory_monitor_tests::{Monitor, Target, files_in, unique_name};

const USR1: i32 = libc::SIGUSR1;

/// Breaches a target in `mode` with profiles into a fresh directory; returns the profile and
/// its flame graph, once the monitor says the profile is written.
fn breach(mode: &str, grow: impl FnOnce(&mut Target)) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(unique_name("mmf-svg"));
    let _ = std::fs::remove_dir_all(&dir);
    let name = unique_name("mmf");
    let mut target = Target::spawn(&name);
    target.grow(16);
    let dir_arg = dir.display().to_string();
    let mut monitor = Monitor::start(&[
        "--mode",
        mode,
        "-i",
        "100ms",
        "-m",
        "64M",
        "-s",
        "USR1",
        "--repeat",
        "never",
        "--profile-dir",
        &dir_arg,
        "-v",
        &name,
    ]);
    monitor.expect_log(&["watching", &format!("mode={mode}")]);
    monitor.expect_log(&["checked"]);
    grow(&mut target);
    assert!(target.wait_signal(USR1), "{mode}: {}", monitor.log_text());
    let line = monitor.expect_log(&["profile written", &format!("pid={}", target.pid())]);
    let files = files_in(&dir, "");
    assert_eq!(files.len(), 2, "{mode}: {files:?}");
    let (profile, svg) = (&files[0], &files[1]);
    assert!(profile.to_string_lossy().ends_with(".pb.gz"), "{files:?}");
    // Named after its profile, and said on the profile's line.
    let stem = profile
        .to_string_lossy()
        .trim_end_matches(".pb.gz")
        .to_string();
    assert_eq!(svg.to_string_lossy(), format!("{stem}.svg"));
    let svg_name = svg.file_name().unwrap().to_string_lossy().to_string();
    assert!(line.contains(&format!("flame_graph={svg_name}")), "{line}");
    let text = std::fs::read_to_string(svg).unwrap();
    assert!(monitor.stop().success());
    std::fs::remove_dir_all(&dir).unwrap();
    (profile.clone(), text)
}

/// The names of the frames an inferno SVG draws (each frame's `<title>`, `name (… bytes, …%)`).
fn frames(svg: &str) -> Vec<String> {
    svg.split("<title>")
        .skip(1)
        .filter_map(|part| part.split_once("</title>"))
        .map(|(title, _)| {
            title
                .rsplit_once(" (")
                .map_or(title, |(name, _)| name)
                .to_string()
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn in_ebpf_mode_the_flame_graph_names_the_function_that_grew() {
    // Through --profile-at (80 %: 51.2 MiB) and the limit, in mm-target's page toucher.
    let (_, svg) = breach("ebpf", |target| target.start_growing(64));
    assert!(svg.starts_with("<?xml"), "{svg}");
    assert!(svg.contains("code paths that grew the memory"), "{svg}");
    let frames = frames(&svg);
    assert!(
        frames
            .iter()
            .any(|frame| frame.contains("touch_every_page")),
        "{frames:?}"
    );
}

#[test]
fn without_growth_stacks_the_flame_graph_draws_the_mappings() {
    let (_, svg) = breach("poll", |target| {
        target.start_growing_memfd(64);
    });
    assert!(svg.contains("resident memory by mapping"), "{svg}");
    let frames = frames(&svg);
    assert!(
        frames
            .iter()
            .any(|frame| frame.contains("/memfd:mm-target-block")),
        "{frames:?}"
    );
}
