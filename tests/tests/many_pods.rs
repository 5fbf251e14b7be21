//! Ten pods alive at the same time, each with its own exit code: every timeline is complete
//! and holds only its own pod's events.

use podlife_e2e::agent::{events, events_of, metric};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn ten_pods_at_once() {
    let mut env = Env::start();
    let mut pods = Vec::new();
    for i in 0..10 {
        let pod = env.run_pod(&format!("many-{i}"), PodOpts::default());
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
    let listed = env.agent.json("/pods?namespace=e2e");
    let listed: Vec<&str> = listed["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["uid"].as_str())
        .collect();
    for (pod, _, _) in &pods {
        assert!(listed.contains(&pod.uid.as_str()), "{} not listed", pod.uid);
    }
    let m = env.agent.metrics();
    for (pod, _, _) in &pods {
        let uid = [("uid", pod.uid.as_str())];
        assert_eq!(metric(&m, "podlife_container_starts_total", &uid), 1.0);
        assert_eq!(metric(&m, "podlife_container_exits_total", &uid), 1.0);
    }
}
