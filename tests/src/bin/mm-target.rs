//! A process for memory-monitor to watch: grows and shrinks its resident memory on command
//! and reports every signal it receives.
//!
//! Run it through a link named as the process should be (its `comm` is the link's name). It
//! reads commands on stdin, one per line, and answers each on stdout:
//!
//! - `grow N` — map and touch N more MiB (`growk N`: KiB); `shrink N` — unmap N MiB;
//!   `churn N TIMES` — map N KiB, touch it and unmap it, TIMES over;
//!   `madvise N` — give N MiB
//!   back with `madvise(MADV_DONTNEED)`, keeping the mappings; each answers `ok rss=<bytes>`
//! - `memfd N` — map and touch N MiB of a memfd named `mm-target-block` (shared memory that
//!   shows by that name in `smaps`); answers `ok rss=<bytes>`
//! - `cache N` — write N MiB to a file of its own (unlinked, kept open) and sync it: clean page
//!   cache charged to its cgroup, which the kernel reclaims under pressure; answers `ok rss=<bytes>`
//! - `mapfile N PATH` — map the first page of the file PATH N times, each a mapping of its own
//!   (the file's page read through each, so each holds it), as a process with very many
//!   mappings of one long path does; answers `ok rss=<bytes>`
//! - `reserve N` — map N MiB without touching it, for another process to fill
//!   (`process_vm_writev`); answers `reserved addr=<address>`
//! - `rename NAME` — `prctl(PR_SET_NAME)` (`rename 0x<hex>` for any bytes); `thread NAME` — start a thread that names itself NAME
//! - `fork` — a child sharing the memory, `child pid=<pid>`
//! - `exec NAME` — run this program again in place, named NAME (signals stay blocked across
//!   the exec, so one sent meanwhile is reported by the new program); answers `ready pid=<pid>`
//! - `setuid UID` — become user (and group) UID, every thread (`setresgid`, `setresuid`), as
//!   a service's worker drops root after it started; answers `ok rss=<bytes>`
//! - `adopt SCRIPT` — become a child subreaper and run SCRIPT (the rest of the line) with `sh`,
//!   not waited for here: what it starts in the background and leaves is re-parented to this
//!   process once `sh` exits; answers `ok rss=<bytes>`
//! - `ignore-term` — SIGTERM no longer ends it (it is still reported); `exit` — exit 0
//!
//! Every signal is reported as `signal <number> pid=<receiver>`. Until `ignore-term` is
//! given a SIGTERM or SIGINT also ends the process, as for a real service. All other signals
//! are only reported, so a test can count exactly what arrived. They are taken one at a time,
//! lowest number first, which the tests' marker signal (the highest) relies on.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};

const MIB: usize = 1 << 20;

static IGNORE_TERM: AtomicBool = AtomicBool::new(false);

