//! Kubernetes cgroup path grammar: which pod, QoS class and container a cgroup path names.
//!
//! Layouts (v1 hierarchies and cgroup v2 use the same relative paths):
//! - cgroupfs driver: `/kubepods[/burstable|/besteffort]/pod<uid>[/<container-id>]`, CRI-O with
//!   cgroupfs: `.../pod<uid>/crio-<id>` and its monitor `crio-conmon-<id>`
//! - systemd driver: `/kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid_>.slice`
//!   `[/cri-containerd-<id>.scope | /crio-<id>.scope | /docker-<id>.scope]`; `crio-conmon-<id>.scope`
//!   is CRI-O's monitor process, not a container
//! - nested prefixes: kind's `/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-<qos>.slice/…`,
//!   docker-in-docker `/docker/<id>/kubepods/…`, anything before the kubepods segment.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "guaranteed",
            Self::Burstable => "burstable",
            Self::BestEffort => "besteffort",
        }
    }
}

/// What a parsed path is the cgroup of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `pod<uid>`: created by the kubelet at admission, removed at pod removal.
    Pod,
    /// A container's own cgroup (sandbox or app).
    Container,
    /// Inside a pod but not a container: CRI-O's conmon scope, or a sub-cgroup a container made
    /// below its own (then `container_id` names the container that owns it).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath {
    pub qos: Qos,
    /// Pod UID, lower case with dashes.
    pub pod_uid: String,
    /// Container id (hex) of container-level paths and of sub-cgroups of a container.
    pub container_id: Option<String>,
    /// `containerd`, `crio`, `docker`; None for the cgroupfs driver's bare ids.
    pub runtime: Option<&'static str>,
    pub level: Level,
}

