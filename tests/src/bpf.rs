//! The kernel side's BPF objects, read from outside the monitor that holds them.

/// The BPF map named `name` that process `pid` holds open, opened by its ID.
pub fn bpf_map_of(pid: i32, name: &str) -> aya::maps::MapData {
    let id = bpf_objects_of(pid)
        .into_iter()
        .filter(|(kind, _)| kind == "map_id")
        .find(|(_, id)| {
            aya::maps::MapInfo::from_id(*id).is_ok_and(|info| info.name_as_str() == Some(name))
        })
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("process {pid} holds no map {name}"));
    aya::maps::MapData::from_id(id).unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// The BPF objects (program, link and map IDs) a process holds open, from its fdinfo.
pub fn bpf_objects_of(pid: i32) -> Vec<(String, u32)> {
    let mut objects = Vec::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return objects;
    };
    for entry in entries.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines() {
            for kind in ["prog_id", "link_id", "map_id"] {
                if let Some(id) = line.strip_prefix(kind).and_then(|r| r.strip_prefix(':'))
                    && let Ok(id) = id.trim().parse()
                {
                    objects.push((kind.to_string(), id));
                }
            }
        }
    }
    objects.sort();
    objects.dedup();
    objects
}
