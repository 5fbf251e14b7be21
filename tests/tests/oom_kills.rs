//! OOM kills under a 32 MiB container limit, with the memhog image: of the container init (the
//! container dies, OOMKilled) and of a child while the init survives (victim_is_init false, the
//! container keeps running and Kubernetes would never say a word).

use std::time::{Duration, Instant};

use podlife_cri::v1::ContainerState;
use podlife_e2e::agent::{events_of, has, metric, series_absent};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

fn limited() -> CtrOpts {
    CtrOpts {
        memory_limit: Some(32 << 20),
        ..CtrOpts::image("memhog")
    }
}

#[test]
fn oom_kill_of_the_container_init() {
    let mut env = Env::start();
    let pod = env.run_pod("hungry", PodOpts::default());
    let hog = env.run_container(&pod, "hog", &["/memhog", "4", "20"], limited());
    let status = env.cri.wait_exited(&hog.id);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled")
    );

    let t = env
        .agent
        .wait_for(&pod.uid, "the OOM kill and the exit", WAIT, |t| {
            has(t, "OOMKill", &hog.id) && has(t, "ContainerExited", &hog.id)
        });
    let started = &events_of(&t, "ContainerStarted", &hog.id)[0];
    let oom = &events_of(&t, "OOMKill", &hog.id)[0];
    assert_eq!(oom["victim_is_init"], true, "{t}");
    assert_eq!(oom["pid"], started["pid"]);
    assert_eq!(oom["comm"], "memhog");
    assert_eq!(oom["limit_scope"], "container");
    let rss = oom["anon_rss_bytes"].as_u64().unwrap_or(0);
    assert!(
        (16 << 20..=32 << 20).contains(&rss),
        "anon rss {rss} near the limit"
    );
    let exit = &events_of(&t, "ContainerExited", &hog.id)[0];
    assert_eq!(exit["reason"], "OOMKilled");
    assert_eq!(exit["signal"], "SIGKILL");
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["killed_by"], "oom_killer");

    let m = env.agent.metrics();
    let labels = [
        ("uid", pod.uid.as_str()),
        ("container", "hog"),
        ("victim", "init"),
        ("limit_scope", "container"),
    ];
    assert_eq!(
        metric(&m, "podlife_container_oom_kills_total", &labels),
        1.0,
        "{m}"
    );
    let oomed = [("uid", pod.uid.as_str()), ("reason", "OOMKilled")];
    assert_eq!(metric(&m, "podlife_container_exits_total", &oomed), 1.0);
}

#[test]
fn silent_oom_kill_of_a_child_while_the_init_survives() {
    let mut env = Env::start();
    let pod = env.run_pod("leaky", PodOpts::default());
    let app = env.run_container(&pod, "app", &["/memhog", "--child", "4", "20"], limited());
    let t = env
        .agent
        .wait_for(&pod.uid, "the child's OOM kill", WAIT, |t| {
            has(t, "OOMKill", &app.id)
        });
    // The runtime sees nothing: the container keeps running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.container_log(&pod, &app).contains("killed by signal 9") {
        assert!(
            Instant::now() < deadline,
            "{}",
            env.container_log(&pod, &app)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = env.cri.container_status(&app.id);
    assert_eq!(
        status.state,
        ContainerState::ContainerRunning as i32,
        "{status:?}"
    );

    let init_pid = &events_of(&t, "ContainerStarted", &app.id)[0]["pid"];
    let oom = &events_of(&t, "OOMKill", &app.id)[0];
    assert_eq!(oom["victim_is_init"], false, "{t}");
    assert_ne!(&oom["pid"], init_pid);
    assert_eq!(oom["comm"], "memhog");
    assert_eq!(oom["limit_scope"], "container");
    let t = env.agent.timeline(&pod.uid);
    assert!(
        events_of(&t, "ContainerExited", &app.id).is_empty(),
        "the init survives its child's OOM: {t}"
    );
    let app_state = t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == app.id.as_str())
        .map(|c| c["state"].clone());
    assert_eq!(app_state, Some("Running".into()), "{t}");

    let m = env.agent.metrics();
    let labels = [
        ("uid", pod.uid.as_str()),
        ("container", "app"),
        ("victim", "child"),
        ("limit_scope", "container"),
    ];
    assert_eq!(
        metric(&m, "podlife_container_oom_kills_total", &labels),
        1.0,
        "{m}"
    );
    let exits = [("uid", pod.uid.as_str())];
    assert!(
        series_absent(&m, "podlife_container_exits_total", &exits),
        "no container of the pod exited: {m}"
    );
}

/// The pod cgroup's memory limit, as the kubelet sets it for a pod with limits (v1
/// `memory.limit_in_bytes` in the memory hierarchy, v2 `memory.max`).
fn limit_pod_memory(cgroup: &str, bytes: u64) {
    let mut set = false;
    for h in podlife_e2e::kubelet::hierarchies() {
        let dir = h.join(cgroup.trim_start_matches('/'));
        for file in ["memory.limit_in_bytes", "memory.max"] {
            let p = dir.join(file);
            if p.exists() {
                std::fs::write(&p, bytes.to_string())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                set = true;
            }
        }
    }
    assert!(set, "no memory controller for {cgroup}");
}

#[test]
fn oom_kill_by_the_pods_limit_is_scoped_to_the_pod() {
    // The container has no limit of its own; the pod cgroup's 32 MiB fires. (Node scope cannot
    // be produced here without starving the machine: it is covered by the scope rule's unit
    // tests, userspace/agent/src/oom_scope.rs.)
    let mut env = Env::start();
    let pod = env.run_pod("capped", PodOpts::default());
    limit_pod_memory(&pod.cgroup, 32 << 20);
    let hog = env.run_container(
        &pod,
        "hog",
        &["/memhog", "4", "20"],
        CtrOpts::image("memhog"),
    );
    let status = env.cri.wait_exited(&hog.id);
    assert_eq!(status.exit_code, 137, "{status:?}");
    let t = env
        .agent
        .wait_for(&pod.uid, "the OOM kill and the exit", WAIT, |t| {
            has(t, "OOMKill", &hog.id) && has(t, "ContainerExited", &hog.id)
        });
    let oom = &events_of(&t, "OOMKill", &hog.id)[0];
    assert_eq!(oom["victim_is_init"], true, "{t}");
    assert_eq!(oom["limit_scope"], "pod", "{t}");
    let m = env.agent.metrics();
    let labels = [
        ("uid", pod.uid.as_str()),
        ("container", "hog"),
        ("limit_scope", "pod"),
    ];
    assert_eq!(
        metric(&m, "podlife_container_oom_kills_total", &labels),
        1.0,
        "{m}"
    );
}
