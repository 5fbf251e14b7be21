//! The agent under stress and misuse: an undersized ring buffer loses events — they are
//! counted, live timelines say they may be incomplete, and the agent recovers (a pod whose
//! creation was lost is found again, with its names); a bearer token
//! protects the API; secrets in argv never reach the API.

use std::time::{Duration, Instant};

use podlife_e2e::agent::{events, events_of, metric};
use podlife_e2e::containerd::processes_mentioning;
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;
use serde_json::Value;

#[test]
fn an_undersized_ring_buffer_counts_losses_marks_timelines_and_recovers() {
    // Two pages and a drain every 200 ms: a process storm cannot fit.
    let mut env = Env::start_with_agent_args(&["--ringbuf-bytes", "8192", "--drain-ms", "200"]);
    let pod = env.run_pod("storm", PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &[
            "sh",
            "-c",
            "for i in $(seq 3000); do /bin/true; done; sleep 1000",
        ],
        CtrOpts::default(),
    );
    let t = env
        .agent
        .wait_for(&pod.uid, "EventsLost", Duration::from_secs(60), |t| {
            !events(t, "EventsLost").is_empty()
        });
    assert_eq!(t["complete"], false, "{}", t["complete"]);
    assert!(
        metric(
            &env.agent.metrics(),
            "podlife_ringbuf_events_lost_total",
            &[]
        ) > 0.0
    );
    let _ = app;

    // A pod whose whole creation is lost, for certain: with the agent stopped nothing drains
    // the buffer, 500 storm processes fill it, and every record of the pod's cgroups and
    // processes finds it full. Only the rescan after the loss can find the pod.
    env.agent.pause();
    let refill = env.run_container(
        &pod,
        "refill",
        &[
            "sh",
            "-c",
            "for r in 1 2 3 4 5; do for i in $(seq 100); do /bin/true; done; echo round $r; done; sleep 1000",
        ],
        CtrOpts::default(),
    );
    wait_until("500 storm processes with the agent stopped", || {
        env.container_log(&pod, &refill).contains("round 5")
    });
    let late = env.run_pod("late", PodOpts::default());
    let cmd = ["sleep", "4242"];
    let app = env.run_container(&late, "late-app", &cmd, CtrOpts::default());
    // Its process has exec'd before the agent runs again.
    wait_until("the late app's process", || {
        !processes_mentioning("sleep 4242").is_empty()
    });
    env.agent.resume();
    let t = env.agent.wait_for(
        &late.uid,
        "the late pod found by the rescan, with its names",
        Duration::from_secs(60),
        |t| {
            t["name"] == "late"
                && events_of(t, "ContainerStarted", &app.id)
                    .first()
                    .is_some_and(|e| e["container"] == "late-app")
        },
    );
    let sources =
        |ty: &str| -> Vec<&Value> { events(&t, ty).iter().map(|e| &e["source"]).collect() };
    assert_eq!(
        sources("PodAdmitted"),
        ["bootstrap"],
        "admitted once, by the rescan (a kernel source means the creation was not lost): {t}"
    );
    assert_eq!(sources("SandboxStarted"), ["bootstrap"], "{t}");
    assert_eq!(t["namespace"], "e2e", "{t}");
    let started = events_of(&t, "ContainerStarted", &app.id);
    assert_eq!(started.len(), 1, "{t}");
    assert_eq!(started[0]["source"], "bootstrap", "{t}");
    assert_eq!(started[0]["argv"], serde_json::json!(cmd), "{t}");

    // The agent keeps serving and keeps following new pods (this ring buffer is too small
    // for a whole runc start at one drain per 200 ms, so only the pod's admission is certain).
    let calm = env.run_pod("calm", PodOpts::default());
    env.agent
        .wait_for(&calm.uid, "the next pod", Duration::from_secs(30), |t| {
            !events(t, "PodAdmitted").is_empty()
        });
    assert_eq!(env.agent.get("/readyz").0, 200);
}

/// Poll `done` (no HTTP: the agent may be stopped) for up to a minute.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no {what} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bearer_token_and_argv_redaction() {
    let token = std::env::temp_dir().join(format!("podlife-token-{}", std::process::id()));
    std::fs::write(&token, "s3cr3t-token\n").unwrap();
    let mut env = Env::start_with_agent_args(&["--api-token-file", token.to_str().unwrap()]);
    let _ = std::fs::remove_file(&token);
    assert_eq!(env.agent.get("/pods").0, 401);
    assert_eq!(env.agent.get("/metrics").0, 200, "scraping needs no token");
    assert_eq!(env.agent.get("/healthz").0, 200);
    let pod = env.run_pod("secretive", PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &[
            "sh",
            "-c",
            "exit 0",
            "sh",
            "--password=hunter2",
            "--token",
            "abc",
        ],
        CtrOpts::default(),
    );
    let authed = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", env.agent.port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cr3t-token\r\nConnection: close\r\n\r\n").unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    let t0 = std::time::Instant::now();
    let body = loop {
        let b = authed(&format!("/pods/{}/timeline", pod.uid));
        if b.contains(&app.id) && b.contains("ContainerExited") {
            break b;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no exit: {b}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        !body.contains("hunter2") && !body.contains("\"abc\""),
        "secrets leaked: {body}"
    );
    assert!(body.contains("--password=<redacted>"), "{body}");
}

#[test]
fn a_hundred_pods_and_a_burst_of_ten_thousand_processes() {
    let mut env = Env::start();
    let burst = env.run_pod("burst", PodOpts::default());
    let b = env.run_container(
        &burst,
        "app",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 10000 ]; do /bin/true; i=$((i+1)); done; exit 2",
        ],
        CtrOpts::default(),
    );
    let mut pods = Vec::new();
    for i in 0..100 {
        let pod = env.run_pod(&format!("p{i}"), PodOpts::default());
        let c = env.run_container(&pod, "app", &["sh", "-c", "exit 1"], CtrOpts::default());
        pods.push((pod, c));
    }
    for (pod, c) in &pods {
        let t = env
            .agent
            .wait_for(&pod.uid, "exit", Duration::from_secs(60), |t| {
                !events_of(t, "ContainerExited", &c.id).is_empty()
            });
        assert_eq!(events_of(&t, "ContainerExited", &c.id)[0]["exit_code"], 1);
        assert_eq!(t["name"], pod.name.as_str());
    }
    let t = env.agent.wait_for(
        &burst.uid,
        "the burst's end",
        Duration::from_secs(120),
        |t| !events_of(t, "ContainerExited", &b.id).is_empty(),
    );
    assert_eq!(events_of(&t, "ContainerExited", &b.id)[0]["exit_code"], 2);
    let m = env.agent.metrics();
    // Loss under this load is a figure of the machine (docs/BENCHMARKS.md), not a verdict; what
    // is asserted is that a loss is counted and said on the timeline of the pod live through it.
    let lost = metric(&m, "podlife_ringbuf_events_lost_total", &[]);
    assert_eq!(
        (t["complete"] == false, !events(&t, "EventsLost").is_empty()),
        (lost > 0.0, lost > 0.0),
        "the burst pod's timeline says whether the {lost} lost events may concern it"
    );
    assert!(
        metric(&m, "podlife_ringbuf_events_total", &[]) > 30_000.0,
        "the burst went through the ring buffer"
    );
    assert!(
        metric(&m, "podlife_tracked_processes", &[]) < 1000.0,
        "exited processes are not kept: {m}"
    );
}
