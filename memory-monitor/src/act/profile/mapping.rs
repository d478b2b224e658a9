//! The mapping profile: where a process's resident memory is, by mapping, from
//! `/proc/PID/smaps`. Needs nothing but `/proc`, so it is there in both modes.
//!
//! The process being profiled chooses what its `smaps` holds: tens of thousands of mappings,
//! each with a path of up to 4 KiB, make hundreds of megabytes of text. So the text is read a
//! line at a time, never whole; mappings of one file are added up into one region; paths are
//! cut to [`MAX_PATH`] bytes and regions to [`MAX_REGIONS`], past which the rest is added up
//! into one region; and the profile says what was cut ([`Mappings::notes`]). The memory a
//! capture takes is bounded whatever the process maps.

use std::collections::HashMap;
use std::io::{self, BufRead};

/// The most regions a profile keeps; mappings of further paths (or further anonymous
/// mappings) are added up into one region, [`OTHERS`].
pub(crate) const MAX_REGIONS: usize = 4096;

/// The longest path kept, in bytes (a path may be 4 KiB); a longer one is cut, and mappings
/// whose paths are the same up to there are added up.
pub(crate) const MAX_PATH: usize = 256;

/// The region mappings past [`MAX_REGIONS`] are added up into.
pub(crate) const OTHERS: &str = "[other mappings]";

/// One region of the profile: a mapping, or every mapping of one file, and its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Region {
    /// First address (of its first mapping).
    pub(crate) start: u64,
    /// One past the last address (of its last mapping).
    pub(crate) end: u64,
    /// `rwxp`-style permissions (of its first mapping).
    pub(crate) perms: String,
    /// Offset into the mapped file (of its first mapping).
    pub(crate) offset: u64,
    /// The mapped file, or a kind such as `[heap]`; empty for anonymous memory.
    pub(crate) path: String,
    /// Resident bytes.
    pub(crate) rss: u64,
    /// Proportional share of the resident bytes.
    pub(crate) pss: u64,
    /// Anonymous resident bytes.
    pub(crate) anon: u64,
    /// Bytes swapped out.
    pub(crate) swap: u64,
}

impl Region {
    /// What the profile calls this region: its file or kind; anonymous memory by its range, so
    /// that the largest block stands out on its own.
    pub(crate) fn label(&self) -> String {
        if self.path.is_empty() {
            format!("[anon {} {:x}-{:x}]", self.perms, self.start, self.end)
        } else {
            self.path.clone()
        }
    }
}

/// One mapping's block of `smaps`, as read: borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block<'a> {
    /// First address.
    pub(crate) start: u64,
    /// One past the last address.
    pub(crate) end: u64,
    /// `rwxp`-style permissions.
    pub(crate) perms: &'a [u8],
    /// Offset into the mapped file.
    pub(crate) offset: u64,
    /// The path as the kernel wrote it (any bytes but a newline); empty for anonymous memory.
    pub(crate) path: &'a [u8],
    /// Resident bytes.
    pub(crate) rss: u64,
    /// Proportional share of the resident bytes.
    pub(crate) pss: u64,
    /// Anonymous resident bytes, when the block said (absent: unknown).
    pub(crate) anon: Option<u64>,
    /// Bytes swapped out, when the block said.
    pub(crate) swap: Option<u64>,
}

/// Calls `each` with every mapping's block of the `smaps` text `reader` gives, reading one
/// line at a time: the memory this takes is two lines', whatever the text's length.
pub(crate) fn for_each_block(
    mut reader: impl BufRead,
    mut each: impl FnMut(&Block<'_>),
) -> io::Result<()> {
    let mut header = Vec::new();
    let mut line = Vec::new();
    let mut block: Option<Block<'static>> = None;
    // The block's numbers, read below its header; its text is in `header`.
    loop {
        line.clear();
        let end = reader.read_until(b'\n', &mut line)? == 0;
        let new_header = !end && parse_header(&line).is_some();
        if (end || new_header)
            && let Some(numbers) = block.take()
        {
            let (perms, path) = header_text(&header);
            each(&Block {
                perms,
                path,
                ..numbers
            });
        }
        if end {
            return Ok(());
        }
        if new_header {
            std::mem::swap(&mut header, &mut line);
            block = parse_header(&header).map(|(start, end, offset)| Block {
                start,
                end,
                perms: b"",
                offset,
                path: b"",
                rss: 0,
                pss: 0,
                anon: None,
                swap: None,
            });
            continue;
        }
        let (Some(numbers), Some((field, bytes))) = (block.as_mut(), parse_field(&line)) else {
            continue;
        };
        match field {
            b"Rss:" => numbers.rss = bytes,
            b"Pss:" => numbers.pss = bytes,
            b"Anonymous:" => numbers.anon = Some(bytes),
            b"Swap:" => numbers.swap = Some(bytes),
            _ => {}
        }
    }
}

/// Splits `line` at ASCII whitespace, skipping empty words.
fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
}