fn main() {
    memory_monitor_tests::block_all_signals();
    let pid = std::process::id();
    std::thread::spawn(report_signals);
    say(&format!("ready pid={pid}"));
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut caches: Vec<std::fs::File> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("grow"), Some(n)) => {
                for _ in 0..n.parse::<usize>().expect("grow N") {
                    chunks.push(Chunk::touched());
                }
                say(&format!("ok rss={}", rss()));
            }
            (Some("growk"), Some(n)) => {
                let mut chunk = Chunk::untouched(n.parse::<usize>().expect("growk N") << 10);
                chunk.touch();
                chunks.push(chunk);
                say(&format!("ok rss={}", rss()));
            }
            (Some("churn"), Some(n)) => {
                let kib: usize = n.parse().expect("churn KIB TIMES");
                let times: usize = words.next().and_then(|t| t.parse().ok()).expect("TIMES");
                for _ in 0..times {
                    // Dropped at once: unmapped.
                    Chunk::untouched(kib << 10).touch();
                }
                say(&format!("ok rss={}", rss()));
            }
            (Some("shrink"), Some(n)) => {
                let keep = chunks.len().saturating_sub(n.parse().expect("shrink N"));
                chunks.truncate(keep);
                say(&format!("ok rss={}", rss()));
            }
            (Some("madvise"), Some(n)) => {
                let n: usize = n.parse().expect("madvise N");
                for chunk in chunks.iter_mut().rev().filter(|c| c.resident).take(n) {
                    chunk.release();
                }
                say(&format!("ok rss={}", rss()));
            }
            (Some("memfd"), Some(n)) => {
                let mut chunk = Chunk::memfd(n.parse::<usize>().expect("memfd N") * MIB);
                chunk.touch();
                chunks.push(chunk);
                say(&format!("ok rss={}", rss()));
            }
            (Some("cache"), Some(n)) => {
                caches.push(cache_file(n.parse().expect("cache N")));
                say(&format!("ok rss={}", rss()));
            }
            (Some("mapfile"), Some(n)) => {
                let path = words.next().expect("mapfile N PATH");
                map_file(n.parse().expect("mapfile N"), path);
                say(&format!("ok rss={}", rss()));
            }
            (Some("reserve"), Some(n)) => {
                let chunk = Chunk::untouched(n.parse::<usize>().expect("reserve N") * MIB);
                say(&format!("reserved addr={}", chunk.ptr as usize));
                chunks.push(chunk);
            }
            (Some("rename"), Some(name)) => {
                // Hex (`rename 0x…`) for names no command line carries: spaces, newlines,
                // bytes that are not UTF-8.
                let name = match name.strip_prefix("0x") {
                    Some(hex) => (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                        .collect(),
                    None => name.as_bytes().to_vec(),
                };
                let name = std::ffi::CString::new(name).expect("name");
                // SAFETY: PR_SET_NAME reads a NUL-terminated string.
                unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
                say(&format!("ok rss={}", rss()));
            }
            (Some("thread"), Some(name)) => {
                let name = std::ffi::CString::new(name).expect("name");
                let (named, renamed) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    // SAFETY: PR_SET_NAME reads a NUL-terminated string; it names this thread.
                    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
                    let _ = named.send(());
                    loop {
                        std::thread::park();
                    }
                });
                // Answered once the thread has its name.
                renamed.recv().expect("the thread names itself");
                say(&format!("ok rss={}", rss()));
            }
            (Some("fork"), None) => fork_child(),
            (Some("exec"), Some(name)) => exec_as(name),
            (Some("setuid"), Some(id)) => {
                let id: libc::uid_t = id.parse().expect("UID");
                // SAFETY: plain system calls; glibc applies them to every thread.
                let changed =
                    unsafe { libc::setresgid(id, id, id) == 0 && libc::setresuid(id, id, id) == 0 };
                assert!(changed, "setuid {id}: {}", std::io::Error::last_os_error());
                say(&format!("ok rss={}", rss()));
            }
            (Some("ignore-term"), None) => {
                IGNORE_TERM.store(true, Ordering::SeqCst);
                say(&format!("ok rss={}", rss()));
            }
            (Some("adopt"), Some(_)) => {
                adopt(line.trim_start()["adopt".len()..].trim());
                say(&format!("ok rss={}", rss()));
            }
            (Some("exit"), None) => std::process::exit(0),
            _ => say(&format!("error unknown command {line:?}")),
        }
    }
}

/// Makes this process its descendants' reaper, then runs `script` with `sh` (its output
/// away from the answers, no signal blocked), reaped by a thread of its own.
fn adopt(script: &str) {
    // SAFETY: prctl with integer arguments only.
    let made = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0;
    assert!(made, "subreaper: {}", std::io::Error::last_os_error());
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // SAFETY: only sigemptyset and pthread_sigmask, async-signal-safe, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut sh, || {
            // This process blocks every signal (it takes them one at a time); the script's
            // programs take theirs as usual.
            let mut none = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut sh = sh.spawn().expect("sh");
    std::thread::spawn(move || sh.wait());
}

/// Maps the first page of `path` `n` times, read-only and private, and reads it through each
/// mapping. Each starts at offset 0, so no two can merge into one; they stay until exit.
fn map_file(n: usize, path: &str) {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::open(path).expect("mapfile PATH");
    for _ in 0..n {
        // SAFETY: a fresh read-only mapping of one page of a file this process opened.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            page,
            libc::MAP_FAILED,
            "{}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the page was just mapped readable.
        unsafe { page.cast::<u8>().read_volatile() };
    }
}

/// An anonymous mapping (1 MiB unless reserved bigger), with every page written so it is
/// resident (until released), or left untouched for another process to fill.
struct Chunk {
    ptr: *mut libc::c_void,
    len: usize,
    resident: bool,
}

