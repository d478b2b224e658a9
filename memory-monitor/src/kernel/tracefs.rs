//! tracefs: where the kernel names its tracepoints and describes their record layouts.
//!
//! The BPF programs read tracepoint fields at offsets fixed when they were compiled; before
//! loading them the monitor checks each offset against this kernel's `format` files, so that a
//! kernel with another layout is refused with a reason instead of being misread.

use std::path::{Path, PathBuf};

use memory_monitor_ebpf::Field;

/// Where tracefs is looked for, as aya does, in order; the first is where it is mounted when
/// nothing is.
const MOUNT_POINTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Returns where tracefs is, mounting it at `/sys/kernel/tracing` when it is nowhere.
pub(crate) fn ensure_mounted() -> Result<PathBuf, String> {
    if let Some(mounted) = MOUNT_POINTS.iter().map(Path::new).find(|p| is_populated(p)) {
        return Ok(mounted.to_path_buf());
    }
    let target = Path::new(MOUNT_POINTS[0]);
    rustix::mount::mount(
        "nodev",
        target,
        "tracefs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .map_err(|errno| {
        format!(
            "tracefs is not mounted and mounting it at {} failed ({errno})",
            target.display()
        )
    })?;
    Ok(target.to_path_buf())
}

fn is_populated(dir: &Path) -> bool {
    dir.join("events").is_dir()
}

/// Checks that every field in `fields` is where the programs expect it on this kernel.
pub(crate) fn check_layout(tracefs: &Path, fields: &[Field]) -> Result<(), String> {
    for field in fields {
        let path = tracefs.join("events").join(field.tracepoint).join("format");
        let name = field.tracepoint.replace('/', ":");
        let format = std::fs::read_to_string(&path)
            .map_err(|_| format!("the kernel has no {name} tracepoint"))?;
        match parse_format(&format).find(|(found, _, _)| *found == field.name) {
            None => {
                return Err(format!(
                    "the kernel's {name} tracepoint has no field '{}'",
                    field.name
                ));
            }
            Some((_, offset, size)) if (offset, size) != (field.offset, field.size) => {
                return Err(format!(
                    "the kernel's {name} field '{}' is at offset {offset} (size {size}); the programs expect offset {} (size {})",
                    field.name, field.offset, field.size
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The fields of a tracefs `format` file: `(name, offset, size)`, from lines like
/// `field:char newcomm[16]; offset:28; size:16; signed:0;` (tab-separated).
fn parse_format(format: &str) -> impl Iterator<Item = (&str, usize, usize)> {
    format.lines().filter_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let declaration = parts.next()?.strip_prefix("field:")?;
        let name = declaration.split_whitespace().last()?;
        let name = name.split('[').next()?;
        let mut number = |key: &str| parts.next()?.strip_prefix(key)?.parse().ok();
        Some((name, number("offset:")?, number("size:")?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENAME: &str = "name: task_rename
ID: 123
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:char oldcomm[16];\toffset:12;\tsize:16;\tsigned:0;
\tfield:char newcomm[16];\toffset:28;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] filename;\toffset:44;\tsize:4;\tsigned:0;

print fmt: \"pid=%d oldcomm=%s newcomm=%s\", REC->pid, REC->oldcomm, REC->newcomm
";

    #[test]
    fn parses_format_files() {
        let fields: Vec<_> = parse_format(RENAME).collect();
        assert_eq!(
            fields,
            [
                ("common_type", 0, 2),
                ("common_pid", 4, 4),
                ("pid", 8, 4),
                ("oldcomm", 12, 16),
                ("newcomm", 28, 16),
                ("filename", 44, 4)
            ]
        );
    }

    #[test]
    fn layout_mismatches_are_named() {
        let dir = std::env::temp_dir().join(format!("mm-tracefs-{}", std::process::id()));
        let events = dir.join("events/task/task_rename");
        std::fs::create_dir_all(&events).unwrap();
        std::fs::write(events.join("format"), RENAME).unwrap();
        let field = |name, offset, size| Field {
            tracepoint: "task/task_rename",
            name,
            offset,
            size,
        };
        assert_eq!(check_layout(&dir, &[field("newcomm", 28, 16)]), Ok(()));
        assert_eq!(
            check_layout(&dir, &[field("newcomm", 30, 16)]).unwrap_err(),
            "the kernel's task:task_rename field 'newcomm' is at offset 28 (size 16); the programs expect offset 30 (size 16)"
        );
        assert!(
            check_layout(&dir, &[field("group_dead", 32, 1)])
                .unwrap_err()
                .contains("no field 'group_dead'")
        );
        let missing = Field {
            tracepoint: "kmem/rss_stat",
            ..field("x", 0, 0)
        };
        assert_eq!(
            check_layout(&dir, &[missing]).unwrap_err(),
            "the kernel has no kmem:rss_stat tracepoint"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
