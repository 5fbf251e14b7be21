//! A two-container pod whose sidecar is stopped and exits before the app: each container's
//! termination summary (null while running) and the pod's shutdown order, in JSON and text.

use podlife_e2e::agent::has;
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};
use serde_json::Value;

fn termination<'a>(t: &'a Value, id: &str) -> &'a Value {
    let c = t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} listed: {t}"));
    &c["termination"]
}

#[test]
fn the_sidecar_exits_first() {
    let mut env = Env::start();
    let pod = env.run_pod("drain", PodOpts::default());
    let handler = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];
    let app = env.run_container(&pod, "app", &handler, CtrOpts::default());
    let proxy = env.run_container(&pod, "proxy", &handler, CtrOpts::default());
    let t = env.agent.wait_for(&pod.uid, "both started", WAIT, |t| {
        has(t, "ContainerStarted", &app.id) && has(t, "ContainerStarted", &proxy.id)
    });
    assert!(
        termination(&t, &app.id).is_null(),
        "null while running: {t}"
    );
    env.cri.stop_container(&proxy.id, 10);
    env.cri.wait_exited(&proxy.id);
    env.cri.stop_container(&app.id, 10);
    env.cri.wait_exited(&app.id);

    let t = env.agent.wait_for(&pod.uid, "both exited", WAIT, |t| {
        has(t, "ContainerExited", &app.id) && has(t, "ContainerExited", &proxy.id)
    });
    assert_eq!(
        t["shutdown_order"],
        serde_json::json!(["proxy", "app"]),
        "{t}"
    );
    // Which container is a native sidecar only the pod spec says (--kube-api): without it
    // both are app containers, and there is no verdict (core tests have the false one).
    assert!(t["sidecars_outlived_apps"].is_null(), "{t}");
    for id in [&app.id, &proxy.id] {
        let term = termination(&t, id);
        assert_eq!(term["outcome"], "clean", "{term}");
        assert!(term["stop_signal_at"].is_string(), "{term}");
        assert!(term["exited_after_s"].as_f64().unwrap() < 2.0, "{term}");
        assert_eq!(term["configured_grace_s"], 30.0, "from the CRI: {term}");
    }
    let (_, text) = env
        .agent
        .get(&format!("/pods/{}/timeline?format=text", pod.uid));
    assert!(text.contains("shutdown order: proxy, app"), "{text}");
}
