//! Lifecycle scenarios of DESIGN.md on real pods, each asserting timeline events and fields and
//! the matching counters in /metrics.

use std::time::Duration;

use podlife_e2e::agent::{events, events_of, metric};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;

const WAIT: Duration = Duration::from_secs(20);

fn has(t: &serde_json::Value, ty: &str, id: &str) -> bool {
    !events_of(t, ty, id).is_empty()
}

#[test]
fn init_containers_run_in_order_then_the_app() {
    let mut env = Env::start();
    let pod = env.run_pod("initdemo", PodOpts::default());
    let i1 = env.run_container(
        &pod,
        "init-db",
        &["sh", "-c", "sleep 0.2"],
        CtrOpts::default(),
    );
    env.cri.wait_exited(&i1.id);
    let i2 = env.run_container(
        &pod,
        "init-cfg",
        &["sh", "-c", "sleep 0.2"],
        CtrOpts::default(),
    );
    env.cri.wait_exited(&i2.id);
    let app = env.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
    let t = env.agent.wait_for(&pod.uid, "the app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    let order: Vec<&str> = events(&t, "ContainerStarted")
        .iter()
        .map(|e| e["container"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(order, ["init-db", "init-cfg", "app"], "{t}");
    let exits: Vec<&str> = events(&t, "ContainerExited")
        .iter()
        .map(|e| e["container"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(exits, ["init-db", "init-cfg"]);
    assert!(events(&t, "ContainerExited")
        .iter()
        .all(|e| e["reason"] == "Completed"));
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
    assert!(
        kinds.contains(&("init-db", "init"))
            && kinds.contains(&("init-cfg", "init"))
            && kinds.contains(&("app", "app")),
        "{kinds:?}"
    );
}

#[test]
fn exec_probes_success_failure_and_timeout() {
    let mut env = Env::start();
    let pod = env.run_pod("probed", PodOpts::default());
    let app = env.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
    env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    assert_eq!(
        env.cri
            .exec_sync(&app.id, &["sh", "-c", "exit 0"], 5)
            .unwrap(),
        0
    );
    for _ in 0..2 {
        assert_eq!(
            env.cri
                .exec_sync(&app.id, &["sh", "-c", "exit 1"], 5)
                .unwrap(),
            1
        );
    }
    let timeout = env.cri.exec_sync(&app.id, &["sleep", "5"], 1);
    assert!(timeout.is_err(), "ExecSync should time out: {timeout:?}");
    let t = env
        .agent
        .wait_for(&pod.uid, "four exec sessions", WAIT, |t| {
            events_of(t, "ExecFinished", &app.id).len() >= 4
        });
    let fin = events_of(&t, "ExecFinished", &app.id);
    assert_eq!(fin[0]["exit_code"], 0);
    assert_eq!(fin[0]["argv"], serde_json::json!(["sh", "-c", "exit 0"]));
    assert_eq!(fin[1]["exit_code"], 1);
    assert_eq!(fin[2]["exit_code"], 1);
    assert_eq!(
        fin[2]["probe"], "exec_probe",
        "a recurring command is a probe: {t}"
    );
    assert_eq!(
        fin[3]["timed_out"], true,
        "the shim's SIGKILL at the timeout: {t}"
    );
    assert_eq!(fin[3]["signal"], "SIGKILL");
    assert!(
        fin[3]["duration_ms"].as_f64().unwrap() >= 900.0,
        "{}",
        fin[3]
    );
    assert!(fin.iter().all(|e| e["duration_ms"].as_f64().unwrap() > 0.0));
    let failed = events_of(&t, "ProbeFailed", &app.id);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["consecutive_failures"], 2);
    assert_eq!(events_of(&t, "ExecStarted", &app.id).len(), 4);
    let m = env.agent.metrics();
    let uid = pod.uid.as_str();
    assert_eq!(
        metric(
            &m,
            "podlife_exec_sessions_total",
            &[("uid", uid), ("result", "failure")]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "podlife_exec_sessions_total",
            &[("uid", uid), ("result", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "podlife_probe_failures_total",
            &[("uid", uid), ("container", "app")]
        ),
        1.0
    );
}

#[test]
fn graceful_stop_with_a_term_handler() {
    let mut env = Env::start();
    let pod = env.run_pod("graceful", PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        CtrOpts::default(),
    );
    env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    env.cri.stop_container(&app.id, 10);
    let t = env.agent.wait_for(&pod.uid, "app exit", WAIT, |t| {
        has(t, "ContainerExited", &app.id)
    });
    let stop = &events_of(&t, "StopRequested", &app.id)[0];
    assert_eq!(stop["signal"], "SIGTERM");
    assert_eq!(stop["sender"]["comm"], "runc");
    assert!(
        events_of(&t, "StopSignalIgnored", &app.id).is_empty(),
        "{t}"
    );
    assert!(
        events_of(&t, "GracePeriodOverrun", &app.id).is_empty(),
        "{t}"
    );
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    assert_eq!(exit["exit_code"], 0);
    assert_eq!(exit["reason"], "Completed");
    assert_eq!(exit["killed_by"], "runtime_stop");
    assert!(exit["termination_s"].as_f64().unwrap() < 2.0);
}

#[test]
fn pid1_without_a_handler_ignores_sigterm_and_overruns_its_grace_period() {
    let mut env = Env::start();
    let pod = env.run_pod("stubborn", PodOpts::default());
    let grace = CtrOpts {
        grace_s: Some(2),
        ..CtrOpts::default()
    };
    let app = env.run_container(&pod, "app", &["sleep", "1000"], grace);
    env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    env.cri.stop_container(&app.id, 2);
    let t = env.agent.wait_for(&pod.uid, "app exit", WAIT, |t| {
        has(t, "ContainerExited", &app.id)
    });
    assert_eq!(
        events_of(&t, "StopSignalIgnored", &app.id)[0]["signal"],
        "SIGTERM",
        "{t}"
    );
    let overrun = events_of(&t, "GracePeriodOverrun", &app.id);
    let observed = overrun[0]["observed_grace_s"].as_f64().unwrap();
    assert!(
        (1.9..3.0).contains(&observed),
        "StopContainer timeout 2 s, observed {observed}"
    );
    assert_eq!(
        overrun[0]["configured_grace_s"], 2.0,
        "the kubelet's grace period, from the CRI: {t}"
    );
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    assert_eq!(exit["signal"], "SIGKILL");
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["killed_by"], "grace_overrun");
    let m = env.agent.metrics();
    assert_eq!(
        metric(
            &m,
            "podlife_stop_signals_ignored_total",
            &[("uid", &pod.uid)]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "podlife_grace_period_overruns_total",
            &[("uid", &pod.uid), ("container", "app")]
        ),
        1.0
    );
}

#[test]
fn oom_kill_of_the_init_and_silent_oom_of_a_child() {
    let mut env = Env::start();
    let pod = env.run_pod("hungry", PodOpts::default());
    let limit = CtrOpts {
        memory_limit: Some(32 << 20),
        attempt: 0,
        grace_s: None,
    };
    // `tail /dev/zero` buffers a line that never ends: it grows until the OOM killer comes.
    let child = env.run_container(
        &pod,
        "parent",
        &["sh", "-c", "tail /dev/zero; sleep 1000"],
        limit.clone(),
    );
    let init = env.run_container(&pod, "hog", &["tail", "/dev/zero"], limit);
    let t = env.agent.wait_for(&pod.uid, "both OOM kills", WAIT, |t| {
        has(t, "OOMKill", &child.id) && has(t, "ContainerExited", &init.id)
    });
    let silent = &events_of(&t, "OOMKill", &child.id)[0];
    assert_eq!(silent["victim_is_init"], false);
    assert_eq!(silent["limit_scope"], "container");
    assert!(
        events_of(&t, "ContainerExited", &child.id).is_empty(),
        "the parent survives its child's OOM: {t}"
    );
    let hog = &events_of(&t, "OOMKill", &init.id)[0];
    assert_eq!(hog["victim_is_init"], true);
    assert_eq!(hog["limit_scope"], "container");
    assert!(hog["anon_rss_bytes"].as_u64().unwrap() > 16 << 20);
    let exit = &events_of(&t, "ContainerExited", &init.id)[0];
    assert_eq!(exit["reason"], "OOMKilled");
    assert_eq!(exit["killed_by"], "oom_killer");
    assert_eq!(
        env.cri.wait_exited(&init.id).reason,
        "OOMKilled",
        "containerd agrees"
    );
    let m = env.agent.metrics();
    assert_eq!(
        metric(
            &m,
            "podlife_container_oom_kills_total",
            &[
                ("uid", &pod.uid),
                ("victim", "child"),
                ("limit_scope", "container")
            ]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "podlife_container_oom_kills_total",
            &[("uid", &pod.uid), ("victim", "init")]
        ),
        1.0
    );
}

#[test]
fn a_crash_by_sigsegv() {
    let mut env = Env::start();
    let pod = env.run_pod("crashy", PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &["sh", "-c", "sh -c 'kill -SEGV $$'; sleep 1000"],
        CtrOpts::default(),
    );
    let t = env.agent.wait_for(&pod.uid, "the crash", WAIT, |t| {
        has(t, "ProcessCrashed", &app.id)
    });
    let crash = &events_of(&t, "ProcessCrashed", &app.id)[0];
    assert_eq!(crash["signal"], "SIGSEGV");
    assert_eq!(crash["is_init"], false);
    assert_eq!(
        metric(
            &env.agent.metrics(),
            "podlife_process_crashes_total",
            &[("uid", &pod.uid), ("signal", "SIGSEGV")]
        ),
        1.0
    );
}

#[test]
fn restarts_with_growing_back_off() {
    let mut env = Env::start();
    let pod = env.run_pod("flaky", PodOpts::default());
    let mut ids = Vec::new();
    for (attempt, delay) in [(0u32, 0.0f64), (1, 0.5), (2, 1.2)] {
        std::thread::sleep(Duration::from_secs_f64(delay));
        let c = env.run_container(
            &pod,
            "app",
            &["sh", "-c", "exit 3"],
            CtrOpts {
                memory_limit: None,
                attempt,
                grace_s: None,
            },
        );
        env.cri.wait_exited(&c.id);
        ids.push(c.id);
    }
    let t = env.agent.wait_for(&pod.uid, "two restarts", WAIT, |t| {
        events(t, "ContainerRestarted").len() >= 2 && has(t, "ContainerExited", &ids[2])
    });
    let r = events(&t, "ContainerRestarted");
    assert_eq!(r[0]["attempt"], 1);
    assert_eq!(r[1]["attempt"], 2);
    let (b1, b2) = (
        r[0]["backoff_s"].as_f64().unwrap(),
        r[1]["backoff_s"].as_f64().unwrap(),
    );
    assert!(b1 >= 0.4 && b2 > b1, "growing back-off: {b1} then {b2}");
    assert!(events(&t, "ContainerExited")
        .iter()
        .all(|e| e["exit_code"] == 3));
    let app = t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == ids[2].as_str())
        .expect("last attempt listed");
    assert_eq!(app["restarts"], 2);
    assert_eq!(
        metric(
            &env.agent.metrics(),
            "podlife_container_restarts_total",
            &[("uid", &pod.uid)]
        ),
        2.0
    );
}

#[test]
fn host_network_and_shared_pid_pods() {
    let mut env = Env::start();
    let host = env.run_pod(
        "hostnet",
        PodOpts {
            host_network: true,
            share_pid: false,
        },
    );
    let a = env.run_container(
        &host,
        "app",
        &["sh", "-c", "sleep 0.3; exit 4"],
        CtrOpts::default(),
    );
    let shared = env.run_pod(
        "sharedpid",
        PodOpts {
            host_network: false,
            share_pid: true,
        },
    );
    let b = env.run_container(
        &shared,
        "app",
        &["sh", "-c", "sleep 0.3; exit 5"],
        CtrOpts::default(),
    );
    let t = env
        .agent
        .wait_for(&host.uid, "hostNetwork app exit", WAIT, |t| {
            has(t, "ContainerExited", &a.id)
        });
    assert_eq!(events(&t, "SandboxStarted").len(), 1, "{t}");
    assert_eq!(events_of(&t, "ContainerExited", &a.id)[0]["exit_code"], 4);
    let t = env
        .agent
        .wait_for(&shared.uid, "shared-pid app exit", WAIT, |t| {
            has(t, "ContainerExited", &b.id)
        });
    assert_eq!(events(&t, "SandboxStarted").len(), 1, "{t}");
    assert_eq!(
        events_of(&t, "ContainerStarted", &b.id)[0]["container"],
        "app"
    );
    assert_eq!(events_of(&t, "ContainerExited", &b.id)[0]["exit_code"], 5);
}

#[test]
fn sandbox_stop_and_remove() {
    let mut env = Env::start();
    let pod = env.run_pod("shortlived", PodOpts::default());
    let app = env.run_container(&pod, "sidecar", &["sleep", "1000"], CtrOpts::default());
    env.agent.wait_for(&pod.uid, "sidecar start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    env.remove_pod(&pod);
    let t = env.agent.wait_for(&pod.uid, "PodRemoved", WAIT, |t| {
        !events(t, "PodRemoved").is_empty()
    });
    assert_eq!(events(&t, "SandboxStopped").len(), 1, "{t}");
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    assert_eq!(
        exit["signal"], "SIGKILL",
        "StopPodSandbox kills without a grace period: {t}"
    );
    assert_eq!(exit["killed_by"], "runtime_stop");
    assert_eq!(t["state"], "Removed");
}

#[test]
fn ten_pods_at_once() {
    let mut env = Env::start();
    let mut pods = Vec::new();
    for i in 0..10 {
        let pod = env.run_pod(&format!("many-{i}"), PodOpts::default());
        let cmd = format!("exit {}", 10 + i);
        let c = env.run_container(&pod, "app", &["sh", "-c", &cmd], CtrOpts::default());
        pods.push((pod, c, 10 + i));
    }
    for (pod, c, code) in &pods {
        let t = env
            .agent
            .wait_for(&pod.uid, "exit", WAIT, |t| has(t, "ContainerExited", &c.id));
        assert_eq!(
            events_of(&t, "ContainerExited", &c.id)[0]["exit_code"],
            *code,
            "{t}"
        );
        assert_eq!(t["name"], pod.name.as_str());
        assert_eq!(events(&t, "PodAdmitted").len(), 1);
        assert!(
            events(&t, "ContainerStarted")
                .iter()
                .all(|e| e["container_id"] == c.id.as_str()),
            "no event of another pod: {t}"
        );
    }
    let listed = env.agent.json("/pods?namespace=e2e");
    assert_eq!(listed["pods"].as_array().unwrap().len(), 10);
}
