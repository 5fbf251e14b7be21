//! The kubelet's namespace variants: a hostNetwork sandbox (no pod network namespace, no CNI)
//! and shareProcessNamespace (one pid namespace for the whole pod). Pids on the timeline are
//! cross-checked against /proc.

use podlife_e2e::agent::{events, events_of, has, metric};
use podlife_e2e::{node_ns, ns_of, CtrOpts, Env, PodOpts, WAIT};

#[test]
fn host_network_sandbox() {
    let mut env = Env::start();
    let opts = PodOpts {
        host_network: true,
        share_pid: false,
    };
    let pod = env.run_pod("hostnet", opts);
    let app = env.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
    let t = env.agent.wait_for(&pod.uid, "the app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id) && !events(t, "SandboxStarted").is_empty()
    });
    let sandbox = &events(&t, "SandboxStarted")[0];
    assert_eq!(sandbox["container_id"], pod.sandbox_id.as_str(), "{t}");
    let pause = sandbox["pid"].as_u64().unwrap();
    let app_pid = events_of(&t, "ContainerStarted", &app.id)[0]["pid"]
        .as_u64()
        .unwrap();
    assert_eq!(
        ns_of(pause, "net"),
        node_ns("net"),
        "hostNetwork: the node's netns"
    );
    assert_eq!(ns_of(app_pid, "net"), node_ns("net"));
    assert_ne!(
        ns_of(app_pid, "pid"),
        ns_of(pause, "pid"),
        "own pid namespace"
    );
    assert_eq!(ns_of(app_pid, "ipc"), ns_of(pause, "ipc"));

    env.cri.stop_container(&app.id, 2);
    let t = env.agent.wait_for(&pod.uid, "the app exit", WAIT, |t| {
        has(t, "ContainerExited", &app.id)
    });
    assert_eq!(events(&t, "SandboxStarted").len(), 1, "{t}");
    assert_eq!(
        events_of(&t, "ContainerExited", &app.id)[0]["exit_code"],
        137
    );
    let m = env.agent.metrics();
    let labels = [("uid", pod.uid.as_str()), ("container", "app")];
    assert_eq!(
        metric(&m, "podlife_container_starts_total", &labels),
        1.0,
        "{m}"
    );
}

#[test]
fn share_process_namespace() {
    let mut env = Env::start();
    let opts = PodOpts {
        host_network: false,
        share_pid: true,
    };
    let pod = env.run_pod("sharedpid", opts);
    let app = env.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
    let side = env.run_container(
        &pod,
        "sidecar",
        &["sh", "-c", "sleep 0.5; exit 5"],
        CtrOpts::default(),
    );
    let t = env
        .agent
        .wait_for(&pod.uid, "the sidecar's exit", WAIT, |t| {
            has(t, "ContainerStarted", &app.id) && has(t, "ContainerExited", &side.id)
        });
    let sandbox = &events(&t, "SandboxStarted");
    assert_eq!(sandbox.len(), 1, "{t}");
    let pause = sandbox[0]["pid"].as_u64().unwrap();
    let app_pid = events_of(&t, "ContainerStarted", &app.id)[0]["pid"]
        .as_u64()
        .unwrap();
    assert_eq!(
        ns_of(app_pid, "pid"),
        ns_of(pause, "pid"),
        "one pid namespace"
    );
    assert_ne!(ns_of(app_pid, "net"), node_ns("net"), "the pod network");
    assert_eq!(
        events_of(&t, "ContainerStarted", &side.id)[0]["container"],
        "sidecar"
    );
    let exit = &events_of(&t, "ContainerExited", &side.id)[0];
    assert_eq!(exit["exit_code"], 5, "{t}");
    assert!(events_of(&t, "ContainerExited", &app.id).is_empty(), "{t}");
    let m = env.agent.metrics();
    let uid = [("uid", pod.uid.as_str())];
    assert_eq!(
        metric(&m, "podlife_container_starts_total", &uid),
        2.0,
        "{m}"
    );
}
