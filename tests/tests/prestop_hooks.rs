//! Exec preStop hooks as the kubelet runs them: the handler annotated on the container, the
//! hook through ExecSync, then StopContainer with the rest of the grace period. A hook that
//! ends in time (`sleep 1`, then a clean stop) and one that outlives the grace (killed by the
//! runtime at the exec timeout, then the stop). An httpGet hook: the kubelet's GET of the pod
//! (from the host, comm `kubelet`) just before the stop, told apart from the probes of the
//! same port that came before it. A sleep hook: no process; the API server's deletion (a
//! stand-in API server, `--kube-api`) starts it and the stop signal ends it.

use std::net::SocketAddr;

use podlife_e2e::agent::{events, events_of, has};
use podlife_e2e::apiserver::{rfc3339_secs, ApiServer, World};
use podlife_e2e::pod_net::{kubelet_probe, pod_ip, route_to_pod, wait_for_probe_capture, Seen};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};
use serde_json::{json, Value};

fn with_hook(hook: &[&str], grace_s: i64) -> CtrOpts {
    CtrOpts {
        grace_s: Some(grace_s),
        prestop: Some(hook.iter().map(|s| s.to_string()).collect()),
        ..CtrOpts::default()
    }
}

/// The position of the first event of `ty` of the container in the timeline.
fn position(t: &Value, ty: &str, id: &str) -> usize {
    t["events"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["type"] == ty && e["container_id"] == id)
        .unwrap_or_else(|| panic!("no {ty} in {t}"))
}

/// Start `app` with the hook and wait until the agent has its CRI metadata (asked for at the
/// start: the kubelet's hook comes much later than in these tests).
fn start(
    env: &mut Env,
    name: &str,
    hook: &[&str],
    grace_s: i64,
) -> (podlife_e2e::Pod, podlife_e2e::Container) {
    let pod = env.run_pod(name, PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        with_hook(hook, grace_s),
    );
    env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    (pod, app)
}

#[test]
fn an_exec_hook_then_a_clean_stop() {
    let mut env = Env::start();
    let hook = ["sh", "-c", "sleep 1"];
    let (pod, app) = start(&mut env, "prestop-clean", &hook, 10);
    let code = env.stop_with_prestop(&app, &hook, 10).unwrap();
    assert_eq!(code, 0);
    let status = env.cri.wait_exited(&app.id);
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));

    let t = env.agent.wait_for(&pod.uid, "app exit", WAIT, |t| {
        has(t, "ContainerExited", &app.id)
    });
    let started = &events_of(&t, "PreStopStarted", &app.id)[0];
    assert_eq!(started["handler"], "exec");
    assert_eq!(started["argv"], json!(hook));
    assert!(started["pid"].as_u64().is_some(), "{started}");
    let done = &events_of(&t, "PreStopFinished", &app.id)[0];
    assert_eq!(done["handler"], "exec");
    assert_eq!(done["exit_code"], 0);
    let ms = done["duration_ms"].as_f64().unwrap();
    assert!((1000.0..1800.0).contains(&ms), "{done}");
    let used = done["grace_used"].as_f64().unwrap();
    assert!((0.1..0.18).contains(&used), "{done}");
    assert_eq!(done["killed_at_grace"], false);
    // The hook's session is the hook, not an exec of its own.
    assert!(
        !events_of(&t, "ExecStarted", &app.id)
            .iter()
            .any(|e| e["argv"] == json!(hook)),
        "{t}"
    );
    assert!(position(&t, "PreStopFinished", &app.id) < position(&t, "StopRequested", &app.id));
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    assert_eq!(exit["reason"], "Completed");
    assert!(
        events_of(&t, "GracePeriodOverrun", &app.id).is_empty(),
        "{t}"
    );
}

#[test]
fn a_hook_that_runs_past_the_grace_period() {
    let mut env = Env::start();
    let hook = ["sleep", "30"];
    let (pod, app) = start(&mut env, "prestop-overrun", &hook, 2);
    let hook_result = env.stop_with_prestop(&app, &hook, 2);
    assert!(
        hook_result.is_err(),
        "the runtime ends the hook at the grace: {hook_result:?}"
    );
    env.cri.wait_exited(&app.id);

    let t = env.agent.wait_for(&pod.uid, "app exit", WAIT, |t| {
        has(t, "ContainerExited", &app.id) && has(t, "PreStopFinished", &app.id)
    });
    let done = &events_of(&t, "PreStopFinished", &app.id)[0];
    assert_eq!(done["killed_at_grace"], true, "{t}");
    assert_eq!(done["exit_code"], 137);
    let used = done["grace_used"].as_f64().unwrap();
    assert!(used > 0.9, "{done}");
    assert!(position(&t, "PreStopStarted", &app.id) < position(&t, "StopRequested", &app.id));
}

