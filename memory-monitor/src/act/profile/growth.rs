//! The growth profile (eBPF mode): which code grew a process's memory.
//!
//! Once a watched process is above `--profile-at` of its limit, the kernel side samples the
//! user stack of the changes that grow its RSS, one per fixed number of bytes grown (see the
//! BPF programs' `sample_growth`). On breach the samples are read, symbolized with blazesym
//! from the live process (its binaries and libraries, as it has them mapped), and added to
//! the breach's profile as its `growth` sample type.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};

use super::mapping::for_each_block;

/// The longest the growth stacks of one profile are named for; past it the profile goes
/// with addresses. The files read are the process's (a FUSE file can make a read wait).
const NAMING_TIME: Duration = Duration::from_secs(2);

/// The most of a perf map read, and of one of its lines.
const PERF_MAP_BYTES: u64 = 64 << 20;
const PERF_MAP_LINE: u64 = 4096;

use crate::kernel::RawStacks;

/// One frame of a growth stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The address in the process.
    pub(crate) address: u64,
    /// The function there, or the address in hex when it cannot be named.
    pub(crate) function: String,
}

/// A symbolized growth stack and the bytes grown under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrowthStack {
    /// Innermost first.
    pub(crate) frames: Vec<Frame>,
    /// Bytes grown.
    pub(crate) bytes: u64,
}

/// Names the frames of `stacks` of live process `pid`. Return addresses (every frame but the
/// innermost) are looked up one byte back, inside the call that they return from. Frames that
/// cannot be named within [`NAMING_TIME`] are given as their addresses.
pub(crate) fn symbolize(pid: i32, stacks: &RawStacks) -> Vec<GrowthStack> {
    if stacks.is_empty() {
        return Vec::new();
    }
    let lookup: Vec<u64> = stacks
        .iter()
        .flat_map(|(ips, _)| {
            ips.iter()
                .enumerate()
                .map(|(depth, &ip)| if depth == 0 { ip } else { ip.saturating_sub(1) })
        })
        .collect();
    let names = within_time(pid, lookup).unwrap_or_default();
    let mut names = names.into_iter();
    stacks
        .iter()
        .map(|(ips, bytes)| GrowthStack {
            frames: ips
                .iter()
                .map(|&address| Frame {
                    address,
                    function: names
                        .next()
                        .flatten()
                        .unwrap_or_else(|| format!("{address:#x}")),
                })
                .collect(),
            bytes: *bytes,
        })
        .collect()
}

/// [`name`]s `addresses` on a thread of its own, waiting for it at most [`NAMING_TIME`]. One
/// such thread at a time: while one is still held up by a file, later profiles go without
/// names rather than start more.
fn within_time(pid: i32, addresses: Vec<u64>) -> Option<Vec<Option<String>>> {
    static NAMING: AtomicBool = AtomicBool::new(false);
    if NAMING.swap(true, Ordering::AcqRel) {
        tracing::debug!(
            pid,
            "growth stacks not named: an earlier naming is still held up"
        );
        return None;
    }
    let (named, names) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("mm-symbolize".into())
        .spawn(move || {
            let found = name(pid, &addresses);
            NAMING.store(false, Ordering::Release);
            let _ = named.send(found);
        });
    if let Err(error) = spawned {
        NAMING.store(false, Ordering::Release);
        tracing::debug!(pid, "growth stacks not named: {error}");
        return None;
    }
    let found = names.recv_timeout(NAMING_TIME).ok();
    if found.is_none() {
        tracing::debug!(pid, "growth stacks not named within {NAMING_TIME:?}");
    }
    found
}

/// Addresses in one file: each address's index, and its offset in the file.
type Held = Vec<(usize, u64)>;

