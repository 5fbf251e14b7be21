//! OOM kills under a 32 MiB container limit, with the memhog image: of the container init (the
//! container dies, OOMKilled) and of a child while the init survives (victim_is_init false, the
//! container keeps running and Kubernetes would never say a word).

use std::time::{Duration, Instant};

use podlife_cri::v1::ContainerState;
use podlife_e2e::agent::{events_of, has, metric, series_absent};
use podlife_e2e::{Container, CtrOpts, Env, Pod, PodOpts, WAIT};

fn limited() -> CtrOpts {
    CtrOpts {
        memory_limit: Some(32 << 20),
        ..CtrOpts::image("memhog")
    }
}

/// The runtime's verdict (137, OOMKilled), then the timeline once the agent has the OOM kill
/// and the exit.
fn oom_killed_timeline(env: &mut Env, pod: &Pod, c: &Container) -> serde_json::Value {
    let status = env.cri.wait_exited(&c.id);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled")
    );
    env.agent
        .wait_for(&pod.uid, "the OOM kill and the exit", WAIT, |t| {
            has(t, "OOMKill", &c.id) && has(t, "ContainerExited", &c.id)
        })
}

/// The OOM-ing cgroup's usage at the kill (its peak) and limit: the limit exactly, the usage
/// within a few pages under it (the charge that failed was at most a page or a batch).
fn assert_at_the_limit(oom: &serde_json::Value, limit: u64) {
    assert_eq!(oom["limit_bytes"], limit, "{oom}");
    let usage = oom["usage_bytes"].as_u64().unwrap_or(0);
    assert!(
        (limit - (64 << 10)..=limit).contains(&usage),
        "usage {usage} within 64 KiB under the limit {limit}: {oom}"
    );
}

#[test]
fn oom_kill_of_the_container_init() {
    let mut env = Env::start();
    let pod = env.run_pod("hungry", PodOpts::default());
    let hog = env.run_container(&pod, "hog", &["/memhog", "4", "20"], limited());
    let t = oom_killed_timeline(&mut env, &pod, &hog);
    let started = &events_of(&t, "ContainerStarted", &hog.id)[0];
    let oom = &events_of(&t, "OOMKill", &hog.id)[0];
    assert_eq!(oom["victim_is_init"], true, "{t}");
    assert_eq!(oom["pid"], started["pid"]);
    assert_eq!(oom["comm"], "memhog");
    assert_eq!(oom["limit_scope"], "container");
    // No memory.oom.group here (v1 has none; on v2 the test leaves it unset): one victim,
    // the init, which allocated itself.
    assert_eq!(oom["group_kill"], false, "{oom}");
    assert_eq!(oom["killed_with"], serde_json::json!([]));
    assert_eq!(oom["trigger"]["pid"], started["pid"], "{oom}");
    assert_eq!(oom["trigger"]["comm"], "memhog");
    assert_at_the_limit(oom, 32 << 20);
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
    assert_eq!(oom["group_kill"], false, "{oom}");
    assert_eq!(
        oom["trigger"]["pid"], oom["pid"],
        "the child allocated: {oom}"
    );
    assert_at_the_limit(oom, 32 << 20);
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
    // The pod cgroup's limit and usage: the container has none of its own.
    assert_at_the_limit(oom, 32 << 20);
    assert_eq!(oom["group_kill"], false, "{oom}");
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

/// cgroup v2 with `memory.oom.group` = 1 in the container cgroup (the kubelet's default there
/// since 1.28): the kernel kills every process of the container when one of them hits the
/// limit, so a child's OOM kill takes the init with it and the container dies OOMKilled —
/// unlike the silent child kill above.
#[test]
#[ignore = "cgroup v2 only (memory.oom.group): the vm-e2e suite runs it in the 6.12 VM (cargo xtask vm-e2e)"]
fn oom_group_kills_the_whole_container_on_a_childs_oom() {
    let mut env = Env::start();
    let pod = env.run_pod("grouped", PodOpts::default());
    let grouped = CtrOpts {
        oom_group: true,
        ..limited()
    };
    let app = env.run_container(&pod, "app", &["/memhog", "--child", "4", "20"], grouped);
    let t = oom_killed_timeline(&mut env, &pod, &app);
    // The kernel marks each member it kills: the child (the victim it chose), then the init
    // (the group kill), each an OOMKill of its own.
    let init_pid = &events_of(&t, "ContainerStarted", &app.id)[0]["pid"];
    let ooms = events_of(&t, "OOMKill", &app.id);
    assert_eq!(ooms.len(), 2, "the child and the init: {t}");
    assert_eq!(ooms[0]["victim_is_init"], false, "the child first: {t}");
    assert_ne!(&ooms[0]["pid"], init_pid);
    assert_eq!(ooms[1]["victim_is_init"], true, "then the init: {t}");
    assert_eq!(&ooms[1]["pid"], init_pid);
    // One group kill set off by the child's allocation: the child's OOMKill lists the init,
    // the init's names the child's; both name the child as the trigger.
    let child = &ooms[0]["pid"];
    assert_eq!(ooms[0]["killed_with"], serde_json::json!([init_pid]), "{t}");
    assert_eq!(ooms[0]["killed_with_more"], 0);
    assert_eq!(&ooms[1]["group_first_victim"], child, "{t}");
    for oom in &ooms {
        assert_eq!(oom["comm"], "memhog");
        assert_eq!(oom["limit_scope"], "container", "{t}");
        assert_eq!(oom["group_kill"], true, "{t}");
        assert_eq!(&oom["trigger"]["pid"], child, "{t}");
    }
    assert_at_the_limit(ooms[0], 32 << 20);
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    assert_eq!(
        &exit["sender"]["pid"], child,
        "died of the child's allocation: {exit}"
    );
    assert_eq!(exit["signal"], "SIGKILL", "{exit}");
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["reason"], "OOMKilled", "{t}");
    assert_eq!(exit["killed_by"], "oom_killer", "{t}");

    let m = env.agent.metrics();
    for victim in ["child", "init"] {
        let labels = [
            ("uid", pod.uid.as_str()),
            ("container", "app"),
            ("victim", victim),
            ("limit_scope", "container"),
        ];
        assert_eq!(
            metric(&m, "podlife_container_oom_kills_total", &labels),
            1.0,
            "{victim}: {m}"
        );
    }
}
