//! Which container and pod a process belongs to, as its cgroup path says: on a Kubernetes
//! node a PID and a `comm` tell an operator little, the container runtime's container ID and
//! the pod's UID tell them which workload it was.
//!
//! The runtimes name the cgroups they make:
//!
//! - systemd driver: `…/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
//!   (containerd), `crio-<id>.scope` (CRI-O), `docker-<id>.scope` (Docker), `libpod-<id>.scope`
//!   (Podman); the pod's UID with its dashes written as underscores (systemd reserves `-` in
//!   slice names for nesting);
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`, `/docker/<id>`, `…/crio-<id>`.
//!
//! Only cgroups where the runtimes put them count: a container right under its pod under the
//! kubelet's root (`kubepods`), or right under the root's `docker`, `system.slice` (Docker) or
//! `machine.slice` (Podman). A user given a subtree of their own (`user@UID.service`, systemd
//! in a container) can name a cgroup in it after anyone's container, so names elsewhere, and
//! any below a container's own cgroup, are not taken for one.
//!
//! Read once per process, when it is admitted (or looked at again after a move), into
//! fixed-size records: judging and logging it later allocate nothing.

use std::fmt;

/// The longest container ID kept: runtimes use 64 hex digits.
const ID_LEN: usize = 64;
/// A pod UID's length: a UUID, `8-4-4-4-12` hex digits (a static pod's, 32 digits, is shorter).
const UID_LEN: usize = 36;

/// The container and pod of a process, either or both unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    container: Text<ID_LEN>,
    pod: Text<UID_LEN>,
}

impl Identity {
    /// Reads them from the text of `/proc/PID/cgroup`: the v2 line's path (`0::…`) first,
    /// then the v1 hierarchies' (a hybrid host's runtime may make its cgroups only there).
    pub(crate) fn from_proc_cgroup(text: &[u8]) -> Identity {
        let lines = || text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let v2 = lines().filter(|line| line.starts_with(b"0::"));
        let v1 = lines().filter(|line| !line.starts_with(b"0::"));
        let mut identity = Identity::default();
        for line in v2.chain(v1) {
            let path = line.splitn(3, |&b| b == b':').nth(2).unwrap_or(b"");
            let found = Identity::from_path(path);
            if identity.container().is_none() {
                identity.container = found.container;
            }
            if identity.pod().is_none() {
                identity.pod = found.pod;
            }
        }
        identity
    }

    /// Reads them from a cgroup path, where the runtimes put their cgroups (see above). A path
    /// that starts with `..` (a cgroup outside the monitor's own cgroup namespace, as a pod
    /// sees other pods') is read from the first component after the dots, which may also be a
    /// pod's or its QoS class's, under the kubelet's root.
    pub(crate) fn from_path(path: &[u8]) -> Identity {
        let mut components = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .peekable();
        let relative = components.peek() == Some(&&b".."[..]);
        let mut parts = [&b""[..]; 4];
        for (part, component) in parts.iter_mut().zip(components.skip_while(|c| *c == b"..")) {
            *part = component;
        }
        match parts[0] {
            b"kubepods.slice" | b"kubepods" => Identity::in_pods(&parts[1..]),
            b"docker" | b"system.slice" | b"machine.slice" => Identity {
                container: container_id(parts[1]).unwrap_or_default(),
                pod: Text::default(),
            },
            _ if relative => Identity::in_pods(&parts),
            _ => Identity::default(),
        }
    }

    /// Reads them from the components under the kubelet's root: a QoS class (absent for a
    /// guaranteed pod), the pod, its container.
    fn in_pods(parts: &[&[u8]]) -> Identity {
        let class = |part: &[u8]| {
            matches!(part, b"besteffort" | b"burstable")
                || matches!(
                    part,
                    b"kubepods-besteffort.slice" | b"kubepods-burstable.slice"
                )
        };
        let parts = match parts.first() {
            Some(first) if class(first) => &parts[1..],
            _ => parts,
        };
        let Some(pod) = parts.first().and_then(|part| pod_uid(part)) else {
            return Identity::default();
        };
        Identity {
            container: parts
                .get(1)
                .and_then(|part| container_id(part))
                .unwrap_or_default(),
            pod,
        }
    }

    /// The container runtime's ID of its container.
    pub(crate) fn container(&self) -> Option<&str> {
        self.container.get()
    }

    /// Its pod's UID, with dashes.
    pub(crate) fn pod(&self) -> Option<&str> {
        self.pod.get()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.container(), self.pod()) {
            (Some(id), Some(pod)) => write!(f, "container {id} of pod {pod}"),
            (Some(id), None) => write!(f, "container {id}"),
            (None, Some(pod)) => write!(f, "pod {pod}"),
            (None, None) => f.write_str("no container"),
        }
    }
}

/// The container ID a cgroup's name carries: `<runtime>-<id>.scope` (systemd driver), or
/// `<id>` or `crio-<id>` alone (cgroupfs driver).
fn container_id(part: &[u8]) -> Option<Text<ID_LEN>> {
    let name = part.strip_suffix(b".scope").unwrap_or(part);
    let id = [&b"cri-containerd-"[..], b"crio-", b"docker-", b"libpod-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(*prefix))
        .unwrap_or(name);
    // Hex digits only (so `crio-conmon-<id>`, the runtime's monitor, is not its container),
    // as long as an ID is (a cgroupfs name of a few hex digits is not one).
    let hex = id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (hex && id.len() == ID_LEN).then(|| Text::new(id))
}

/// The pod UID a cgroup's name carries: `kubepods-<class>-pod<uid>.slice` or
/// `kubepods-pod<uid>.slice` (systemd driver, `_` for `-`), or `pod<uid>` (cgroupfs driver).
fn pod_uid(part: &[u8]) -> Option<Text<UID_LEN>> {
    let uid = match part.strip_suffix(b".slice") {
        Some(slice) if slice.starts_with(b"kubepods-") => {
            let at = slice.windows(4).rposition(|w| w == b"-pod")?;
            &slice[at + 4..]
        }
        Some(_) => return None,
        None => part.strip_prefix(b"pod")?,
    };
    let digits = uid.iter().filter(|b| b.is_ascii_hexdigit()).count();
    let dashes = uid.iter().filter(|&&b| b == b'-' || b == b'_').count();
    let well_formed = (digits == 32 && digits + dashes == uid.len())
        && (dashes == 0 || dashes == 4)
        && uid.iter().all(|b| !b.is_ascii_uppercase());
    well_formed.then(|| {
        let mut text = Text::new(uid);
        text.bytes[..text.len as usize].iter_mut().for_each(|b| {
            if *b == b'_' {
                *b = b'-';
            }
        });
        text
    })
}

/// ASCII text of at most `N` bytes, held inline.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Text<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> Text<N> {
    /// `bytes` (ASCII, at most `N` of them: the parsers above make sure).
    fn new(bytes: &[u8]) -> Text<N> {
        let mut text = Text::default();
        let len = bytes.len().min(N);
        text.bytes[..len].copy_from_slice(&bytes[..len]);
        text.len = len as u8;
        text
    }

    fn get(&self) -> Option<&str> {
        let text = std::str::from_utf8(&self.bytes[..self.len as usize]).ok()?;
        (!text.is_empty()).then_some(text)
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Text<N> {
        Text {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.get().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c8a2b9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";
    const UID: &str = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d";

    fn of(path: &str) -> (Option<String>, Option<String>) {
        let identity = Identity::from_path(path.as_bytes());
        (
            identity.container().map(str::to_owned),
            identity.pod().map(str::to_owned),
        )
    }

    fn both() -> (Option<String>, Option<String>) {
        (Some(ID.to_owned()), Some(UID.to_owned()))
    }

    #[test]
    fn each_runtime_under_the_systemd_driver() {
        let pod = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            UID.replace('-', "_")
        );
        for scope in ["cri-containerd", "crio", "docker"] {
            assert_eq!(of(&format!("{pod}/{scope}-{ID}.scope")), both(), "{scope}");
        }
        // Guaranteed pods sit right under kubepods.slice.
        let guaranteed = format!(
            "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(of(&guaranteed), both());
        // Docker without Kubernetes, and Podman.
        assert_eq!(
            of(&format!("/system.slice/docker-{ID}.scope")),
            (Some(ID.to_owned()), None)
        );
        assert_eq!(
            of(&format!("/machine.slice/libpod-{ID}.scope/container")),
            (Some(ID.to_owned()), None)
        );
    }

    #[test]
    fn each_layout_of_the_cgroupfs_driver() {
        assert_eq!(of(&format!("/kubepods/burstable/pod{UID}/{ID}")), both());
        assert_eq!(of(&format!("/kubepods/pod{UID}/{ID}")), both());
        assert_eq!(
            of(&format!("/kubepods/besteffort/pod{UID}/crio-{ID}")),
            both()
        );
        assert_eq!(of(&format!("/docker/{ID}")), (Some(ID.to_owned()), None));
    }

    #[test]
    fn a_pod_without_its_container_and_names_that_only_look_alike() {
        // The pod's own slice (its sandbox's processes are in a container of their own).
        let slice = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            UID.replace('-', "_")
        );
        assert_eq!(of(&slice), (None, Some(UID.to_owned())));
        // CRI-O's conmon is the runtime's, not the container.
        assert_eq!(of(&format!("{slice}/crio-conmon-{ID}.scope")).0, None);
        // A static pod's UID is a hash without dashes.
        let hash = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            of(&format!("/kubepods/pod{hash}/{ID}")).1.as_deref(),
            Some(hash)
        );
        for plain in [
            "/",
            "/system.slice/nginx.service",
            "/user.slice/user-1000.slice/session-2.scope",
            "/kubepods.slice/kubepods-burstable.slice",
            "/docker/abc123",
            "/podcast/x",
            "/system.slice/docker-notanid.scope",
        ] {
            assert_eq!(of(plain), (None, None), "{plain}");
        }
        // Upper case is no ID: runtimes write lower-case hex.
        assert_eq!(of(&format!("/docker/{}", ID.to_uppercase())), (None, None));
    }

    #[test]
    fn names_outside_the_runtimes_roots_or_below_a_container_are_no_container() {
        let other = format!("cri-containerd-{ID}.scope");
        let pod = format!("kubepods-pod{}.slice", UID.replace('-', "_"));
        // A user's delegated subtree, named after someone else's container and pod.
        for spoof in [
            format!("/user.slice/user-1000.slice/user@1000.service/app.slice/{other}"),
            format!("/user.slice/user-1000.slice/user@1000.service/{pod}/{other}"),
            format!("/user.slice/user-1000.slice/user@1000.service/kubepods/pod{UID}/{ID}"),
            format!("/system.slice/app.service/docker/{ID}"),
        ] {
            assert_eq!(of(&spoof), (None, None), "{spoof}");
        }
        // A container's own subtree (systemd inside it): the container is its own, not the
        // one it names below itself.
        let mine = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let mine_uid = "00000000-1111-4222-8333-444444444444";
        let nested = format!(
            "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{mine}.scope/{pod}/{other}",
            mine_uid.replace('-', "_")
        );
        assert_eq!(
            of(&nested),
            (Some(mine.to_owned()), Some(mine_uid.to_owned()))
        );
        let nested = format!("/docker/{mine}/docker/{ID}");
        assert_eq!(of(&nested), (Some(mine.to_owned()), None));
    }

    #[test]
    fn the_v2_line_of_proc_cgroup_decides() {
        let text = format!("12:memory:/other\n0::/kubepods/pod{UID}/{ID}\n");
        let identity = Identity::from_proc_cgroup(text.as_bytes());
        assert_eq!(identity.container(), Some(ID));
        assert_eq!(identity.pod(), Some(UID));
        // A hybrid host whose runtime uses only the v1 hierarchies.
        let v1 = format!("4:memory:/docker/{ID}\n0::/\n");
        assert_eq!(
            Identity::from_proc_cgroup(v1.as_bytes()).container(),
            Some(ID)
        );
        // A pod's cgroup namespace shows other pods' cgroups as `/../..` paths.
        let relative = format!(
            "0::/../../kubepods-pod{}.slice/crio-{ID}.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(
            Identity::from_proc_cgroup(relative.as_bytes()).pod(),
            Some(UID)
        );
        assert_eq!(Identity::from_proc_cgroup(b""), Identity::default());
    }
}
