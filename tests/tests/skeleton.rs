//! The walking skeleton end to end: one pod, one app container that prints, sleeps and exits 3.

use podlife_e2e::agent::{events, events_of, metric};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn one_pod_one_container_start_and_exit_code() {
    let mut env = Env::start();
    let pod = env.run_pod("web", PodOpts::default());
    let cmd = ["sh", "-c", "echo hi; sleep 1; exit 3"];
    let app = env.run_container(&pod, "app", &cmd, CtrOpts::default());
    let t = env.agent.wait_for(&pod.uid, "the app's exit", WAIT, |t| {
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
    assert_eq!(t["uid"], pod.uid.as_str());
    assert_eq!(t["name"], "web");
    assert_eq!(t["namespace"], "e2e");
    assert_eq!(t["qos"], "burstable");
    // The runtime agrees, and its start precedes the exit by about the sleep.
    let status = env.cri.wait_exited(&app.id);
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    assert!(env.container_log(&pod, &app).contains(" hi"));

    assert!(
        env.agent
            .pods()
            .iter()
            .any(|p| p["uid"] == pod.uid.as_str()),
        "/pods lists the pod"
    );
    let by_name = env.agent.json("/pods/e2e/web/timeline");
    assert_eq!(by_name["uid"], pod.uid.as_str());
    let m = env.agent.metrics();
    let uid = [("uid", pod.uid.as_str()), ("container", "app")];
    assert_eq!(
        metric(&m, "podlife_container_starts_total", &uid),
        1.0,
        "{m}"
    );
    let error = [("uid", pod.uid.as_str()), ("reason", "Error")];
    assert_eq!(metric(&m, "podlife_container_exits_total", &error), 1.0);
}