#[test]
fn an_http_hook_then_a_clean_stop() {
    let mut env = Env::start();
    let pod = env.run_pod("prestop-http", PodOpts::default());
    // busybox httpd on 8080 with a /drain page; the shell ends it on SIGTERM.
    let server = "echo drained > /tmp/drain; httpd -f -p 8080 -h /tmp & p=$!; \
                  trap 'kill $p; exit 0' TERM; wait";
    let app = env.run_container(
        &pod,
        "app",
        &["sh", "-c", server],
        CtrOpts {
            grace_s: Some(10),
            prestop_http: Some((8080, "/drain")),
            ..CtrOpts::default()
        },
    );
    let t = env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id) && !events(t, "SandboxStarted").is_empty()
    });
    let sandbox = events(&t, "SandboxStarted")[0]["pid"].as_u64().unwrap();
    let ip = pod_ip(sandbox);
    route_to_pod(&env.kubelet.containerd.bridge, &ip);
    let addr = SocketAddr::new(ip.parse().unwrap(), 8080);
    wait_for_probe_capture(&env.agent, &pod.uid, addr.ip(), 8082);
    // Readiness-style probes of the hook's port first: probes, not the hook.
    let mut ok = 0;
    for _ in 0..100 {
        if kubelet_probe(addr, Some("/drain")) == Seen::Ok {
            ok += 1;
            if ok == 3 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(ok, 3, "the server never answered on {addr}");
    std::thread::sleep(std::time::Duration::from_millis(500));

    assert_eq!(
        env.stop_with_http_prestop(&app, addr, "/drain", 10),
        Seen::Ok
    );
    let status = env.cri.wait_exited(&app.id);
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));

    let t = env
        .agent
        .wait_for(&pod.uid, "app exit and hook", WAIT, |t| {
            has(t, "ContainerExited", &app.id) && has(t, "PreStopFinished", &app.id)
        });
    let started = events_of(&t, "PreStopStarted", &app.id);
    assert_eq!(
        started.len(),
        1,
        "one hook, the probes before it are not: {t}"
    );
    assert_eq!(started[0]["handler"], "http");
    assert_eq!(started[0]["port"], 8080);
    assert_eq!(started[0]["path"], "/drain");
    let done = &events_of(&t, "PreStopFinished", &app.id)[0];
    assert_eq!(done["handler"], "http");
    assert_eq!(done["connection"], "closed");
    assert_eq!(done["killed_at_grace"], false);
    let ms = done["duration_ms"].as_f64().unwrap();
    assert!((0.0..1000.0).contains(&ms), "{done}");
    assert!(position(&t, "PreStopStarted", &app.id) < position(&t, "StopRequested", &app.id));
    assert!(position(&t, "PreStopFinished", &app.id) < position(&t, "StopRequested", &app.id));
    let term = t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == app.id.as_str())
        .map(|c| c["termination"].clone())
        .unwrap();
    assert!(term["prestop_s"].as_f64().is_some(), "{term}");
    assert_eq!(term["outcome"], "clean", "{term}");
}

#[test]
fn a_sleep_hook_from_the_deletion_to_the_stop_signal() {
    podlife_e2e::require_root();
    let api = ApiServer::start(World::default());
    let (mut env, tmp) = Env::start_with_kube_api(&api, "prestop-sleep", &[]);
    let grace = 10;
    let pod = env.run_pod_in("shop", "sleepy", PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        CtrOpts {
            grace_s: Some(grace),
            prestop_sleep: Some(2),
            ..CtrOpts::default()
        },
    );
    env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    // The deletion, as the API server shows it: deletionTimestamp = request + grace, in whole
    // seconds; the request is dated to this second's start.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let requested = now.as_secs();
    let deleted = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "sleepy", "namespace": "shop", "uid": pod.uid, "resourceVersion": "2",
            "deletionTimestamp": rfc3339_secs(requested + grace as u64),
            "deletionGracePeriodSeconds": grace,
        },
        "spec": {
            "nodeName": "node-a",
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": "app", "image": "busybox",
                            "lifecycle": {"preStop": {"sleep": {"seconds": 2}}}}],
        },
        "status": {"containerStatuses": [{
            "name": "app", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
            "containerID": format!("containerd://{}", app.id),
        }]},
    });
    api.world.lock().unwrap().node_pods.push(deleted);
    env.agent.wait_for(&pod.uid, "the deletion", WAIT, |t| {
        !events(t, "DeletionRequested").is_empty()
    });
    // The kubelet sleeps the hook's 2 s from the deletion, then stops the container.
    let hook_end = std::time::Duration::from_secs(requested + 2);
    let since_epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    if let Some(left) = hook_end.checked_sub(since_epoch()) {
        std::thread::sleep(left);
    }
    let stopped_after = since_epoch().as_secs_f64() - requested as f64;
    env.cri.stop_container(&app.id, grace - 2);
    env.cri.wait_exited(&app.id);

    let t = env
        .agent
        .wait_for(&pod.uid, "app exit and hook", WAIT, |t| {
            has(t, "ContainerExited", &app.id) && has(t, "PreStopFinished", &app.id)
        });
    let started = &events_of(&t, "PreStopStarted", &app.id)[0];
    assert_eq!(started["handler"], "sleep", "{started}");
    assert_eq!(
        started["time"],
        events(&t, "DeletionRequested")[0]["time"],
        "dated to the deletion: {t}"
    );
    let done = &events_of(&t, "PreStopFinished", &app.id)[0];
    assert_eq!(done["handler"], "sleep");
    assert_eq!(done["killed_at_grace"], false);
    let secs = done["duration_ms"].as_f64().unwrap() / 1e3;
    assert!(
        (secs - stopped_after).abs() < 0.5 && secs >= 1.9,
        "the hook ran from the deletion to the stop signal ({stopped_after:.3} s): {done}"
    );
    assert!(position(&t, "PreStopFinished", &app.id) < position(&t, "StopRequested", &app.id));
    let _ = std::fs::remove_dir_all(&tmp);
}
