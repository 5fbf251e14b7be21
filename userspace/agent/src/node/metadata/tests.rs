//! Bundles of each runtime layout, honest and forged by a tenant.

use super::*;

const UID: &str = "8f3c2a1e-1111-4a4a-9b9b-000000000001";

fn spec(annotations: &[(&str, &str)]) -> Vec<u8> {
    let a: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::to_vec(&serde_json::json!({"ociVersion": "1.0.2", "annotations": a})).unwrap()
}

/// What CRI-O writes for a tenant's sandbox whose pod carries containerd's keys as annotations.
fn forged_crio_sandbox() -> Vec<u8> {
    spec(&[
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-namespace", "kube-system"),
        ("io.kubernetes.cri.sandbox-name", "coredns-7db6d8ff4d-abcde"),
        (
            "io.kubernetes.cri.sandbox-uid",
            "11111111-2222-4333-8444-555555555555",
        ),
        ("io.kubernetes.cri-o.ContainerType", "sandbox"),
        ("io.kubernetes.pod.namespace", "tenant-a"),
        ("io.kubernetes.pod.name", "web-0"),
        ("io.kubernetes.pod.uid", UID),
        ("io.kubernetes.container.name", "POD"),
    ])
}

#[test]
fn containerd_app_container() {
    let json = spec(&[
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.container-name", "app"),
        ("io.kubernetes.cri.sandbox-id", "a7b3c1d2e3f4"),
        ("io.kubernetes.cri.sandbox-name", "web"),
        ("io.kubernetes.cri.sandbox-namespace", "default"),
        ("io.kubernetes.cri.sandbox-uid", UID),
        (
            "io.kubernetes.cri.image-name",
            "localhost/e2e/busybox:latest",
        ),
    ]);
    let m = parse_config(&json, Runtime::Containerd).unwrap();
    assert!(!m.sandbox);
    assert_eq!(m.container_name.as_deref(), Some("app"));
    assert_eq!(m.pod_name.as_deref(), Some("web"));
    assert_eq!(m.pod_namespace.as_deref(), Some("default"));
    assert_eq!(m.pod_uid.as_deref(), Some(UID));
    assert_eq!(m.sandbox_id.as_deref(), Some("a7b3c1d2e3f4"));
    assert_eq!(m.rejected, 0);
}

