//! `--kube-events`: a kernel-only finding (a child process of a container crashing with
//! SIGSEGV, which the kubelet never reports) becomes an events.k8s.io/v1 Event on the Pod,
//! written through the agent's Kubernetes client to a stand-in API server (tests/src/apiserver.rs,
//! not a real API server: it keeps what is posted). The Event's schema is checked in the unit
//! tests against k8s-openapi's type; here: that the real agent writes it, on the right pod.

use std::time::{Duration, Instant};

use podlife_e2e::agent::{events_of, metric};
use podlife_e2e::apiserver::{ApiServer, World};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;
use serde_json::Value;

#[test]
fn a_crashed_child_process_becomes_an_event_on_its_pod() {
    podlife_e2e::require_root();
    let api = ApiServer::start(World::default());
    let (mut env, tmp) = Env::start_with_kube_api(&api, "kube-events", &["--kube-events"]);
    let pod = env.run_pod_in("shop", "crashy", PodOpts::default());
    let child = env.run_container(
        &pod,
        "worker",
        &["/crasher", "--child"],
        CtrOpts::image("crasher"),
    );
    env.agent.wait_for(
        &pod.uid,
        "the child's crash",
        Duration::from_secs(30),
        |t| !events_of(t, "ProcessCrashed", &child.id).is_empty(),
    );
    let t0 = Instant::now();
    let event: Value = loop {
        let found = api
            .world
            .lock()
            .unwrap()
            .events
            .iter()
            .find(|((ns, _), e)| ns == "shop" && e["reason"] == "ProcessCrashed")
            .map(|(_, e)| e.clone());
        if let Some(e) = found {
            break e;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no Event posted; requests: {:?}\nagent log:\n{}",
            api.seen()
                .iter()
                .map(|s| format!("{} {}", s.method, s.path))
                .collect::<Vec<_>>(),
            env.agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(event["apiVersion"], "events.k8s.io/v1");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reportingController"], "podlife.io/agent");
    assert_eq!(event["reportingInstance"], "node-a");
    let r = &event["regarding"];
    assert_eq!(
        (
            r["kind"].as_str(),
            r["namespace"].as_str(),
            r["name"].as_str(),
            r["uid"].as_str()
        ),
        (
            Some("Pod"),
            Some("shop"),
            Some("crashy"),
            Some(pod.uid.as_str())
        ),
        "{event}"
    );
    assert_eq!(r["fieldPath"], "spec.containers{worker}", "{event}");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("of container worker crashed with SIGSEGV"),
        "{note}"
    );
    assert!(event["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("crashy."));
    assert_eq!(
        metric(
            &env.agent.metrics(),
            "podlife_kube_events_total",
            &[("result", "created")]
        ),
        1.0
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