fn is_hex_id(s: &str) -> bool {
    (12..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Normalize a pod UID: systemd slices write `_` for `-`; static pods have 32 bare hex digits.
fn pod_uid(s: &str) -> Option<String> {
    let uid = s.replace('_', "-").to_ascii_lowercase();
    let groups: Vec<usize> = uid.split('-').map(str::len).collect();
    let hex = uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (hex && (groups == [8, 4, 4, 4, 12] || groups == [32])).then_some(uid)
}

enum Segment {
    Container(String, Option<&'static str>),
    Monitor,
}

/// A segment below the pod: cgroupfs `<id>`, `crio-<id>`, systemd `<prefix><id>.scope`.
fn container_segment(seg: &str) -> Option<Segment> {
    if is_hex_id(seg) {
        return Some(Segment::Container(seg.to_string(), None));
    }
    let name = seg.strip_suffix(".scope").unwrap_or(seg);
    if let Some(id) = name.strip_prefix("crio-conmon-") {
        return is_hex_id(id).then_some(Segment::Monitor);
    }
    for (prefix, runtime) in [
        ("cri-containerd-", "containerd"),
        ("crio-", "crio"),
        ("docker-", "docker"),
    ] {
        if let Some(id) = name.strip_prefix(prefix) {
            return is_hex_id(id).then(|| Segment::Container(id.to_string(), Some(runtime)));
        }
    }
    None
}

/// Pod segment: `pod<uid>` (cgroupfs) or `…kubepods[-<qos>]-pod<uid_>.slice` (systemd).
fn pod_segment(seg: &str) -> Option<String> {
    if let Some(uid) = seg.strip_prefix("pod") {
        return pod_uid(uid);
    }
    let slice = seg.strip_suffix(".slice")?;
    let at = slice.rfind("-pod")?;
    if !slice[..at].contains("kubepods") {
        return None;
    }
    pod_uid(&slice[at + 4..])
}

fn is_kubepods_root(seg: &str) -> bool {
    seg == "kubepods" || seg == "kubepods.slice" || seg.ends_with("-kubepods.slice")
}

fn qos_segment(seg: &str) -> Option<Qos> {
    let slice = |q: &str| {
        seg.strip_suffix(".slice")
            .is_some_and(|s| s.contains("kubepods") && s.ends_with(&format!("-{q}")))
    };
    if seg == "burstable" || slice("burstable") {
        Some(Qos::Burstable)
    } else if seg == "besteffort" || slice("besteffort") {
        Some(Qos::BestEffort)
    } else {
        None
    }
}

/// Parse a cgroup path (v1 or v2, relative to the hierarchy root, any prefix before kubepods).
///
/// Attribution is anchored at the FIRST kubepods root: the node's. The prefix before it (kind's
/// `/kubelet.slice/`, docker-in-docker's `/docker/<id>/`) is the node's own and no tenant writes
/// there, while everything below a container's cgroup is the tenant's to name: a container that
/// can write its subtree (cgroup v2 delegation, nested runtimes) may create
/// `<its cgroup>/kubepods/pod<victim>/<id>`. Such a path is `Level::Other` of the outer
/// container, never the named pod.
pub fn parse(path: &str) -> Option<CgroupPath> {
    parse_under(path, None)
}

/// [`parse`] with the node's kubepods root known (see [`node_root`]): a path parses only where
/// that root's segments first appear in it, and the grammar applies right below them. A node
/// nested in a pod of an outer cluster (kind in a CI pod) has its root below the outer one,
/// where the first-root rule alone would name the outer pod. Any prefix before the root is
/// allowed: a cgroup-namespaced cgroupfs shows the root without the host's prefix, the kernel's
/// tracepoints with it; a tenant can only add segments after the root, never before it.
pub fn parse_under(path: &str, node_root: Option<&str>) -> Option<CgroupPath> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let root = match node_root {
        Some(r) => {
            let anchor: Vec<&str> = r.split('/').filter(|s| !s.is_empty()).collect();
            if !is_kubepods_root(anchor.last()?) {
                return None;
            }
            let at = (0..segs.len()).find(|&i| segs[i..].starts_with(&anchor))?;
            at + anchor.len() - 1
        }
        None => segs.iter().position(|s| is_kubepods_root(s))?,
    };
    let mut i = root + 1;
    let qos = match segs.get(i).copied().and_then(qos_segment) {
        Some(q) => {
            i += 1;
            q
        }
        None => Qos::Guaranteed,
    };
    let pod_uid = pod_segment(segs.get(i)?)?;
    let mut parsed = CgroupPath {
        qos,
        pod_uid,
        container_id: None,
        runtime: None,
        level: Level::Pod,
    };
    let Some(seg) = segs.get(i + 1) else {
        return Some(parsed);
    };
    match container_segment(seg)? {
        Segment::Monitor => parsed.level = Level::Other,
        Segment::Container(id, runtime) => {
            parsed.container_id = Some(id);
            parsed.runtime = runtime;
            parsed.level = if segs.len() > i + 2 {
                Level::Other
            } else {
                Level::Container
            };
        }
    }
    Some(parsed)
}

/// The node's kubepods root from a cgroup path of a container this node runs (the agent's
/// own): the prefix through its LAST kubepods root. Trusted because the runtime, not a tenant,
/// placed the agent; a node nested in an outer pod then anchors at its own root.
pub fn node_root(own_path: &str) -> Option<String> {
    let segs: Vec<&str> = own_path.split('/').filter(|s| !s.is_empty()).collect();
    let root = format!(
        "/{}",
        segs[..=segs.iter().rposition(|s| is_kubepods_root(s))?].join("/")
    );
    let parsed = parse_under(own_path, Some(&root))?;
    (parsed.level == Level::Container).then_some(root)
}

/// Does this path look like it was meant to be a Kubernetes pod cgroup (for counting paths
/// the grammar does not know, without counting every host cgroup)?
pub fn looks_like_pod_path(path: &str) -> bool {
    path.contains("kubepods") && path.contains("pod")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_forms() {
        assert_eq!(
            pod_uid("8F3C2A1E_1111_4A4A_9B9B_000000000001").as_deref(),
            Some("8f3c2a1e-1111-4a4a-9b9b-000000000001")
        );
        assert!(pod_uid("6a5f7e3b9c1d2e4f8a0b1c2d3e4f5a6b").is_some());
        assert!(pod_uid("8f3c2a1e11114a4a-9b9b-000000000001").is_none());
        assert!(pod_uid("").is_none());
    }

    #[test]
    fn container_sub_cgroup_is_other_but_names_its_container() {
        let p = parse("/kubepods.slice/kubepods-pod11111111_2222_4333_8444_555555555555.slice/crio-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope/container").unwrap();
        assert_eq!(p.level, Level::Other);
        assert_eq!(p.runtime, Some("crio"));
        assert!(p.container_id.is_some());
    }

    const OUTER: &str = "/kubepods/burstable/pod8f3c2a1e-1111-4a4a-9b9b-000000000001/65c022584ce537638b6196ff83bd510e4efe8745955507f332187254d09e7e10";
    const INNER_POD: &str = "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod11111111_2222_4333_8444_555555555555.slice";

    #[test]
    fn node_root_is_the_agents_own_last_root() {
        // An agent on a node nested in an outer pod (kind in a CI pod).
        let own = format!("{OUTER}{INNER_POD}/cri-containerd-{:064x}.scope", 7);
        let root = node_root(&own).unwrap();
        assert_eq!(
            root,
            format!("{OUTER}/kubelet.slice/kubelet-kubepods.slice")
        );
        assert_eq!(
            node_root(&format!("{OUTER}/")).as_deref(),
            Some("/kubepods")
        );
        assert_eq!(node_root("/system.slice/podlife.service"), None);
        // Not a container of that root: no anchor rather than a wrong one.
        assert_eq!(node_root("/kubepods/burstable"), None);
    }

    #[test]
    fn anchored_parse_uses_exactly_the_node_root() {
        let root = format!("{OUTER}/kubelet.slice/kubelet-kubepods.slice");
        let inner = format!("{OUTER}{INNER_POD}");
        let p = parse_under(&inner, Some(&root)).unwrap();
        assert_eq!(p.pod_uid, "11111111-2222-4333-8444-555555555555");
        assert_eq!(p.level, Level::Pod);
        // Without the anchor the first root names the outer container.
        assert_eq!(parse(&inner).unwrap().level, Level::Other);
        // The outer node's own pods are not this node's.
        assert_eq!(parse_under(OUTER, Some(&root)), None);
        // A namespaced cgroupfs view gave the root without the host's prefix; the kernel
        // names the same cgroups with it.
        let p = parse_under(&inner, Some("/kubelet.slice/kubelet-kubepods.slice")).unwrap();
        assert_eq!(p.pod_uid, "11111111-2222-4333-8444-555555555555");
        // A root that is no kubepods root anchors nothing.
        assert_eq!(parse_under(OUTER, Some("/kubepods/burstable")), None);
        assert!(parse_under(OUTER, Some("/kubepods")).is_some());
        // Forged below a container of the anchored node: still the outer container's.
        let forged = format!(
            "{inner}/cri-containerd-{:064x}.scope/kubepods/pod8f3c2a1e-1111-4a4a-9b9b-000000000009",
            1
        );
        let p = parse_under(&forged, Some(&root)).unwrap();
        assert_eq!(p.pod_uid, "11111111-2222-4333-8444-555555555555");
        assert_eq!(p.level, Level::Other);
    }
}
