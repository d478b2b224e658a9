//! A preloaded library for vmtest's guests (built by `cargo xtask vmtest` with `rustc`, not part
//! of any crate's build): it has the verifier report its statistics on every program load it
//! sees, and prints `vmtest-verifier: program=NAME processed=N` on stderr.
//!
//! Why: kernels before 5.16 keep no `verified_insns` in a program's info, and aya asks the
//! kernel for a verifier log only after a load failed. So `syscall(SYS_bpf, BPF_PROG_LOAD, …)`
//! calls that ask for no log are given a small one at `BPF_LOG_STATS` (the last lines only,
//! "processed N insns …"), which is read and taken away again before the caller sees the
//! attributes. Every other call goes to the kernel unchanged. x86-64 Linux only, as the guests.

use std::arch::asm;

const SYS_BPF: i64 = 321;
const SYS_WRITE: i64 = 1;
const BPF_PROG_LOAD: i64 = 5;
/// `BPF_LOG_STATS`: the verifier's statistics only.
const LOG_STATS: u32 = 4;
/// Offsets in `union bpf_attr` for `BPF_PROG_LOAD`.
const LOG_LEVEL: usize = 24;
const LOG_SIZE: usize = 28;
const LOG_BUF: usize = 32;
const PROG_NAME: usize = 48;

unsafe extern "C" {
    fn __errno_location() -> *mut i32;
}

/// The kernel's own system call, with six arguments.
unsafe fn raw(n: i64, a: [i64; 6]) -> i64 {
    let ret;
    // SAFETY: the x86-64 Linux system call convention; the caller vouches for the arguments.
    unsafe {
        asm!("syscall", inlateout("rax") n => ret, in("rdi") a[0], in("rsi") a[1],
             in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// glibc's `syscall(2)`, in its place: integer arguments in registers, -1 and `errno` on
/// failure.
///
/// # Safety
/// As `syscall(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(
    n: i64,
    a1: i64,
    a2: i64,
    a3: i64,
    a4: i64,
    a5: i64,
    a6: i64,
) -> i64 {
    let args = [a1, a2, a3, a4, a5, a6];
    let ret = if n == SYS_BPF && a1 == BPF_PROG_LOAD && a2 != 0 {
        // SAFETY: a BPF_PROG_LOAD's second argument is its attributes, `a3` bytes of them.
        unsafe { prog_load(a2 as *mut u8, args) }
    } else {
        // SAFETY: as the caller's call.
        unsafe { raw(n, args) }
    };
    if (-4095..0).contains(&ret) {
        // SAFETY: this thread's errno.
        unsafe { *__errno_location() = -ret as i32 };
        return -1;
    }
    ret
}

/// A program load, with the statistics asked for when no log was.
unsafe fn prog_load(attr: *mut u8, args: [i64; 6]) -> i64 {
    // SAFETY: the attributes are at least up to the program's name (aya passes all of them).
    unsafe {
        if (attr.add(LOG_BUF) as *const u64).read_unaligned() != 0 {
            return raw(SYS_BPF, args);
        }
        let mut log = [0u8; 1024];
        (attr.add(LOG_LEVEL) as *mut u32).write_unaligned(LOG_STATS);
        (attr.add(LOG_SIZE) as *mut u32).write_unaligned(log.len() as u32);
        (attr.add(LOG_BUF) as *mut u64).write_unaligned(log.as_mut_ptr() as u64);
        let ret = raw(SYS_BPF, args);
        (attr.add(LOG_LEVEL) as *mut u32).write_unaligned(0);
        (attr.add(LOG_SIZE) as *mut u32).write_unaligned(0);
        (attr.add(LOG_BUF) as *mut u64).write_unaligned(0);
        if ret >= 0 {
            let name = std::slice::from_raw_parts(attr.add(PROG_NAME), 16);
            report(name, &log);
        }
        ret
    }
}

/// Writes `vmtest-verifier: program=NAME processed=N` for the log's "processed N insns".
fn report(name: &[u8], log: &[u8]) {
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    let log = &log[..log.iter().position(|&b| b == 0).unwrap_or(log.len())];
    let text = String::from_utf8_lossy(log);
    let Some(processed) = text
        .split("processed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
    else {
        return;
    };
    let line = format!(
        "vmtest-verifier: program={} processed={processed}\n",
        String::from_utf8_lossy(name)
    );
    // SAFETY: writes the line's bytes to stderr.
    unsafe {
        raw(
            SYS_WRITE,
            [2, line.as_ptr() as i64, line.len() as i64, 0, 0, 0],
        )
    };
}