/// The function at each of `addresses` in live process `pid`, where it can be named: from the
/// symbols of the file mapped there (opened as [`open_own_file`] does), or from the process's
/// perf map (`/tmp/perf-PID.map`, written by JITs) for code in no file.
fn name(pid: i32, addresses: &[u64]) -> Vec<Option<String>> {
    let mut names = vec![None; addresses.len()];
    // Each executable file mapping holding some of the addresses, with their file offsets.
    let mut files: Vec<(Vec<u8>, Held)> = Vec::new();
    let mut in_file = vec![false; addresses.len()];
    let Ok(maps) = File::open(format!("/proc/{pid}/maps")) else {
        return names;
    };
    let read = for_each_block(BufReader::new(maps), |mapping| {
        if mapping.perms.get(2) != Some(&b'x') || !mapping.path.starts_with(b"/") {
            return;
        }
        let held: Vec<(usize, u64)> = addresses
            .iter()
            .enumerate()
            .filter(|&(_, &address)| (mapping.start..mapping.end).contains(&address))
            .map(|(index, &address)| (index, address - mapping.start + mapping.offset))
            .collect();
        if held.is_empty() {
            return;
        }
        held.iter().for_each(|&(index, _)| in_file[index] = true);
        match files.iter_mut().find(|(path, _)| path == mapping.path) {
            Some((_, known)) => known.extend(held),
            None => files.push((mapping.path.to_vec(), held)),
        }
    });
    if let Err(error) = read {
        tracing::debug!(
            pid,
            "cannot read the memory map to name growth stacks: {error}"
        );
        return names;
    }
    let symbolizer = Symbolizer::new();
    for (path, held) in files {
        let file = match open_own_file(pid, &path) {
            Ok(file) => file,
            Err(error) => {
                let path = crate::system::procfs::Escaped(&path);
                tracing::debug!(pid, "growth stacks: not reading {path}: {error}");
                continue;
            }
        };
        // The file already open, by its descriptor: blazesym opens what it is given again,
        // and this one is known to be the process's own regular file. Its symbols only: debug
        // links would name further files.
        let mut elf = Elf::new(format!("/proc/self/fd/{}", file.as_raw_fd()));
        elf.debug_syms = false;
        let offsets: Vec<u64> = held.iter().map(|&(_, offset)| offset).collect();
        match symbolizer.symbolize(&Source::Elf(elf), Input::FileOffset(&offsets)) {
            Ok(found) => {
                for (&(index, _), symbol) in held.iter().zip(found) {
                    if let Symbolized::Sym(symbol) = symbol {
                        names[index] = Some(symbol.name.into_owned());
                    }
                }
            }
            Err(error) => tracing::debug!(pid, "cannot name growth stacks' functions: {error}"),
        }
    }
    let jitted: Vec<usize> = (0..addresses.len()).filter(|&i| !in_file[i]).collect();
    if !jitted.is_empty() {
        name_from_perf_map(pid, addresses, &jitted, &mut names);
    }
    names
}

/// Names `addresses[wanted]` from the process's perf map, as the process sees it: lines of
/// `START SIZE NAME`, hexadecimal. Read a line at a time, each and the whole bounded.
fn name_from_perf_map(pid: i32, addresses: &[u64], wanted: &[usize], names: &mut [Option<String>]) {
    let Some(own_pid) = pid_in_own_namespace(pid) else {
        return;
    };
    let Ok(map) = open_own_file(pid, format!("/tmp/perf-{own_pid}.map").as_bytes()) else {
        return;
    };
    let mut map = BufReader::new(map.take(PERF_MAP_BYTES));
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut map).take(PERF_MAP_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let mut fields = text.trim_end().splitn(3, ' ');
        let hex = |field: Option<&str>| {
            let field = field?;
            u64::from_str_radix(field.trim_start_matches("0x"), 16).ok()
        };
        let (Some(start), Some(size), Some(function)) =
            (hex(fields.next()), hex(fields.next()), fields.next())
        else {
            continue;
        };
        for &index in wanted {
            if (start..start.saturating_add(size)).contains(&addresses[index]) {
                names[index] = Some(function.to_owned());
            }
        }
    }
}

/// The PID process `pid` has in its own PID namespace (the last of `NSpid`), which names its
/// perf map.
fn pid_in_own_namespace(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// Opens `path` as process `pid` sees it, for reading what it names without being held up or
/// led elsewhere: resolved under the process's own root (`/proc/PID/root`; its absolute
/// symbolic links and `..` stay inside it, as in a container), opened without blocking (a
/// FIFO would wait for a writer), and refused unless it is a regular file.
fn open_own_file(pid: i32, path: &[u8]) -> std::io::Result<File> {
    use std::os::unix::ffi::OsStrExt as _;

    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, fstat, open, openat2};
    let root = open(
        format!("/proc/{pid}/root"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = openat2(
        &root,
        std::ffi::OsStr::from_bytes(path),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    match FileType::from_raw_mode(fstat(&file)?.st_mode) {
        FileType::RegularFile => Ok(File::from(file)),
        other => Err(std::io::Error::other(format!(
            "a {other:?}, not a regular file"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        a_function_to_find as *const () as u64
    }

    #[test]
    fn only_the_process_own_regular_files_are_opened() {
        let me = std::process::id() as i32;
        assert!(
            open_own_file(me, b"/proc/self/exe").is_err(),
            "a magic link"
        );
        let dir = std::env::temp_dir().join(format!("mm-own-{me}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let fifo = dir.join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        use std::os::unix::ffi::OsStrExt as _;
        // Neither waits for a writer.
        assert!(open_own_file(me, fifo.as_os_str().as_bytes()).is_err());
        assert!(open_own_file(me, dir.as_os_str().as_bytes()).is_err());
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(open_own_file(me, file.as_os_str().as_bytes()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_own_functions_are_named() {
        let address = a_function_to_find();
        let stacks = symbolize(std::process::id() as i32, &vec![(vec![address], 4096)]);
        assert_eq!(stacks[0].bytes, 4096);
        assert!(
            stacks[0].frames[0].function.contains("a_function_to_find"),
            "{:?}",
            stacks[0].frames
        );
    }
}
