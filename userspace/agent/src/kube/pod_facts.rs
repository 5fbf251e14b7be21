//! What a Pod object of the API server tells the engine: names, owner, grace period, exec
//! probes, container kinds and ids, and the deletion request. Pure: no client, no clock.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podlife_core::{
    ContainerKind, ContainerMeta, ExecProbe, NetProbe, Owner, PodMeta, PreStop, ProbeKind,
    MAX_NET_PROBES,
};

pub use crate::pipeline::facts::{Deletion, PodFacts};

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` → `<id>`.
fn runtime_id(s: &str) -> Option<String> {
    let id = s.split_once("://").map_or(s, |(_, id)| id);
    (!id.is_empty()).then(|| id.to_string())
}

/// The preStop handler of the spec, read as the kubelet's annotation is (its JSON).
fn prestop(c: &Container) -> Option<PreStop> {
    let handler = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
    PreStop::from_value(&serde_json::to_value(handler).ok()?).ok()
}

/// The container's probes by type.
fn probes_of(c: &Container) -> [(&'static str, &Option<Probe>); 3] {
    [
        ("liveness", &c.liveness_probe),
        ("readiness", &c.readiness_probe),
        ("startup", &c.startup_probe),
    ]
}

fn exec_probes(c: &Container) -> Vec<ExecProbe> {
    probes_of(c)
        .into_iter()
        .filter_map(|(t, p)| {
            let p = p.as_ref()?;
            let argv = p.exec.as_ref()?.command.clone()?;
            Some(ExecProbe {
                probe_type: t.to_string(),
                argv,
                timeout_s: p.timeout_seconds.map(f64::from),
            })
        })
        .collect()
}

/// A probe port: a number, or the name of one of the container's ports. `None` when it
/// names no port of the container or is out of range.
fn resolve_port(c: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok().filter(|p| *p != 0),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// tcpSocket / httpGet / grpc probes of a container: the kubelet connects to the pod for them.
fn net_probes(c: &Container) -> Vec<NetProbe> {
    probes_of(c)
        .into_iter()
        .filter_map(|(t, p)| {
            let p = p.as_ref()?;
            let (kind, port) = if let Some(h) = &p.http_get {
                (ProbeKind::Http, resolve_port(c, &h.port)?)
            } else if let Some(tcp) = &p.tcp_socket {
                (ProbeKind::Tcp, resolve_port(c, &tcp.port)?)
            } else if let Some(g) = &p.grpc {
                (ProbeKind::Grpc, resolve_port(c, &IntOrString::Int(g.port))?)
            } else {
                return None;
            };
            Some(NetProbe {
                container: c.name.clone(),
                probe_type: t.to_string(),
                kind,
                port,
            })
        })
        .collect()
}

/// Init containers with `restartPolicy: Always` are sidecars (native sidecars, 1.28+).
fn kind(c: &Container, init: bool) -> ContainerKind {
    match (init, c.restart_policy.as_deref()) {
        (true, Some("Always")) => ContainerKind::Sidecar,
        (true, _) => ContainerKind::Init,
        (false, _) => ContainerKind::App,
    }
}

/// Map a Pod object; `None` without a uid (nothing to join it with).
pub fn pod_facts(pod: &Pod) -> Option<PodFacts> {
    let m = &pod.metadata;
    let uid = m.uid.clone().filter(|u| !u.is_empty())?;
    let spec = pod.spec.as_ref();
    let specs: Vec<(&Container, ContainerKind)> = spec
        .map(|s| {
            let init = s
                .init_containers
                .iter()
                .flatten()
                .map(|c| (c, kind(c, true)));
            let app = s.containers.iter().map(|c| (c, kind(c, false)));
            init.chain(app).collect()
        })
        .unwrap_or_default();
    let deletion_grace = m.deletion_grace_period_seconds.map(|g| g as f64);
    let grace_period_s = deletion_grace.or_else(|| {
        spec.and_then(|s| s.termination_grace_period_seconds)
            .map(|g| g as f64)
    });
    let owner = m
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
        });
    let meta = PodMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        grace_period_s,
        exec_probes: specs
            .iter()
            .flat_map(|(c, _)| {
                exec_probes(c)
                    .into_iter()
                    .map(|p| (c.name.clone(), p.probe_type, p.argv))
            })
            .collect(),
        net_probes: specs
            .iter()
            .flat_map(|(c, _)| net_probes(c))
            .take(MAX_NET_PROBES)
            .collect(),
        owner,
        container_kinds: specs.iter().map(|(c, k)| (c.name.clone(), *k)).collect(),
    };
    let statuses: Vec<&ContainerStatus> = pod
        .status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect();
    let containers = statuses
        .into_iter()
        .filter_map(|st| {
            let id = runtime_id(st.container_id.as_deref()?)?;
            let spec = specs.iter().find(|(c, _)| c.name == st.name);
            Some((
                id,
                ContainerMeta {
                    pod_uid: Some(uid.clone()),
                    pod_name: m.name.clone(),
                    namespace: m.namespace.clone(),
                    container_name: Some(st.name.clone()),
                    kind: spec.map(|(_, k)| *k),
                    probes: spec.map(|(c, _)| exec_probes(c)).unwrap_or_default(),
                    prestop: spec.and_then(|(c, _)| prestop(c)),
                    ..Default::default()
                },
            ))
        })
        .collect();
    let deletion = m.deletion_timestamp.as_ref().map(|t| {
        let end = t.0.as_nanosecond();
        let grace_ns = deletion_grace.map_or(0, |g| (g * 1e9) as i128);
        Deletion {
            requested_wall_ns: end - grace_ns,
            grace_period_s: deletion_grace,
        }
    });
    Some(PodFacts {
        uid,
        meta,
        containers,
        deletion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PodFacts {
        let path = format!(
            "{}/tests/fixtures/kube/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let pod: Pod = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        pod_facts(&pod).unwrap_or_else(|| panic!("{path}: no uid"))
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn terminating_deployment_pod_with_init_sidecar_and_probes() {
        let f = fixture("pod-deployment-terminating");
        assert_eq!(f.uid, "8f3c2a1e-1111-4a4a-9b9b-000000000001");
        let m = &f.meta;
        assert_eq!(m.name.as_deref(), Some("web-5d4f7c9b8-x2kqp"));
        assert_eq!(m.namespace.as_deref(), Some("shop"));
        assert_eq!(
            m.owner,
            Some(Owner {
                kind: "ReplicaSet".into(),
                name: "web-5d4f7c9b8".into()
            })
        );
        // `kubectl delete` gave 30 s; the spec's 60 s no longer applies.
        assert_eq!(m.grace_period_s, Some(30.0));
        assert_eq!(
            m.container_kinds,
            vec![
                ("migrate".to_string(), ContainerKind::Init),
                ("log-shipper".to_string(), ContainerKind::Sidecar),
                ("app".to_string(), ContainerKind::App),
            ]
        );
        // Exec probes only (the httpGet readiness probe is not a process).
        assert_eq!(
            m.exec_probes,
            vec![
                (
                    "log-shipper".to_string(),
                    "readiness".to_string(),
                    argv(&["/bin/ship", "--check"])
                ),
                (
                    "app".to_string(),
                    "liveness".to_string(),
                    argv(&["sh", "-c", "test -f /tmp/healthy"])
                ),
                (
                    "app".to_string(),
                    "startup".to_string(),
                    argv(&["cat", "/tmp/started"])
                ),
            ]
        );
        // deletionTimestamp 12:00:30 is the end of the 30 s grace: requested at 12:00:00.
        let d = f.deletion.as_ref().expect("deletion");
        assert_eq!(
            podlife_core::format_rfc3339(d.requested_wall_ns),
            "2026-11-22T12:00:00.000000000Z"
        );
        assert_eq!(d.grace_period_s, Some(30.0));
        let ids: Vec<(&str, Option<&str>, Option<ContainerKind>)> = f
            .containers
            .iter()
            .map(|(id, c)| (&id[..12], c.container_name.as_deref(), c.kind))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("0a3e5b7c9d1f", Some("migrate"), Some(ContainerKind::Init)),
                (
                    "7f2963954487",
                    Some("log-shipper"),
                    Some(ContainerKind::Sidecar)
                ),
                ("65c022584ce5", Some("app"), Some(ContainerKind::App)),
            ]
        );
        let app = &f.containers[2];
        assert_eq!(app.0.len(), 64, "scheme stripped: {}", app.0);
        assert_eq!(
            app.1.prestop,
            Some(PreStop::Exec {
                argv: argv(&["sh", "-c", "sleep 5"])
            })
        );
        assert_eq!(f.containers[1].1.prestop, None);
        assert_eq!(app.1.pod_uid.as_deref(), Some(f.uid.as_str()));
        assert_eq!(
            app.1.probes,
            vec![
                ExecProbe {
                    probe_type: "liveness".into(),
                    argv: argv(&["sh", "-c", "test -f /tmp/healthy"]),
                    timeout_s: Some(3.0)
                },
                ExecProbe {
                    probe_type: "startup".into(),
                    argv: argv(&["cat", "/tmp/started"]),
                    timeout_s: Some(1.0)
                },
            ]
        );
    }

    #[test]
    fn statefulset_pod_on_crio_running() {
        let f = fixture("pod-statefulset-crio");
        // The controller among several owners.
        assert_eq!(
            f.meta.owner,
            Some(Owner {
                kind: "StatefulSet".into(),
                name: "db".into()
            })
        );
        assert_eq!(f.meta.grace_period_s, Some(120.0));
        assert_eq!(f.deletion, None);
        assert_eq!(
            f.containers.len(),
            1,
            "the current container, not lastState's"
        );
        assert_eq!(
            f.containers[0].0,
            "d5088fde9f12dd4a2e4ec2a9db76b5640d9b04f8c2779e215c071f6800a7df8a"
        );
        assert_eq!(f.containers[0].1.probes[0].timeout_s, Some(5.0));
        assert_eq!(
            f.meta.net_probes,
            vec![NetProbe {
                container: "postgres".into(),
                probe_type: "readiness".into(),
                kind: ProbeKind::Tcp,
                port: 5432,
            }]
        );
    }

    #[test]
    fn network_probes_resolve_named_ports_and_skip_unknown_ones() {
        let f = fixture("pod-deployment-terminating");
        // httpGet on the named port "http" of app: 8080.
        assert_eq!(
            f.meta.net_probes,
            vec![NetProbe {
                container: "app".into(),
                probe_type: "readiness".into(),
                kind: ProbeKind::Http,
                port: 8080,
            }]
        );
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "api",
            "ports": [{"containerPort": 9090, "name": "grpc"}],
            "livenessProbe": {"grpc": {"port": 9090}},
            "readinessProbe": {"httpGet": {"port": "nope", "path": "/"}},
            "startupProbe": {"tcpSocket": {"port": 70000}}
        }))
        .unwrap();
        assert_eq!(
            net_probes(&c),
            vec![NetProbe {
                container: "api".into(),
                probe_type: "liveness".into(),
                kind: ProbeKind::Grpc,
                port: 9090,
            }],
            "a port name the container lacks and an out-of-range port match nothing"
        );
    }

    #[test]
    fn bare_pending_pod_without_container_ids() {
        let f = fixture("pod-pending-bare");
        assert_eq!(f.meta.owner, None);
        assert_eq!(f.meta.grace_period_s, Some(30.0));
        assert!(f.meta.exec_probes.is_empty());
        assert_eq!(
            f.meta.container_kinds,
            vec![("debug".to_string(), ContainerKind::App)]
        );
        assert!(f.containers.is_empty(), "no containerID while creating");
    }

    #[test]
    fn without_uid_or_spec() {
        let mut pod = Pod::default();
        assert_eq!(pod_facts(&pod), None);
        pod.metadata.uid = Some("u".into());
        let f = pod_facts(&pod).unwrap();
        assert_eq!(f.meta, PodMeta::default());
        assert!(f.containers.is_empty() && f.deletion.is_none());
    }

    #[test]
    fn deletion_without_grace_is_dated_at_the_timestamp() {
        let mut pod: Pod = serde_json::from_str(
            r#"{"metadata": {"uid": "u", "deletionTimestamp": "2026-11-22T12:00:30Z"}}"#,
        )
        .unwrap();
        let d = pod_facts(&pod).unwrap().deletion.unwrap();
        assert_eq!(
            podlife_core::format_rfc3339(d.requested_wall_ns),
            "2026-11-22T12:00:30.000000000Z"
        );
        assert_eq!(d.grace_period_s, None);
        pod.metadata.deletion_grace_period_seconds = Some(0);
        let d = pod_facts(&pod).unwrap().deletion.unwrap();
        assert_eq!(d.grace_period_s, Some(0.0), "--grace-period=0 --force");
        assert_eq!(runtime_id("docker://abc"), Some("abc".into()));
        assert_eq!(runtime_id("containerd://"), None);
    }
}
