//! StopPodSandbox with a container still running (the runtime SIGKILLs it, no grace period),
//! then RemovePodSandbox and the pod cgroup's removal: SandboxStopped, PodRemoved.

use podlife_e2e::agent::{events, events_of, has};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn sandbox_stop_and_remove() {
    let mut env = Env::start();
    let pod = env.run_pod("shortlived", PodOpts::default());
    let app = env.run_container(&pod, "sidecar", &["sleep", "1000"], CtrOpts::default());
    let t = env.agent.wait_for(&pod.uid, "sidecar start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    env.assert_container_cgroup(&pod, &app);
    let pause = events(&t, "SandboxStarted")[0]["pid"].clone();
    env.remove_pod(&pod);
    let t = env.agent.wait_for(&pod.uid, "PodRemoved", WAIT, |t| {
        !events(t, "PodRemoved").is_empty()
    });
    let stopped = events(&t, "SandboxStopped");
    assert_eq!(stopped.len(), 1, "{t}");
    assert_eq!(stopped[0]["pid"], pause);
    assert_eq!(
        stopped[0]["signal"], "SIGKILL",
        "the runtime kills pause: {t}"
    );
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    assert_eq!(
        exit["signal"], "SIGKILL",
        "StopPodSandbox kills without a grace period: {t}"
    );
    assert_eq!(exit["killed_by"], "runtime_stop");
    // Order: the container, then the sandbox, then the pod.
    let time = |e: &serde_json::Value| e["time"].as_str().unwrap_or_default().to_string();
    let removed = &events(&t, "PodRemoved")[0];
    assert!(time(exit) <= time(stopped[0]) && time(stopped[0]) <= time(removed));
    assert_eq!(events(&t, "PodRemoved").len(), 1);
    assert_eq!(t["state"], "Removed");
}
