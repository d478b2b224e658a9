//! What this host offers the kernel side, probed once before anything is planned: whether the
//! monitor may load BPF programs and sees the host's PIDs, whether the kernel has BPF ring
//! buffers, where tracefs is and whether each tracepoint field the programs read is where they
//! expect it, and what the kernel's BTF says.

use memory_monitor_ebpf::{Field, layout};

use super::Unavailable;
use super::btf::{self, KernelBtf};
use super::tracefs;

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`): BPF sees host PIDs, so the
/// monitor must see them too.
const HOST_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The facts a load plan is made from.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The kernel's BTF, or why it cannot be read.
    pub(crate) btf: Result<KernelBtf, String>,
    /// Each tracepoint field the programs may read (every one of [`layout::ALL`], then
    /// [`layout::EXIT_GROUP_DEAD`] and `oom:mark_victim`'s), and whether this kernel has it
    /// where they expect it.
    pub(crate) layout: Vec<(Field, Result<(), String>)>,
    /// This process (the kernel side never reports it).
    pub(crate) me: u32,
    /// Its parent (nor that one).
    pub(crate) parent: u32,
    /// The page size in bytes.
    pub(crate) page_size: u64,
    /// How many CPUs may exist here.
    pub(crate) possible_cpus: u32,
}

impl Host {
    /// Checks that this host can run the kernel side at all (saying why not), raises the
    /// locked-memory limit that older kernels charge maps to, and reads what a plan needs.
    pub(crate) fn probe() -> Result<Host, Unavailable> {
        check_privileges()?;
        check_pid_namespace()?;
        raise_memlock_limit();
        check_ring_buffers()?;
        let tracefs = tracefs::ensure_mounted().map_err(Unavailable)?;
        let btf = btf::kernel_btf();
        let victim = layout::VICTIM_DETAILS.map(|(field, _)| field);
        let layout = layout::ALL
            .into_iter()
            .chain([layout::EXIT_GROUP_DEAD, layout::VICTIM_PID])
            .chain(victim)
            .map(|field| (field, tracefs::check_layout(&tracefs, &[field])))
            .collect();
        Ok(Host {
            btf,
            layout,
            me: std::process::id(),
            parent: rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32),
            page_size: crate::system::procfs::page_size(),
            possible_cpus: crate::accounting::possible_cpus(),
        })
    }

    /// Whether every field `wanted` selects is where the programs expect it; the first that is
    /// not, otherwise.
    pub(crate) fn check_layout(&self, wanted: impl Fn(&Field) -> bool) -> Result<(), String> {
        self.layout
            .iter()
            .filter(|(field, _)| wanted(field))
            .try_for_each(|(_, found)| found.clone())
    }
}

fn check_privileges() -> Result<(), Unavailable> {
    use rustix::thread::CapabilitySet;
    let effective = rustix::thread::capabilities(None)
        .map_err(|e| Unavailable(format!("cannot read this process's capabilities ({e})")))?
        .effective;
    let bpf = CapabilitySet::BPF | CapabilitySet::PERFMON;
    if effective.contains(bpf) || effective.contains(CapabilitySet::SYS_ADMIN) {
        return Ok(());
    }
    let uid = rustix::process::getuid().as_raw();
    Err(Unavailable(format!(
        "not privileged (uid {uid}): eBPF mode needs root, or CAP_BPF and CAP_PERFMON"
    )))
}

/// The events come through a BPF ring buffer, which kernels have from 5.8 on: asked of the
/// kernel itself (a map created and dropped), not read from its version.
fn check_ring_buffers() -> Result<(), Unavailable> {
    match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Unavailable(
            "the kernel has no BPF ring buffers (they came with Linux 5.8)".to_string(),
        )),
        Err(e) => Err(Unavailable(format!(
            "cannot ask the kernel whether it has BPF ring buffers: {e}"
        ))),
    }
}

fn check_pid_namespace() -> Result<(), Unavailable> {
    let link = std::fs::read_link("/proc/self/ns/pid")
        .map_err(|e| Unavailable(format!("cannot read /proc/self/ns/pid ({e})")))?;
    let inode = link.to_str().and_then(|l| {
        l.strip_prefix("pid:[")?
            .strip_suffix(']')?
            .parse::<u64>()
            .ok()
    });
    if inode == Some(HOST_PID_NAMESPACE) {
        return Ok(());
    }
    Err(Unavailable(
        "the monitor runs in a PID namespace of its own (a container without hostPID?): the kernel's process IDs would not match /proc".to_string(),
    ))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones ignore it.
fn raise_memlock_limit() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let _ = setrlimit(
        Resource::Memlock,
        Rlimit {
            current: None,
            maximum: None,
        },
    );
}
