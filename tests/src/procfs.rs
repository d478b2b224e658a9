//! Facts read from `/proc`: status fields, capabilities, resident memory.

/// A field of a `/proc/.../status` (or `smaps`) text: what follows `name:`, trimmed.
pub fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// A capability set (`CapEff`, `CapBnd`, …) of a `/proc/.../status` text.
pub fn capability_set(status: &str, set: &str) -> u64 {
    u64::from_str_radix(status_field(status, set), 16).unwrap()
}

/// A `N kB` field of a `/proc/.../status` or `smaps` text, in bytes.
pub fn kib_field(text: &str, name: &str) -> u64 {
    let kib = status_field(text, name).trim_end_matches(" kB");
    kib.parse::<u64>().unwrap() << 10
}

/// The exact resident memory (`/proc/PROCESS/statm`) of `process` (a PID, or `self`), in
/// bytes; 0 when it cannot be read.
pub fn resident_bytes(process: &str) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{process}/statm")).unwrap_or_default();
    let pages: u64 = statm
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}
