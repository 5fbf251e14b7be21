//! Init containers run one after the other, each to a clean exit, then the app starts; names
//! come from the runtime's metadata.

use podlife_e2e::agent::{events, has, metric};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn init_containers_run_in_order_then_the_app() {
    let mut env = Env::start();
    let pod = env.run_pod("initdemo", PodOpts::default());
    // As the kubelet does: the next one only after the previous one exited 0.
    for name in ["init-db", "init-cfg"] {
        let c = env.run_container(&pod, name, &["sh", "-c", "sleep 0.2"], CtrOpts::default());
        assert_eq!(env.cri.wait_exited(&c.id).exit_code, 0);
    }
    let app = env.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
    let t = env.agent.wait_for(&pod.uid, "the app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    let names = |ty: &str| -> Vec<String> {
        events(&t, ty)
            .iter()
            .map(|e| e["container"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert_eq!(
        names("ContainerStarted"),
        ["init-db", "init-cfg", "app"],
        "{t}"
    );
    assert_eq!(names("ContainerExited"), ["init-db", "init-cfg"], "{t}");
    assert!(events(&t, "ContainerExited")
        .iter()
        .all(|e| e["reason"] == "Completed" && e["exit_code"] == 0));
    // Each init exits before the next starts.
    let at = |ty: &str, name: &str| -> String {
        events(&t, ty)
            .iter()
            .find(|e| e["container"] == name)
            .and_then(|e| e["time"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(at("ContainerExited", "init-db") < at("ContainerStarted", "init-cfg"));
    assert!(at("ContainerExited", "init-cfg") < at("ContainerStarted", "app"));
    let kinds: Vec<(&str, &str)> = t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for want in [("init-db", "init"), ("init-cfg", "init"), ("app", "app")] {
        assert!(kinds.contains(&want), "{want:?} in {kinds:?}");
    }
    let m = env.agent.metrics();
    let uid = [("uid", pod.uid.as_str())];
    assert_eq!(
        metric(&m, "podlife_container_starts_total", &uid),
        3.0,
        "{m}"
    );
    let completed = [("uid", pod.uid.as_str()), ("reason", "Completed")];
    assert_eq!(metric(&m, "podlife_container_exits_total", &completed), 2.0);
}
