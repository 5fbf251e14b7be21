//! Ten pods alive at the same time, each with its own exit code: every timeline is complete
//! and holds only its own pod's events. Half of them in a second namespace, so `/pods`
//! filters have answers that differ; a pod re-created under a name is the one found by name.

use podlife_e2e::agent::{events, events_of, metric};
use podlife_e2e::kubelet::NAMESPACE;
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

const OTHER_NS: &str = "e2e-other";

#[test]
fn ten_pods_at_once() {
    let mut env = Env::start();
    let mut pods = Vec::new();
    for i in 0..10 {
        let ns = if i % 2 == 0 { NAMESPACE } else { OTHER_NS };
        let pod = env.run_pod_in(ns, &format!("many-{i}"), PodOpts::default());
        // Long enough for all ten to be up together (a pod takes ~0.2 s to start).
        let cmd = format!("sleep 3; exit {}", 10 + i);
        let c = env.run_container(&pod, "app", &["sh", "-c", &cmd], CtrOpts::default());
        pods.push((pod, c, 10 + i));
    }
    let ids: Vec<&str> = pods.iter().map(|(_, c, _)| c.id.as_str()).collect();
    for (pod, c, code) in &pods {
        let t = env.agent.wait_for(&pod.uid, "exit", WAIT, |t| {
            !events_of(t, "ContainerExited", &c.id).is_empty()
        });
        assert_eq!(
            events_of(&t, "ContainerExited", &c.id)[0]["exit_code"],
            *code,
            "{t}"
        );
        assert_eq!(t["name"], pod.name.as_str());
        assert_eq!(events(&t, "PodAdmitted").len(), 1);
        assert_eq!(events(&t, "SandboxStarted").len(), 1);
        for e in t["events"].as_array().unwrap() {
            if let Some(id) = e["container_id"].as_str() {
                assert!(
                    id == c.id || id == pod.sandbox_id || !ids.contains(&id),
                    "an event of another pod: {e}"
                );
            }
        }
        assert_eq!(events(&t, "ContainerStarted").len(), 1, "{t}");
    }
    let uids = |q: &str| -> Vec<String> {
        env.agent.json(&format!("/pods{q}"))["pods"]
            .as_array()
            .unwrap_or_else(|| panic!("/pods{q}: no pods array"))
            .iter()
            .filter_map(|p| p["uid"].as_str().map(String::from))
            .collect()
    };
    for (ns, q) in [
        (NAMESPACE, "?namespace=e2e"),
        (OTHER_NS, "?namespace=e2e-other"),
    ] {
        let listed = uids(q);
        for (pod, _, _) in &pods {
            assert_eq!(
                listed.contains(&pod.uid),
                pod.namespace == ns,
                "{} ({}) in {q}: {listed:?}",
                pod.uid,
                pod.namespace
            );
        }
    }
    // Each pod is in the answer of its own state and in no other.
    let all = env.agent.json("/pods");
    let state_of = |uid: &str| -> String {
        all["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["uid"] == uid)
            .and_then(|p| p["state"].as_str())
            .unwrap_or_else(|| panic!("{uid} not in /pods: {all}"))
            .to_string()
    };
    for state in ["Pending", "Running", "Terminating", "Stopped", "Removed"] {
        let listed = uids(&format!("?state={state}"));
        for (pod, _, _) in &pods {
            assert_eq!(
                listed.contains(&pod.uid),
                state_of(&pod.uid) == state,
                "{} ({}) in ?state={state}",
                pod.uid,
                state_of(&pod.uid)
            );
        }
    }
    // Re-created under the same name (a new uid, as a StatefulSet pod is): found by name.
    let again = env.run_pod("many-0", PodOpts::default());
    env.agent
        .wait_for(&again.uid, "the re-created pod", WAIT, |t| {
            !events(t, "PodAdmitted").is_empty()
        });
    assert_eq!(
        env.agent.json("/pods/e2e/many-0/timeline")["uid"],
        again.uid.as_str(),
        "the newest pod of that name"
    );
    assert_eq!(
        env.agent.json("/pods/e2e-other/many-1/timeline")["uid"],
        pods[1].0.uid.as_str()
    );
    assert_eq!(env.agent.get("/pods/e2e-other/many-0/timeline").0, 404);
    let m = env.agent.metrics();
    for (pod, _, _) in &pods {
        let uid = [("uid", pod.uid.as_str())];
        assert_eq!(metric(&m, "podlife_container_starts_total", &uid), 1.0);
        assert_eq!(metric(&m, "podlife_container_exits_total", &uid), 1.0);
    }
}
