//! A breach's profile as a flame graph (SVG, drawn by inferno), for reading at a glance in a
//! browser: the growth stacks, each frame as wide as the bytes grown under it, or, when there
//! are none (poll mode, a process that grew before it was near its limit), the mapping
//! profile, one box per mapping as wide as its resident bytes.

use inferno::flamegraph::color::BasicPalette;
use inferno::flamegraph::{self, Options, Palette};

use super::growth::GrowthStack;
use super::mapping::Region;

/// The flame graph's name beside the profile `profile` (`….pb.gz` → `….svg`).
pub(crate) fn file_name(profile: &str) -> String {
    let stem = profile.strip_suffix(".pb.gz").unwrap_or(profile);
    format!("{stem}.svg")
}

/// Draws `growth`, or `regions` when `growth` is empty, titled `title`, with `about` under it.
pub(crate) fn svg(
    regions: &[Region],
    growth: &[GrowthStack],
    title: &str,
    about: &str,
) -> std::io::Result<Vec<u8>> {
    let (lines, what) = match growth.is_empty() {
        false => (growth_lines(growth), "code paths that grew the memory"),
        true => (mapping_lines(regions), "resident memory by mapping"),
    };
    let mut options = Options::default();
    options.title = format!("{title}: {what}");
    options.subtitle = Some(about.to_owned());
    options.count_name = "bytes".to_owned();
    options.colors = Palette::Basic(BasicPalette::Mem);
    // The same profile draws the same picture.
    options.hash = true;
    options.deterministic = true;
    let mut out = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out)?;
    Ok(out)
}

/// The growth stacks in the folded format (`outer;…;inner bytes`).
fn growth_lines(growth: &[GrowthStack]) -> Vec<String> {
    growth
        .iter()
        .filter(|stack| stack.bytes > 0 && !stack.frames.is_empty())
        .map(|stack| {
            let frames: Vec<String> = stack
                .frames
                .iter()
                .rev()
                .map(|frame| frame_name(&frame.function))
                .collect();
            format!("{} {}", frames.join(";"), stack.bytes)
        })
        .collect()
}

/// One folded line per resident mapping, under its kind (file, anonymous, …).
fn mapping_lines(regions: &[Region]) -> Vec<String> {
    regions
        .iter()
        .filter(|region| region.rss > 0)
        .map(|region| {
            let kind = match region.path.as_str() {
                "" => "anonymous",
                path if path.starts_with('[') => "kernel-named",
                path if path.starts_with("/memfd:") => "memfd",
                _ => "file-backed",
            };
            format!("{kind};{} {}", frame_name(&region.label()), region.rss)
        })
        .collect()
}

/// A name as one frame of a folded line: no separator, no line break, and never empty.
fn frame_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    match name.trim() {
        "" => "[unknown]".to_owned(),
        name => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::profile::growth::Frame;

    fn frame(function: &str) -> Frame {
        Frame {
            function: function.to_owned(),
            address: 0x1000,
        }
    }

    #[test]
    fn growth_stacks_are_drawn_outermost_first() {
        let growth = [GrowthStack {
            frames: vec![frame("grow_here"), frame("main"), frame("_start")],
            bytes: 4 << 20,
        }];
        assert_eq!(growth_lines(&growth), ["_start;main;grow_here 4194304"]);
        let svg = String::from_utf8(svg(&[], &growth, "app (pid 1)", "rss 5MiB").unwrap()).unwrap();
        assert!(svg.starts_with("<?xml"), "{svg}");
        assert!(svg.contains("grow_here"));
        assert!(svg.contains("code paths that grew the memory"));
    }

    #[test]
    fn without_growth_stacks_the_mappings_are_drawn() {
        let region = |path: &str, rss| Region {
            start: 0x1000,
            end: 0x2000,
            perms: "rw-p".to_owned(),
            offset: 0,
            path: path.to_owned(),
            rss,
            pss: rss,
            anon: rss,
            swap: 0,
        };
        let regions = [
            region("/memfd:big;one", 1 << 20),
            region("[heap]", 4096),
            region("/lib/x.so", 0),
        ];
        assert_eq!(
            mapping_lines(&regions),
            ["memfd;/memfd:big:one 1048576", "kernel-named;[heap] 4096"]
        );
        let svg = String::from_utf8(svg(&regions, &[], "app", "").unwrap()).unwrap();
        assert!(svg.contains("/memfd:big:one"));
        assert!(svg.contains("resident memory by mapping"));
    }

    #[test]
    fn the_flame_graph_is_named_after_its_profile() {
        assert_eq!(
            file_name("20261125T003849_app_42_1f2a0000.pb.gz"),
            "20261125T003849_app_42_1f2a0000.svg"
        );
    }
}
