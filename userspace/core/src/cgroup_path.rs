//! Kubernetes cgroup path grammar: which pod, QoS class and container a cgroup path names.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath {
    pub qos: Qos,
    /// Pod UID with dashes.
    pub pod_uid: String,
    /// Container id (64 hex) when the path is a container's.
    pub container_id: Option<String>,
    /// `containerd`, `crio`, `docker`, or None for the cgroupfs driver's bare ids.
    pub runtime: Option<&'static str>,
}

fn is_hex_id(s: &str) -> bool {
    s.len() >= 12 && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Normalize a pod UID: systemd slices use `_` for `-`.
fn pod_uid(s: &str) -> Option<String> {
    let uid = s.replace('_', "-").to_ascii_lowercase();
    let digits = uid.bytes().filter(u8::is_ascii_hexdigit).count();
    let ok = uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') && digits == 32;
    ok.then_some(uid)
}

/// Container segment: cgroupfs `<id>`, systemd `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope`. `crio-conmon-<id>.scope` is CRI-O's monitor, not a container.
fn container(seg: &str) -> Option<(String, Option<&'static str>)> {
    if is_hex_id(seg) {
        return Some((seg.to_string(), None));
    }
    let scope = seg.strip_suffix(".scope")?;
    for (prefix, runtime) in [
        ("cri-containerd-", "containerd"),
        ("crio-", "crio"),
        ("docker-", "docker"),
    ] {
        if let Some(id) = scope.strip_prefix(prefix) {
            return is_hex_id(id).then(|| (id.to_string(), Some(runtime)));
        }
    }
    None
}

/// Pod segment: `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_underscored>.slice`.
fn pod(seg: &str) -> Option<String> {
    if let Some(uid) = seg.strip_prefix("pod") {
        return pod_uid(uid);
    }
    let slice = seg.strip_suffix(".slice")?;
    let at = slice.rfind("-pod")?;
    slice[..at]
        .contains("kubepods")
        .then(|| pod_uid(&slice[at + 4..]))?
}

/// Parse a cgroup path (v1 or v2, any prefix before the kubepods part).
pub fn parse(path: &str) -> Option<CgroupPath> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // `kubepods`, `kubepods.slice`, or a nested root such as kind's `kubelet-kubepods.slice`.
    let root = segs.iter().position(|s| {
        *s == "kubepods" || *s == "kubepods.slice" || s.ends_with("-kubepods.slice")
    })?;
    let mut qos = Qos::Guaranteed;
    let mut i = root + 1;
    let seg = segs.get(i).copied().unwrap_or("");
    let slice_qos = |q: &str| seg.contains("kubepods") && seg.ends_with(&format!("-{q}.slice"));
    if seg == "burstable" || slice_qos("burstable") {
        qos = Qos::Burstable;
        i += 1;
    } else if seg == "besteffort" || slice_qos("besteffort") {
        qos = Qos::BestEffort;
        i += 1;
    }
    let pod_uid = pod(segs.get(i)?)?;
    let (container_id, runtime) = match segs.get(i + 1) {
        None => (None, None),
        Some(seg) => {
            let (id, rt) = container(seg)?;
            if segs.len() > i + 2 {
                return None;
            }
            (Some(id), rt)
        }
    };
    Some(CgroupPath {
        qos,
        pod_uid,
        container_id,
        runtime,
    })
}
