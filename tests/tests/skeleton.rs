//! The walking skeleton end to end: one pod, one app container that exits 3.

use std::time::Duration;

use podlife_e2e::agent::{events, events_of};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;

#[test]
fn one_pod_one_container_start_and_exit_code() {
    let mut env = Env::start();
    let pod = env.run_pod("web", PodOpts::default());
    let cmd = ["sh", "-c", "echo hi; sleep 1; exit 3"];
    let app = env.run_container(&pod, "app", &cmd, CtrOpts::default());
    let t = env
        .agent
        .wait_for(&pod.uid, "the app's exit", Duration::from_secs(15), |t| {
            !events_of(t, "ContainerExited", &app.id).is_empty()
        });

    assert_eq!(events(&t, "PodAdmitted").len(), 1, "{t}");
    assert_eq!(events(&t, "SandboxStarted").len(), 1, "{t}");
    let started = events_of(&t, "ContainerStarted", &app.id);
    assert_eq!(started.len(), 1, "{t}");
    assert_eq!(started[0]["argv"], serde_json::json!(cmd));
    assert_eq!(
        started[0]["container"], "app",
        "container name from the runtime's bundle"
    );
    let exited = events_of(&t, "ContainerExited", &app.id);
    assert_eq!(exited[0]["exit_code"], 3, "{t}");
    assert_eq!(exited[0]["reason"], "Error");
    assert_eq!(t["name"], "web");
    assert_eq!(t["namespace"], "e2e");
    assert_eq!(t["qos"], "burstable");
    // The runtime agrees.
    assert_eq!(env.cri.wait_exited(&app.id).exit_code, 3);

    let pods = env.agent.json("/pods");
    assert!(
        pods["pods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["uid"] == pod.uid.as_str()),
        "{pods}"
    );
    let by_name = env.agent.json("/pods/e2e/web/timeline");
    assert_eq!(by_name["uid"], pod.uid.as_str());

    env.remove_pod(&pod);
    let t = env
        .agent
        .wait_for(&pod.uid, "PodRemoved", Duration::from_secs(10), |t| {
            !events(t, "PodRemoved").is_empty()
        });
    assert_eq!(events(&t, "SandboxStopped").len(), 1, "{t}");
}