impl Chunk {
    fn untouched(len: usize) -> Chunk {
        Chunk {
            ptr: memory_monitor_tests::map_anonymous(len).cast(),
            len,
            resident: false,
        }
    }

    /// A shared mapping of a new memfd named `mm-target-block`.
    fn memfd(len: usize) -> Chunk {
        // SAFETY: a NUL-terminated name; the descriptor is closed once mapped.
        let ptr = unsafe {
            let fd = libc::memfd_create(c"mm-target-block".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0, "memfd_create");
            assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0, "ftruncate");
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            libc::close(fd);
            ptr
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        Chunk {
            ptr,
            len,
            resident: false,
        }
    }

    fn touched() -> Chunk {
        let mut chunk = Chunk::untouched(MIB);
        chunk.touch();
        chunk
    }

    /// Writes every page, so all of it is resident.
    fn touch(&mut self) {
        touch_every_page(self.ptr.cast(), self.len);
        self.resident = true;
    }

    /// Gives the pages back to the kernel; the mapping stays.
    fn release(&mut self) {
        // SAFETY: advises exactly this mapping.
        unsafe { libc::madvise(self.ptr, self.len, libc::MADV_DONTNEED) };
        self.resident = false;
    }
}

/// Writes one byte of every page of `len` bytes at `ptr`. Named and never inlined: the page
/// faults that grow the process happen here, and the growth profile's test looks for it.
#[inline(never)]
fn touch_every_page(ptr: *mut u8, len: usize) {
    for offset in (0..len).step_by(4096) {
        // SAFETY: within the caller's mapping of `len` bytes.
        unsafe { ptr.add(offset).write_volatile(0x5a) };
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly this mapping.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Resident bytes from /proc/self/statm.
fn rss() -> u64 {
    memory_monitor_tests::resident_bytes("self")
}

fn report_signals() -> ! {
    let set = memory_monitor_tests::all_signals();
    let pid = std::process::id();
    loop {
        // SAFETY: waits on a valid set, filling a zeroed siginfo.
        let signal = unsafe {
            let mut info = std::mem::zeroed();
            libc::sigwaitinfo(&set, &mut info)
        };
        if signal <= 0 || signal == libc::SIGCHLD {
            continue;
        }
        say(&format!("signal {signal} pid={pid}"));
        let ends = signal == libc::SIGTERM || signal == libc::SIGINT;
        if ends && !IGNORE_TERM.load(Ordering::SeqCst) {
            std::process::exit(128 + signal);
        }
    }
}

fn fork_child() {
    // SAFETY: the child only reports its signals (sigwaitinfo, write) and never returns here.
    match unsafe { libc::fork() } {
        0 => report_signals(),
        -1 => say("error fork failed"),
        child => say(&format!("child pid={child}")),
    }
}

/// Runs this program again in place, as `name`: a link beside the one it was started by. The
/// signal mask carries over (std's `Command::exec` would clear it first, leaving a moment in
/// which a signal would end the process), and so do stdin and stdout.
fn exec_as(name: &str) -> ! {
    use std::os::unix::ffi::OsStrExt as _;
    let started_as = std::env::args_os().next().expect("argv[0]");
    let link = std::path::Path::new(&started_as).with_file_name(name);
    let _ = std::fs::remove_file(&link);
    let exe = std::env::current_exe().expect("current_exe");
    std::os::unix::fs::symlink(exe, &link).expect("link");
    let path = std::ffi::CString::new(link.as_os_str().as_bytes()).expect("path");
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: a NUL-terminated path and a NULL-terminated argument vector that outlive the call.
    unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
    say("error exec failed");
    std::process::exit(1)
}

/// A file of `mib` MiB written and synced, already unlinked: its pages stay in the page cache,
/// clean, charged to this process's cgroup, until reclaimed or the file is closed. On a disk,
/// so that they can be reclaimed (a tmpfs file's could not, without swap).
fn cache_file(mib: usize) -> std::fs::File {
    use std::io::Write as _;
    let path = memory_monitor_tests::disk::disk_backed_dir()
        .join(format!("mm-target-cache-{}", std::process::id()));
    let mut file = std::fs::File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("cache file");
    std::fs::remove_file(&path).expect("unlink cache file");
    let block = vec![0x33u8; MIB];
    for _ in 0..mib {
        file.write_all(&block).expect("write cache file");
    }
    file.sync_data().expect("sync cache file");
    file
}
