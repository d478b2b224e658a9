//! The growth profile (eBPF mode): which code grew a process's memory.
//!
//! Once a watched process is above `--profile-at` of its limit, the kernel side samples the
//! user stack of the changes that grow its RSS, one per fixed number of bytes grown (see the
//! BPF programs' `sample_growth`). On breach the samples are read, symbolized with blazesym
//! from the live process (its binaries and libraries, as it has them mapped), and added to
//! the breach's profile as its `growth` sample type.

use blazesym::Pid;
use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};

/// Sampled user stacks of one process: instruction pointers, innermost first, and the bytes
/// grown under each stack.
pub type RawStacks = Vec<(Vec<u64>, u64)>;

/// One frame of a growth stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The address in the process.
    pub address: u64,
    /// The function there, or the address in hex when it cannot be named.
    pub function: String,
}

/// A symbolized growth stack and the bytes grown under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrowthStack {
    /// Innermost first.
    pub frames: Vec<Frame>,
    /// Bytes grown.
    pub bytes: u64,
}

/// Names the frames of `stacks` of live process `pid`. Return addresses (every frame but the
/// innermost) are looked up one byte back, inside the call that they return from.
pub fn symbolize(pid: i32, stacks: &RawStacks) -> Vec<GrowthStack> {
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
    let mut process = Process::new(Pid::from(pid as u32));
    // Through /proc/PID/root/<path>, which CAP_SYS_PTRACE allows; /proc/PID/map_files would
    // need CAP_SYS_ADMIN, dropped after start-up.
    process.map_files = false;
    let source = Source::Process(process);
    let symbolizer = Symbolizer::new();
    let names: Vec<Option<String>> = match symbolizer.symbolize(&source, Input::AbsAddr(&lookup)) {
        Ok(found) => found
            .into_iter()
            .map(|symbol| match symbol {
                Symbolized::Sym(sym) => Some(sym.name.into_owned()),
                Symbolized::Unknown(_) => None,
            })
            .collect(),
        Err(error) => {
            tracing::debug!(pid, "cannot name the growth stacks' functions: {error}");
            vec![None; lookup.len()]
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        a_function_to_find as *const () as u64
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