#[test]
fn crio_sandbox_and_garbage() {
    let m = parse_config(&forged_crio_sandbox(), Runtime::Crio).unwrap();
    assert!(m.sandbox);
    assert_eq!(m.container_name, None);
    assert_eq!(m.pod_namespace.as_deref(), Some("tenant-a"));
    assert_eq!(parse_config(b"not json", Runtime::Crio), None);
    assert_eq!(
        parse_config(br#"{"annotations":{}}"#, Runtime::Containerd),
        None
    );
}

#[test]
fn crio_bundle_with_forged_containerd_keys_keeps_the_tenants_names() {
    // Before: containerd's keys were preferred wherever they were, and this named CoreDNS.
    let m = parse_config(&forged_crio_sandbox(), Runtime::Crio).unwrap();
    assert_eq!(m.pod_namespace.as_deref(), Some("tenant-a"));
    assert_eq!(m.pod_name.as_deref(), Some("web-0"));
    assert_eq!(m.pod_uid.as_deref(), Some(UID));
}

#[test]
fn containerd_bundle_reads_only_containerd_keys() {
    // CRI-O-style keys in a containerd bundle (an allow-listed pod annotation) are not names.
    let only_crio_keys = spec(&[
        ("io.kubernetes.cri-o.ContainerType", "container"),
        ("io.kubernetes.pod.namespace", "kube-system"),
        ("io.kubernetes.pod.name", "coredns-7db6d8ff4d-abcde"),
        ("io.kubernetes.container.name", "coredns"),
    ]);
    assert_eq!(parse_config(&only_crio_keys, Runtime::Containerd), None);
    let mixed = spec(&[
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("io.kubernetes.pod.namespace", "kube-system"),
        ("io.kubernetes.pod.name", "coredns-7db6d8ff4d-abcde"),
        ("io.kubernetes.cri.sandbox-name", "web-0"),
    ]);
    let m = parse_config(&mixed, Runtime::Containerd).unwrap();
    assert_eq!(m.pod_namespace, None);
    assert_eq!(m.pod_name.as_deref(), Some("web-0"));
}

#[test]
fn invalid_and_oversized_values_are_unknown_and_counted() {
    let long = format!("a{}", "-b".repeat(600));
    let json = spec(&[
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-namespace", "Kube-System"),
        (
            "io.kubernetes.cri.sandbox-name",
            "coredns\u{1b}[2J\nfake line",
        ),
        ("io.kubernetes.cri.sandbox-uid", "u1"),
        ("io.kubernetes.cri.container-name", "a_b"),
        ("io.kubernetes.cri.sandbox-id", "../../etc"),
        ("io.kubernetes.cri.image-name", &long),
    ]);
    let m = parse_config(&json, Runtime::Containerd).unwrap();
    assert_eq!(
        (m.pod_namespace, m.pod_name, m.pod_uid, m.container_name),
        (None, None, None, None)
    );
    assert_eq!((m.sandbox_id, m.image), (None, None));
    assert_eq!(m.rejected, 6);
    // A name longer than any DNS-1123 subdomain.
    let json = spec(&[
        ("io.kubernetes.cri-o.ContainerType", "sandbox"),
        ("io.kubernetes.pod.name", &"a".repeat(300)),
    ]);
    let m = parse_config(&json, Runtime::Crio).unwrap();
    assert_eq!((m.pod_name, m.rejected), (None, 1));
}

/// A temporary runtime state directory with bundles at each runtime's location.
struct State(PathBuf);

impl State {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("podlife-meta-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn put(&self, rel: String, bytes: &[u8]) {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_location_decides_the_key_set() {
    let s = State::new("layout");
    let crio = format!("{:064x}", 1);
    let containerd = format!("{:064x}", 2);
    s.put(
        format!("overlay-containers/{crio}/userdata/config.json"),
        &forged_crio_sandbox(),
    );
    // In containerd's place: a spec that only CRI-O's keys would name.
    s.put(
        format!("io.containerd.runtime.v2.task/k8s.io/{containerd}/config.json"),
        &spec(&[
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.pod.namespace", "kube-system"),
            ("io.kubernetes.pod.name", "coredns-7db6d8ff4d-abcde"),
        ]),
    );
    let dirs = [s.0.clone()];
    let m = lookup(&dirs, &crio).unwrap();
    assert_eq!(m.pod_namespace.as_deref(), Some("tenant-a"));
    let m = lookup(&dirs, &containerd).unwrap();
    assert_eq!((m.pod_namespace, m.pod_name), (None, None));
}

#[test]
fn oversized_bundle_is_not_read_whole() {
    let s = State::new("big");
    let id = format!("{:064x}", 3);
    let pad = "x".repeat(CONFIG_READ_MAX as usize);
    let mut json = forged_crio_sandbox();
    json.pop(); // the closing brace: add a padding field
    json.extend_from_slice(format!(r#","pad":"{pad}"}}"#).as_bytes());
    s.put(
        format!("overlay-containers/{id}/userdata/config.json"),
        &json,
    );
    let m = lookup(std::slice::from_ref(&s.0), &id).unwrap();
    assert_eq!(m.pod_namespace, None);
    assert_eq!(m.rejected, 1);
}

#[test]
fn names_of_another_pods_bundle_are_not_taken() {
    let m = parse_config(&forged_crio_sandbox(), Runtime::Crio).unwrap();
    assert_eq!(m.clone().of_pod(UID), m);
    let other = m.of_pod("11111111-2222-4333-8444-555555555555");
    assert_eq!((other.pod_name, other.pod_namespace), (None, None));
    assert_eq!(other.rejected, 1);
}

#[test]
fn lookup_refuses_paths() {
    assert_eq!(lookup(&[PathBuf::from("/")], "../../etc/passwd"), None);
}
