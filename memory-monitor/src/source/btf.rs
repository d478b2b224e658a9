//! Kernel structure offsets from the kernel's own type information (BTF), for the `tp_btf`
//! RSS program: it reads `current->mm` and `mm->rss_stat[member].count` itself, at offsets
//! that differ between kernels and configurations.

use btf_rs::{Btf, Struct, Type};
use memory_monitor_ebpf::member;

/// Where the kernel keeps what the `tp_btf` RSS program reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `offsetof(struct task_struct, mm)`.
    pub task_mm: u64,
    /// `offsetof(struct mm_struct, rss_stat[m].count)` for each counter `m`.
    pub rss_counts: [u64; member::COUNT],
}

/// The kernel's BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Reads the offsets from the running kernel's BTF.
pub fn kernel_offsets() -> Result<KernelOffsets, String> {
    let btf = Btf::from_file(VMLINUX_BTF)
        .map_err(|e| format!("cannot read the kernel's BTF ({VMLINUX_BTF}): {e}"))?;
    offsets(&btf)
}

fn offsets(btf: &Btf) -> Result<KernelOffsets, String> {
    let (task_mm, _) = member_of(btf, "task_struct", "mm")?;
    let (rss_stat, rss_type) = member_of(btf, "mm_struct", "rss_stat")?;
    let Type::Array(counters) = rss_type else {
        return Err("the kernel's mm_struct.rss_stat is not an array".to_string());
    };
    if counters.len() < member::COUNT {
        return Err(format!(
            "the kernel's mm_struct.rss_stat has {} counters, not {}",
            counters.len(),
            member::COUNT
        ));
    }
    let Ok(Type::Struct(counter)) = btf.resolve_chained_type(&counters) else {
        return Err("the kernel's mm_struct.rss_stat does not hold structs".to_string());
    };
    let (count, _) = find(btf, &counter, "count", 0)
        .ok_or("the kernel's percpu_counter has no field 'count'")?;
    let element = counter.size() as u64;
    let mut rss_counts = [0; member::COUNT];
    for (m, offset) in rss_counts.iter_mut().enumerate() {
        *offset = rss_stat + m as u64 * element + count;
    }
    Ok(KernelOffsets {
        task_mm,
        rss_counts,
    })
}

/// The byte offset and type of `wanted` in struct `name`.
fn member_of(btf: &Btf, name: &str, wanted: &str) -> Result<(u64, Type), String> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|e| format!("the kernel's BTF has no struct {name} ({e})"))?;
    types
        .into_iter()
        .filter_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .find_map(|s| find(btf, &s, wanted, 0))
        .ok_or_else(|| format!("the kernel's struct {name} has no field '{wanted}'"))
}

/// Looks for `wanted` among `within`'s members, and inside its anonymous structs and unions
/// (where randomised or grouped fields live); `base` is `within`'s own offset in bytes.
fn find(btf: &Btf, within: &Struct, wanted: &str, base: u64) -> Option<(u64, Type)> {
    within.members.iter().find_map(|member| {
        let offset = base + u64::from(member.bit_offset()) / 8;
        let name = btf.resolve_name(member).unwrap_or_default();
        let member_type = btf.resolve_chained_type(member).ok()?;
        if name == wanted {
            return Some((offset, member_type));
        }
        match (name.is_empty(), &member_type) {
            (true, Type::Struct(inner) | Type::Union(inner)) => find(btf, inner, wanted, offset),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_offsets_in_this_kernel() {
        let Ok(btf) = Btf::from_file(VMLINUX_BTF) else {
            eprintln!("skipping: no {VMLINUX_BTF} here");
            return;
        };
        let offsets = offsets(&btf).expect("offsets");
        assert!(offsets.task_mm > 0);
        let step = offsets.rss_counts[1] - offsets.rss_counts[0];
        assert!(step >= 8, "one percpu_counter apart");
        assert_eq!(offsets.rss_counts[3] - offsets.rss_counts[2], step);
        assert!(member_of(&btf, "mm_struct", "no_such_field").is_err());
    }
}