/// The start, end and offset of a mapping's header line
/// (`start-end perms offset dev inode [path]`), if `line` is one.
fn parse_header(line: &[u8]) -> Option<(u64, u64, u64)> {
    let mut words = words(line);
    let range = words.next()?;
    let at = range.iter().position(|&b| b == b'-')?;
    let hex = |s: &[u8]| u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok();
    let (start, end) = (hex(&range[..at])?, hex(&range[at + 1..])?);
    let _perms = words.next()?;
    let offset = hex(words.next()?)?;
    Some((start, end, offset))
}

/// The permissions and path of a header line: the path is what follows the fifth field (it
/// may hold spaces), trimmed.
fn header_text(line: &[u8]) -> (&[u8], &[u8]) {
    let mut rest = line;
    let mut fields = [&b""[..]; 5];
    for field in &mut fields {
        rest = rest.trim_ascii_start();
        let at = rest
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or(rest.len());
        *field = &rest[..at];
        rest = &rest[at..];
    }
    (fields[1], rest.trim_ascii())
}

/// A `Name:   N kB` line's name and bytes.
fn parse_field(line: &[u8]) -> Option<(&[u8], u64)> {
    let mut words = words(line);
    let name = words.next()?;
    let kib: u64 = std::str::from_utf8(words.next()?).ok()?.parse().ok()?;
    Some((name, kib.saturating_mul(1024)))
}

/// A process's regions, and what was cut to keep them bounded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mappings {
    /// The regions holding memory (resident or swapped out).
    pub(crate) regions: Vec<Region>,
    /// Mappings read.
    pub(crate) mappings: u64,
    /// Mappings added up into [`OTHERS`].
    pub(crate) others: u64,
    /// Mappings whose paths were cut to [`MAX_PATH`] bytes.
    pub(crate) long_paths: u64,
}

impl Mappings {
    /// What the profile must say about how it was made smaller, one line each (none when
    /// nothing was cut).
    pub(crate) fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.others > 0 {
            notes.push(format!(
                "{} of {} mappings added up as {OTHERS}: more than {MAX_REGIONS} regions",
                self.others, self.mappings
            ));
        }
        if self.long_paths > 0 {
            notes.push(format!(
                "{} mappings' paths cut to {MAX_PATH} bytes",
                self.long_paths
            ));
        }
        notes
    }
}

