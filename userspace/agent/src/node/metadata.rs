//! Container and pod names from the OCI bundle `config.json` the runtime writes for each
//! container, read only from the keys the runtime that wrote the bundle sets itself.
//!
//! Which runtime wrote a bundle is told by where it lies, never by its content:
//! - containerd: `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`. The CRI
//!   plugin sets `io.kubernetes.cri.*` itself; pod annotations reach the spec only where an
//!   admin allow-lists them for a runtime handler (`pod_annotations`).
//! - CRI-O: `<state>/overlay-containers/<id>/userdata/config.json`. CRI-O copies EVERY pod
//!   annotation and label into the sandbox's spec (so `io.kubernetes.cri.*` there is the
//!   tenant's), then the kubelet's labels: `io.kubernetes.pod.{name,namespace,uid}` (and
//!   `io.kubernetes.container.name` on containers), which the kubelet sets after copying the
//!   pod's labels and CRI-O adds after the annotations, so a user key of the same name is
//!   overwritten. Its own `io.kubernetes.cri-o.*` keys give the type, sandbox id and image.
//!
//! Values are bounded ([`VALUE_MAX`], [`CONFIG_READ_MAX`]) and names must be what the API
//! server could have issued (DNS-1123, a UUID); anything else is unknown and counted.

use std::io::Read;
use std::path::{Path, PathBuf};

use podlife_core::names::{is_dns1123_label, is_dns1123_subdomain, is_pod_uid};
use serde::Deserialize;

/// Bytes read of a bundle's config.json at most. The API server caps a pod's annotations at
/// 256 KiB; a larger file is not a spec this agent reads names from.
pub const CONFIG_READ_MAX: u64 = 1024 * 1024;
/// Longest annotation value kept (names are at most 253 bytes, image references a few hundred).
pub const VALUE_MAX: usize = 1024;

/// The runtime that wrote a bundle, by the bundle's location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    Crio,
}

/// What the annotations of one container's bundle say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciMeta {
    pub sandbox: bool,
    pub sandbox_id: Option<String>,
    pub pod_uid: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub container_name: Option<String>,
    pub image: Option<String>,
    /// Values present but refused: too long, or not a valid name or uid.
    pub rejected: u32,
}

impl OciMeta {
    /// What the engine takes of it.
    pub fn container_meta(self) -> podlife_core::ContainerMeta {
        podlife_core::ContainerMeta {
            pod_uid: self.pod_uid,
            pod_name: self.pod_name,
            namespace: self.pod_namespace,
            container_name: self.container_name,
            kind: self.sandbox.then_some(podlife_core::ContainerKind::Sandbox),
            ..Default::default()
        }
    }
}

impl OciMeta {
    /// These names only if the bundle is of `pod_uid`, the pod the kernel's cgroup path names:
    /// another pod's names are never taken for it (the mismatch counts as rejected).
    pub fn of_pod(self, pod_uid: &str) -> OciMeta {
        if self.pod_uid.as_deref().is_some_and(|u| u != pod_uid) {
            return OciMeta {
                rejected: self.rejected + 1,
                ..Default::default()
            };
        }
        self
    }
}

/// containerd's CRI keys; every other key, whoever set it, is skipped unread.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ContainerdKeys {
    #[serde(rename = "io.kubernetes.cri.container-type")]
    kind: Option<String>,
    #[serde(rename = "io.kubernetes.cri.sandbox-id")]
    sandbox_id: Option<String>,
    #[serde(rename = "io.kubernetes.cri.sandbox-uid")]
    uid: Option<String>,
    #[serde(rename = "io.kubernetes.cri.sandbox-name")]
    name: Option<String>,
    #[serde(rename = "io.kubernetes.cri.sandbox-namespace")]
    namespace: Option<String>,
    #[serde(rename = "io.kubernetes.cri.container-name")]
    container: Option<String>,
    #[serde(rename = "io.kubernetes.cri.image-name")]
    image: Option<String>,
}

/// CRI-O's own keys and the kubelet's labels that override a tenant's copies.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CrioKeys {
    #[serde(rename = "io.kubernetes.cri-o.ContainerType")]
    kind: Option<String>,
    #[serde(rename = "io.kubernetes.cri-o.SandboxID")]
    sandbox_id: Option<String>,
    #[serde(rename = "io.kubernetes.pod.uid")]
    uid: Option<String>,
    #[serde(rename = "io.kubernetes.pod.name")]
    name: Option<String>,
    #[serde(rename = "io.kubernetes.pod.namespace")]
    namespace: Option<String>,
    #[serde(rename = "io.kubernetes.container.name")]
    container: Option<String>,
    #[serde(rename = "io.kubernetes.cri-o.ImageName")]
    image: Option<String>,
}

