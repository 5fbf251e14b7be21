//! The kubelet's probe messages (`--kube-api`): a real pod whose port nobody listens on is
//! probed kubelet-style from the host (refused: ProbeFailed); the agent then reads the pod's
//! `Unhealthy` Events from a stand-in API server (tests/src/apiserver.rs, not a real API
//! server: it holds one Event, as the kubelet would have posted it for an HTTP 503 the kernel
//! cannot see) and the timeline gets ProbeUnhealthy with the kubelet's message. Several refused
//! probes within 10 s make one lookup, with exactly the pod's field selector.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use podlife_e2e::agent::{events, metric};
use podlife_e2e::apiserver::{query_of, rfc3339_secs, ApiServer, World};
use podlife_e2e::pod_net::{kubelet_probe, pod_ip, route_to_pod, Seen};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};
use serde_json::json;

const PORT: u16 = 8080;
const MESSAGE: &str = "Readiness probe failed: HTTP probe failed with statuscode: 503";

/// Now as the API server writes times: RFC 3339, whole seconds.
fn api_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    rfc3339_secs(secs)
}

#[test]
fn a_refused_probe_brings_the_kubelets_message_with_one_lookup() {
    podlife_e2e::require_root();
    let api = ApiServer::start(World::default());
    let (mut env, tmp) = Env::start_with_kube_api(&api, "probe-messages", &[]);
    let pod = env.run_pod_in("shop", "unready", PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &["sh", "-c", "exec sleep 1000"],
        CtrOpts::default(),
    );
    // What the kubelet posts on an HTTP 503 (core/v1, as `kubectl get events` lists it), and an
    // Event of another pod that the selector must leave out.
    let unhealthy = |uid: &str, message: &str| {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("unready.{uid}"), "namespace": "shop"},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "unready",
                               "uid": uid, "fieldPath": "spec.containers{app}"},
            "reason": "Unhealthy", "type": "Warning", "message": message, "count": 3,
            "firstTimestamp": api_now(), "lastTimestamp": api_now(),
            "source": {"component": "kubelet", "host": "node-a"},
        })
    };
    {
        let mut w = api.world.lock().unwrap();
        w.core_events.push(unhealthy(&pod.uid, MESSAGE));
        w.core_events.push(unhealthy(
            "0000-other-pod",
            "Liveness probe failed: not ours",
        ));
    }
    let t = env.agent.wait_for(&pod.uid, "the start", WAIT, |t| {
        !events(t, "SandboxStarted").is_empty() && !events(t, "ContainerStarted").is_empty()
    });
    let sandbox = events(&t, "SandboxStarted")[0]["pid"].as_u64().unwrap();
    let ip = pod_ip(sandbox);
    route_to_pod(&env.kubelet.containerd.bridge, &ip);
    let addr = SocketAddr::new(ip.parse().unwrap(), PORT);

    // Refused probes until the agent reports one (its kernel filter has the pod's address),
    // then a few more: all within the 10 s of one lookup.
    let first_probe = Instant::now();
    let mut reported = false;
    for _ in 0..100 {
        assert_eq!(kubelet_probe(addr, None), Seen::Refused);
        let t = env.agent.json(&format!("/pods/{}/timeline", pod.uid));
        if !events(&t, "ProbeFailed").is_empty() {
            reported = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reported, "no probe of the pod's address was reported");
    for _ in 0..4 {
        assert_eq!(kubelet_probe(addr, None), Seen::Refused);
        std::thread::sleep(Duration::from_millis(100));
    }

    let t = env
        .agent
        .wait_for(&pod.uid, "the kubelet's message", WAIT, |t| {
            !events(t, "ProbeUnhealthy").is_empty()
        });
    let lookups: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/api/v1/namespaces/shop/events"))
        .map(|s| s.path.clone())
        .collect();
    let within = first_probe.elapsed() < Duration::from_secs(10);
    let failed = events(&t, "ProbeFailed").len();
    assert!(failed >= 5, "several refused probes: {t}");
    if within {
        assert_eq!(
            lookups.len(),
            1,
            "{failed} refused probes within 10 s, one lookup: {lookups:?}"
        );
    } else {
        // A slow machine took longer than the limiter's window: still one per 10 s.
        let windows = first_probe.elapsed().as_secs() / 10 + 1;
        assert!(lookups.len() as u64 <= windows, "{lookups:?}");
    }
    let q = query_of(&lookups[0]);
    assert_eq!(
        q.get("fieldSelector").map(String::as_str),
        Some(format!("involvedObject.uid={},reason=Unhealthy", pod.uid).as_str()),
        "{lookups:?}"
    );
    assert_eq!(
        q.get("limit").map(String::as_str),
        Some("50"),
        "{lookups:?}"
    );

    let got = events(&t, "ProbeUnhealthy");
    assert_eq!(got.len(), 1, "one message, the other pod's left out: {t}");
    let e = got[0];
    assert_eq!(e["message"], MESSAGE, "{e}");
    assert_eq!(e["probe"], "readiness", "{e}");
    assert_eq!(e["count"], 3, "{e}");
    assert_eq!(e["source"], "api", "{e}");
    assert_eq!(e["container_id"], app.id.as_str(), "{e}");
    assert_eq!(e["container"], "app", "{e}");
    let c = env.agent.container_summary(&pod.uid, &app.id);
    assert_eq!(c["last_probe_message"], MESSAGE, "{c}");

    let m = env.agent.metrics();
    assert_eq!(
        metric(
            &m,
            "podlife_probe_message_lookups_total",
            &[("result", "ok")]
        ),
        lookups.len() as f64,
        "{m}"
    );
    let text = env
        .agent
        .get(&format!("/pods/{}/timeline?format=text", pod.uid))
        .1;
    assert!(
        text.lines().any(|l| l.contains("ProbeUnhealthy")
            && l.contains("readiness: HTTP probe failed with statuscode: 503 (×3)")),
        "{text}"
    );
    env.remove_pod(&pod);
    let _ = std::fs::remove_dir_all(&tmp);
}
