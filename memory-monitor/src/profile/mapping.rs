//! The mapping profile: where a process's resident memory is, by mapping, from
//! `/proc/PID/smaps`. Needs nothing but `/proc`, so it is there in both modes.

/// One mapping of `/proc/PID/smaps` and its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `rwxp`-style permissions.
    pub perms: String,
    /// Offset into the mapped file.
    pub offset: u64,
    /// The mapped file, or a kind such as `[heap]`; empty for anonymous memory.
    pub path: String,
    /// Resident bytes.
    pub rss: u64,
    /// Proportional share of the resident bytes.
    pub pss: u64,
    /// Anonymous resident bytes.
    pub anon: u64,
    /// Bytes swapped out.
    pub swap: u64,
}

impl Region {
    /// What the profile calls this region: its file or kind; anonymous memory by its range, so
    /// that the largest block stands out on its own.
    pub fn label(&self) -> String {
        if self.path.is_empty() {
            format!("[anon {} {:x}-{:x}]", self.perms, self.start, self.end)
        } else {
            self.path.clone()
        }
    }
}

/// Parses the text of `/proc/PID/smaps`.
pub fn parse_smaps(text: &str) -> Vec<Region> {
    let mut regions: Vec<Region> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            let perms = words.next().unwrap_or_default().to_owned();
            let offset = words
                .next()
                .and_then(|o| u64::from_str_radix(o, 16).ok())
                .unwrap_or(0);
            // Skip the device and inode; the rest (which may hold spaces) is the path.
            let path = line
                .splitn(6, |c: char| c.is_ascii_whitespace())
                .nth(5)
                .map_or("", str::trim)
                .to_owned();
            regions.push(Region {
                start,
                end,
                perms,
                offset,
                path,
                rss: 0,
                pss: 0,
                anon: 0,
                swap: 0,
            });
            continue;
        }
        let (Some(region), Some(value)) = (regions.last_mut(), words.next()) else {
            continue;
        };
        let Ok(kib) = value.parse::<u64>() else {
            continue;
        };
        let field = match first {
            "Rss:" => &mut region.rss,
            "Pss:" => &mut region.pss,
            "Anonymous:" => &mut region.anon,
            "Swap:" => &mut region.swap,
            _ => continue,
        };
        *field = kib * 1024;
    }
    regions
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

    #[test]
    fn smaps_regions_and_their_memory_are_read() {
        let regions = parse_smaps(SMAPS);
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].path, "/usr/bin/my app");
        assert_eq!((regions[0].rss, regions[0].pss), (128 << 10, 64 << 10));
        assert_eq!(regions[1].path, "");
        assert_eq!(regions[1].start, 0x7f00_0000_0000);
        assert_eq!((regions[1].anon, regions[1].swap), (64 << 20, 12 << 10));
        assert_eq!(regions[1].label(), "[anon rw-p 7f0000000000-7f0004000000]");
    }
}