#[derive(Deserialize)]
struct Spec<K> {
    annotations: Option<K>,
}

/// Keep `v` if it fits and passes `valid`; count it otherwise.
fn checked(v: Option<String>, valid: fn(&str) -> bool, rejected: &mut u32) -> Option<String> {
    let v = v?;
    if v.len() <= VALUE_MAX && valid(&v) {
        Some(v)
    } else {
        *rejected += 1;
        None
    }
}

fn is_hex_id(s: &str) -> bool {
    (12..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parse the annotations of an OCI runtime spec written by `runtime`. `None` when it is not
/// JSON or has no container type of that runtime (a container not made by a CRI runtime).
pub fn parse_config(json: &[u8], runtime: Runtime) -> Option<OciMeta> {
    // One shape for both key sets: (type, sandbox id, uid, name, namespace, container, image).
    let k = match runtime {
        Runtime::Containerd => {
            let a: ContainerdKeys = serde_json::from_slice::<Spec<_>>(json).ok()?.annotations?;
            let c = (
                a.kind,
                a.sandbox_id,
                a.uid,
                a.name,
                a.namespace,
                a.container,
            );
            (c, a.image)
        }
        Runtime::Crio => {
            let a: CrioKeys = serde_json::from_slice::<Spec<_>>(json).ok()?.annotations?;
            let c = (
                a.kind,
                a.sandbox_id,
                a.uid,
                a.name,
                a.namespace,
                a.container,
            );
            (c, a.image)
        }
    };
    let ((kind, sandbox_id, uid, name, namespace, container), image) = k;
    let kind = kind?;
    let mut rejected = 0;
    let container = container.filter(|n| !n.is_empty() && n != "POD");
    Some(OciMeta {
        sandbox: kind == "sandbox",
        sandbox_id: checked(sandbox_id, is_hex_id, &mut rejected),
        pod_uid: checked(uid, is_pod_uid, &mut rejected),
        pod_name: checked(name, is_dns1123_subdomain, &mut rejected),
        pod_namespace: checked(namespace, is_dns1123_label, &mut rejected),
        container_name: checked(container, is_dns1123_label, &mut rejected),
        image: checked(image, |i| !i.chars().any(char::is_control), &mut rejected),
        rejected,
    })
}

/// Candidate bundle config paths of a container id under one runtime state directory, with
/// the runtime each location belongs to.
fn candidates(state: &Path, id: &str) -> Vec<(PathBuf, Runtime)> {
    let mut out = vec![(
        state
            .join("overlay-containers")
            .join(id)
            .join("userdata/config.json"),
        Runtime::Crio,
    )];
    let tasks = state.join("io.containerd.runtime.v2.task");
    if let Ok(namespaces) = std::fs::read_dir(&tasks) {
        out.extend(
            namespaces
                .flatten()
                .map(|ns| (ns.path().join(id).join("config.json"), Runtime::Containerd)),
        );
    }
    out
}

/// What reading a bundle gave: its bytes, or that it is over [`CONFIG_READ_MAX`].
enum Bundle {
    Bytes(Vec<u8>),
    TooBig,
}

/// A bounded read: at most [`CONFIG_READ_MAX`] + 1 bytes leave the file.
fn read_bounded(path: &Path) -> Option<Bundle> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(CONFIG_READ_MAX + 1)
        .read_to_end(&mut buf)
        .ok()?;
    Some(if buf.len() as u64 > CONFIG_READ_MAX {
        Bundle::TooBig
    } else {
        Bundle::Bytes(buf)
    })
}

/// Find and parse the bundle of a container id. Ids are hex; anything else is refused so a
/// path can never be smuggled in. `None` while there is no bundle of a CRI container (it may
/// still come); an oversized bundle gives no names and one `rejected`.
pub fn lookup(state_dirs: &[PathBuf], id: &str) -> Option<OciMeta> {
    if !is_hex_id(id) {
        return None;
    }
    state_dirs.iter().flat_map(|d| candidates(d, id)).find_map(
        |(path, runtime)| match read_bounded(&path)? {
            Bundle::Bytes(b) => parse_config(&b, runtime),
            Bundle::TooBig => Some(OciMeta {
                rejected: 1,
                ..Default::default()
            }),
        },
    )
}

#[cfg(test)]
mod tests;
