//! The profile driver: the profiles a monitor wrote, read back by `go tool pprof`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `go tool pprof -top` of `profile` by the sample type `index` (`rss`, `growth`, …).
pub fn pprof_top(profile: &Path, index: &str) -> String {
    top(profile, Some(index))
}

/// `go tool pprof -top` of `profile` by its default sample type: what a user sees unasked.
pub fn pprof_default_top(profile: &Path) -> String {
    top(profile, None)
}

fn top(profile: &Path, index: Option<&str>) -> String {
    let output = Command::new("go")
        .args(["tool", "pprof", "-top", "-symbolize=none"])
        .args(index.map(|index| format!("-sample_index={index}")))
        .arg(profile)
        .output()
        .expect("go tool pprof (cargo xtask setup installs Debian's golang-go)");
    assert!(
        output.status.success(),
        "pprof failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What `go tool pprof -top` (by resident bytes) lists first for `profile`.
pub fn pprof_top_entry(profile: &Path) -> String {
    let text = pprof_top(profile, "rss");
    // The table's first row follows its header ("flat  flat%  sum% ...").
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in:\n{text}"))
        .to_string()
}

/// The files in `dir` whose names end with `suffix`, sorted; none when `dir` is missing.
pub fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|path| path.to_string_lossy().ends_with(suffix));
    files.sort();
    files
}