/// Reads the `smaps` text `reader` gives into regions: mappings of one path (cut to
/// [`MAX_PATH`]) added up, anonymous ones each a region, at most [`MAX_REGIONS`] regions.
/// Mappings with nothing resident or swapped out are left out.
pub(crate) fn read_smaps(reader: impl BufRead) -> io::Result<Mappings> {
    let mut mappings = Mappings::default();
    let mut by_path: HashMap<String, usize> = HashMap::new();
    for_each_block(reader, |block| {
        mappings.mappings += 1;
        if block.rss == 0 && block.swap.unwrap_or(0) == 0 {
            return;
        }
        let cut = &block.path[..block.path.len().min(MAX_PATH)];
        if cut.len() < block.path.len() {
            mappings.long_paths += 1;
        }
        let path = String::from_utf8_lossy(cut);
        let known = match path.is_empty() {
            true => None,
            false => by_path.get(path.as_ref()).copied(),
        };
        let index = match known {
            Some(index) => index,
            None if mappings.regions.len() + 1 < MAX_REGIONS => {
                if !path.is_empty() {
                    by_path.insert(path.clone().into_owned(), mappings.regions.len());
                }
                mappings.regions.push(Region {
                    start: block.start,
                    end: block.end,
                    perms: String::from_utf8_lossy(block.perms).into_owned(),
                    offset: block.offset,
                    path: path.into_owned(),
                    rss: 0,
                    pss: 0,
                    anon: 0,
                    swap: 0,
                });
                mappings.regions.len() - 1
            }
            None => {
                mappings.others += 1;
                match by_path.get(OTHERS) {
                    Some(&index) => index,
                    None => {
                        by_path.insert(OTHERS.to_owned(), mappings.regions.len());
                        mappings.regions.push(Region {
                            start: block.start,
                            end: block.end,
                            perms: "----".to_owned(),
                            offset: 0,
                            path: OTHERS.to_owned(),
                            rss: 0,
                            pss: 0,
                            anon: 0,
                            swap: 0,
                        });
                        mappings.regions.len() - 1
                    }
                }
            }
        };
        let region = &mut mappings.regions[index];
        region.end = region.end.max(block.end);
        region.rss += block.rss;
        region.pss += block.pss;
        region.anon += block.anon.unwrap_or(0);
        region.swap += block.swap.unwrap_or(0);
    })?;
    Ok(mappings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d4c0a00000-55d4c0a21000 r--p 00000000 fe:01 1234                       /usr/bin/my app
Size:                132 kB
Rss:                 128 kB
Pss:                  64 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me dw sd
7f0000000000-7f0004000000 rw-p 00000000 00:00 0 
Size:              65536 kB
Rss:               65536 kB
Pss:               65536 kB
Anonymous:         65536 kB
Swap:                 12 kB
VmFlags: rd wr mr mw me ac sd
";

    fn read(text: &[u8]) -> Mappings {
        read_smaps(text).unwrap()
    }

    #[test]
    fn smaps_regions_and_their_memory_are_read() {
        let regions = read(SMAPS.as_bytes()).regions;
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].path, "/usr/bin/my app");
        assert_eq!(regions[0].perms, "r--p");
        assert_eq!((regions[0].rss, regions[0].pss), (128 << 10, 64 << 10));
        assert_eq!(regions[1].path, "");
        assert_eq!(regions[1].start, 0x7f00_0000_0000);
        assert_eq!((regions[1].anon, regions[1].swap), (64 << 20, 12 << 10));
        assert_eq!(regions[1].label(), "[anon rw-p 7f0000000000-7f0004000000]");
    }

    /// `n` one-page mappings of `path`, each at its own address.
    fn many(n: u64, path: impl Fn(u64) -> Vec<u8>) -> Vec<u8> {
        let mut text = Vec::new();
        for i in 0..n {
            let start = 0x1000_0000 + 0x2000 * i;
            text.extend(format!("{start:x}-{:x} r--p 00000000 fe:01 7 ", start + 0x1000).bytes());
            text.extend(path(i));
            text.extend(b"\nRss:                   4 kB\nAnonymous:   0 kB\nSwap: 0 kB\n");
        }
        text
    }

    #[test]
    fn mappings_of_one_file_are_added_up_and_long_paths_are_cut() {
        let long = |_| [b'/'].into_iter().chain([b'x'; 4000]).collect();
        let mappings = read(&many(1000, long));
        assert_eq!(mappings.regions.len(), 1);
        let region = &mappings.regions[0];
        assert_eq!(region.path.len(), MAX_PATH);
        assert_eq!(region.rss, 1000 * 4096);
        assert_eq!(
            (region.start, region.end),
            (0x1000_0000, 0x1000_0000 + 0x2000 * 999 + 0x1000)
        );
        assert_eq!(mappings.long_paths, 1000);
        assert_eq!(mappings.notes(), ["1000 mappings' paths cut to 256 bytes"]);
    }

    #[test]
    fn past_the_most_regions_the_rest_is_added_up_and_said() {
        let distinct = |i: u64| format!("/lib/{i}").into_bytes();
        let n = MAX_REGIONS as u64 + 500;
        let mappings = read(&many(n, distinct));
        assert_eq!(mappings.regions.len(), MAX_REGIONS);
        let others = mappings.regions.iter().find(|r| r.path == OTHERS).unwrap();
        assert_eq!(others.rss, (n - MAX_REGIONS as u64 + 1) * 4096);
        assert_eq!(
            mappings.regions.iter().map(|r| r.rss).sum::<u64>(),
            n * 4096
        );
        assert_eq!(mappings.notes().len(), 1, "{:?}", mappings.notes());
    }

    #[test]
    fn a_path_that_is_not_utf8_is_shown_not_refused() {
        let mappings = read(&many(1, |_| b"/tmp/\xff\xfe".to_vec()));
        assert_eq!(mappings.regions[0].path, "/tmp/\u{fffd}\u{fffd}");
    }

    #[test]
    fn a_block_without_its_swap_line_says_so() {
        let text = b"1000-2000 r--p 00000000 fe:01 7 /lib/a\nAnonymous: 0 kB\n";
        let mut seen = Vec::new();
        for_each_block(&text[..], |b| seen.push((b.anon, b.swap, b.path.to_vec()))).unwrap();
        assert_eq!(seen, [(Some(0), None, b"/lib/a".to_vec())]);
    }
}
