//! What the test programs in `src/bin` do to themselves: block signals, map memory.

/// Every signal, as a set.
pub fn all_signals() -> libc::sigset_t {
    // SAFETY: sigfillset initialises the set it is given.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

/// Blocks every signal in this thread (and so in threads and children made after): the test
/// programs take them one by one, or not at all.
pub fn block_all_signals() {
    let set = all_signals();
    // SAFETY: a valid set; blocking is always allowed (SIGKILL/SIGSTOP are ignored by the call).
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// A new private anonymous read-write mapping of `len` bytes, untouched (for the test
/// programs that grow their memory).
pub fn map_anonymous(len: usize) -> *mut u8 {
    // SAFETY: a fresh mapping, overlapping nothing.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(ptr, libc::MAP_FAILED, "mmap");
    ptr.cast()
}
