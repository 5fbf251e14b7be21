//! Container and pod names from the OCI bundle `config.json` the runtime writes for each
//! container (containerd `io.kubernetes.cri.*`, CRI-O `io.kubernetes.*` annotations).

use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

/// Parse the annotations of an OCI runtime spec. `None` when it is not JSON or has no
/// Kubernetes annotations (a container not made by a CRI runtime).
pub fn parse_config(json: &[u8]) -> Option<OciMeta> {
    let spec: Spec = serde_json::from_slice(json).ok()?;
    let a = |k: &str| spec.annotations.get(k).cloned();
    let cri_type =
        a("io.kubernetes.cri.container-type").or_else(|| a("io.kubernetes.cri-o.ContainerType"))?;
    Some(OciMeta {
        sandbox: cri_type == "sandbox",
        sandbox_id: a("io.kubernetes.cri.sandbox-id")
            .or_else(|| a("io.kubernetes.cri-o.SandboxID")),
        pod_uid: a("io.kubernetes.cri.sandbox-uid").or_else(|| a("io.kubernetes.pod.uid")),
        pod_name: a("io.kubernetes.cri.sandbox-name").or_else(|| a("io.kubernetes.pod.name")),
        pod_namespace: a("io.kubernetes.cri.sandbox-namespace")
            .or_else(|| a("io.kubernetes.pod.namespace")),
        container_name: a("io.kubernetes.cri.container-name")
            .or_else(|| a("io.kubernetes.container.name"))
            .filter(|n| !n.is_empty() && n != "POD"),
        image: a("io.kubernetes.cri.image-name").or_else(|| a("io.kubernetes.cri-o.ImageName")),
    })
}

/// Candidate bundle config paths of a container id under one runtime state directory.
fn candidates(state: &Path, id: &str) -> Vec<PathBuf> {
    let mut out = vec![
        // CRI-O
        state
            .join("overlay-containers")
            .join(id)
            .join("userdata/config.json"),
    ];
    // containerd: <state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json
    let tasks = state.join("io.containerd.runtime.v2.task");
    if let Ok(namespaces) = std::fs::read_dir(&tasks) {
        out.extend(
            namespaces
                .flatten()
                .map(|ns| ns.path().join(id).join("config.json")),
        );
    }
    out
}

/// Find and parse the bundle of a container id. Ids are 64 hex characters; anything else is
/// refused so a path can never be smuggled in.
pub fn lookup(state_dirs: &[PathBuf], id: &str) -> Option<OciMeta> {
    if id.len() < 12 || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    state_dirs
        .iter()
        .flat_map(|d| candidates(d, id))
        .find_map(|p| std::fs::read(p).ok().and_then(|b| parse_config(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_app_container() {
        let json = br#"{"ociVersion":"1.0.2","annotations":{
            "io.kubernetes.cri.container-type":"container",
            "io.kubernetes.cri.container-name":"app",
            "io.kubernetes.cri.sandbox-id":"a7b3",
            "io.kubernetes.cri.sandbox-name":"web",
            "io.kubernetes.cri.sandbox-namespace":"default",
            "io.kubernetes.cri.sandbox-uid":"8f3c2a1e-1111-4a4a-9b9b-000000000001",
            "io.kubernetes.cri.image-name":"localhost/e2e/busybox:latest"}}"#;
        let m = parse_config(json).unwrap();
        assert!(!m.sandbox);
        assert_eq!(m.container_name.as_deref(), Some("app"));
        assert_eq!(m.pod_name.as_deref(), Some("web"));
        assert_eq!(m.pod_namespace.as_deref(), Some("default"));
        assert_eq!(
            m.pod_uid.as_deref(),
            Some("8f3c2a1e-1111-4a4a-9b9b-000000000001")
        );
    }

    #[test]
    fn crio_sandbox_and_garbage() {
        let json = br#"{"annotations":{"io.kubernetes.cri-o.ContainerType":"sandbox",
            "io.kubernetes.pod.name":"db","io.kubernetes.pod.namespace":"prod",
            "io.kubernetes.pod.uid":"u1","io.kubernetes.container.name":"POD"}}"#;
        let m = parse_config(json).unwrap();
        assert!(m.sandbox);
        assert_eq!(m.container_name, None);
        assert_eq!(m.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(parse_config(b"not json"), None);
        assert_eq!(parse_config(br#"{"annotations":{}}"#), None);
    }

    #[test]
    fn lookup_refuses_paths() {
        assert_eq!(lookup(&[PathBuf::from("/")], "../../etc/passwd"), None);
    }
}
