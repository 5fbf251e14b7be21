//! The shutdown story: preStop hooks (exec matched to the container's handler, sleep told
//! from the deletion), termination summaries and their outcomes, restart causes.

use podlife_core::kernel_event::clone::{CLONE_NEWIPC, CLONE_NEWNS};
use podlife_core::*;

mod builders;
use builders::*;

const SEC: u64 = 1_000 * MS;

fn argv(s: &[&str]) -> Vec<String> {
    s.iter().map(|a| a.to_string()).collect()
}

/// An engine that knows the app's preStop handler and grace period (as the CRI tells them).
fn engine_with(prestop: PreStop, grace_s: f64) -> Engine {
    let mut e = Engine::new(EngineConfig::default());
    e.set_container_metadata(
        APP,
        ContainerMeta {
            container_name: Some("app".into()),
            grace_period_s: Some(grace_s),
            prestop: Some(prestop),
            ..Default::default()
        },
    );
    e
}

fn feed(e: &mut Engine, events: &[KernelEvent]) -> Vec<LifecycleEvent> {
    let mut out: Vec<_> = events.iter().flat_map(|k| e.apply(k)).collect();
    out.extend(e.flush());
    out
}

/// `runc exec` of `cmd` in the app (pid `p` joins, its child `p + 1` runs the command).
fn exec_session(t: u64, p: u32, cmd: &[&str]) -> Vec<KernelEvent> {
    vec![
        ns(t, p, 1, true, CLONE_NEWNS),
        fork(t + 1, p, 1, p + 1),
        attach(t + 2, 0, 21, &format!("{POD}/{APP}"), p + 1),
        exec(t + 3, p + 1, 21, cmd[0], cmd),
    ]
}

const HOOK: [&str; 3] = ["sh", "-c", "sleep 1"];

#[test]
fn an_exec_hook_matching_the_handler_is_a_prestop_then_a_clean_stop() {
    let mut e = engine_with(PreStop::Exec { argv: argv(&HOOK) }, 30.0);
    let mut events = pod();
    // A probe-like exec first: not the handler, an ordinary session.
    events.extend(exec_session(100 * MS, 500, &["cat", "/ready"]));
    events.push(exit(110 * MS, 501, 21, 0));
    events.extend(exec_session(SEC, 600, &HOOK));
    events.push(exit(2 * SEC + 3, 601, 21, 0));
    events.push(signal(2 * SEC + 10 * MS, 700, 1, "runc", 200, 15, 0));
    events.push(exit(2 * SEC + 20 * MS, 200, 21, 0x0));
    let out = feed(&mut e, &events);
    let n = names(&out);
    assert_eq!(
        n.iter().filter(|x| **x == "ExecStarted").count(),
        1,
        "{n:?}"
    );
    let started = find(&out, "PreStopStarted");
    assert_eq!(json(started, "handler"), "exec");
    assert_eq!(json(started, "argv"), serde_json::json!(HOOK));
    assert_eq!(json(started, "pid"), 601);
    let done = find(&out, "PreStopFinished");
    assert_eq!(json(done, "exit_code"), 0);
    assert_eq!(json(done, "duration_ms"), 1000.0);
    assert_eq!(json(done, "grace_used"), 0.033);
    assert_eq!(json(done, "killed_at_grace"), false);
    let at = |name| n.iter().position(|x| *x == name).unwrap();
    assert!(at("PreStopFinished") < at("StopRequested"), "{n:?}");
    assert_eq!(e.pod(UID).unwrap().state, PodState::Terminating);
}

#[test]
fn a_hook_still_running_at_the_grace_is_killed_at_grace() {
    let mut e = engine_with(PreStop::Exec { argv: argv(&HOOK) }, 2.0);
    let mut events = pod();
    events.extend(exec_session(SEC, 600, &HOOK));
    // The kubelet gives up after the grace and stops the container; the init's death takes
    // the hook with it (the kernel's SIGKILL of the pid namespace).
    events.push(signal(3 * SEC, 700, 1, "runc", 200, 15, 0));
    events.push(exit(3 * SEC + 5 * MS, 200, 21, 0xf));
    events.push(signal(3 * SEC + 6 * MS, 200, 21, "sh", 601, 9, 0x80));
    events.push(exit(3 * SEC + 7 * MS, 601, 21, 0x9));
    let out = feed(&mut e, &events);
    let done = find(&out, "PreStopFinished");
    assert_eq!(json(done, "killed_at_grace"), true);
    assert_eq!(json(done, "grace_used"), 1.0);
    assert_eq!(json(done, "exit_code"), 137);
}

#[test]
fn a_hook_that_fails_on_its_own_is_not_killed_at_grace() {
    let mut e = engine_with(PreStop::Exec { argv: argv(&HOOK) }, 30.0);
    let mut events = pod();
    events.extend(exec_session(SEC, 600, &HOOK));
    events.push(exit(SEC + 50 * MS, 601, 21, 0x200));
    let out = feed(&mut e, &events);
    let done = find(&out, "PreStopFinished");
    assert_eq!(json(done, "exit_code"), 2);
    assert_eq!(json(done, "killed_at_grace"), false);
}

#[test]
fn a_sleep_hook_is_the_pause_from_the_deletion_to_the_stop_signal() {
    let mut e = engine_with(PreStop::Sleep { seconds: 5 }, 30.0);
    let mut out = feed(&mut e, &pod());
    out.extend(e.deletion_requested(UID, SEC, Some(30.0)));
    out.extend(feed(
        &mut e,
        &[
            signal(6 * SEC, 700, 1, "runc", 200, 15, 0),
            exit(6 * SEC + MS, 200, 21, 0x0),
        ],
    ));
    let started = find(&out, "PreStopStarted");
    assert_eq!(json(started, "handler"), "sleep");
    assert_eq!(started.ts_ns, SEC, "dated to the deletion");
    let done = find(&out, "PreStopFinished");
    assert_eq!(json(done, "duration_ms"), 5000.0);
    assert_eq!(json(done, "killed_at_grace"), false);
    assert_eq!(json(done, "exit_code"), serde_json::Value::Null);

    // A sleep as long as the grace is cut by it.
    let mut e = engine_with(PreStop::Sleep { seconds: 10 }, 2.0);
    feed(&mut e, &pod());
    e.deletion_requested(UID, SEC, Some(2.0));
    let out = feed(&mut e, &[signal(3 * SEC, 700, 1, "runc", 200, 15, 0)]);
    assert_eq!(json(find(&out, "PreStopFinished"), "killed_at_grace"), true);
}

const POD_IP: &str = "10.88.0.9";

/// A kubelet connection to the pod's `port` from `start` to its close at `end`.
fn kubelet_conn(start: u64, end: u64, port: u16, outcome: ConnOutcome) -> KernelEvent {
    let kind = KernelEventKind::KubeletConn {
        sk: start,
        addr: POD_IP.parse().unwrap(),
        port,
        sport: 40_000,
        outcome,
        start_ns: start,
        established_ns: (outcome == ConnOutcome::Closed).then_some(start + MS / 10),
    };
    ev(end, 0, 1, "swapper/0", kind)
}

fn http_hook_engine(grace_s: f64) -> Engine {
    let mut e = engine_with(
        PreStop::Http {
            port: Some(8080),
            path: "/drain".into(),
        },
        grace_s,
    );
    assert!(e.set_pod_address(UID, POD_IP.parse().unwrap()));
    e
}

/// The hook's events as (name, ts, fields that matter).
fn hook_events(out: &[LifecycleEvent]) -> Vec<(&'static str, u64, serde_json::Value)> {
    out.iter()
        .filter(|e| e.kind.name().starts_with("PreStop"))
        .map(|e| {
            let v = serde_json::to_value(e).unwrap();
            let keep = [
                "handler",
                "port",
                "path",
                "duration_ms",
                "killed_at_grace",
                "connection",
            ];
            let fields: serde_json::Map<_, _> = keep
                .iter()
                .filter(|k| !v[**k].is_null())
                .map(|k| (k.to_string(), v[*k].clone()))
                .collect();
            (e.kind.name(), e.ts_ns, fields.into())
        })
        .collect()
}

#[test]
fn an_http_hook_is_the_kubelet_connection_that_ends_just_before_the_stop() {
    let mut e = http_hook_engine(30.0);
    let mut events = pod();
    // Probes of the same port before: ordinary probes.
    events.push(kubelet_conn(SEC, SEC + MS, 8080, ConnOutcome::Closed));
    events.push(kubelet_conn(
        3 * SEC,
        3 * SEC + MS,
        8080,
        ConnOutcome::Closed,
    ));
    // The hook: 1.5 s, then the stop signal 3 ms after its close.
    events.push(kubelet_conn(
        10 * SEC,
        11 * SEC + 500 * MS,
        8080,
        ConnOutcome::Closed,
    ));
    events.push(signal(11 * SEC + 503 * MS, 700, 1, "runc", 200, 15, 0));
    events.push(exit(11 * SEC + 520 * MS, 200, 21, 0x0));
    let out = feed(&mut e, &events);
    assert_eq!(
        hook_events(&out),
        [
            (
                "PreStopStarted",
                10 * SEC,
                serde_json::json!({"handler": "http", "port": 8080, "path": "/drain"})
            ),
            (
                "PreStopFinished",
                11 * SEC + 500 * MS,
                serde_json::json!({"handler": "http", "duration_ms": 1500.0,
                    "killed_at_grace": false, "connection": "closed"})
            ),
        ]
    );
    // Told once: a later connection to the port is a probe again.
    let n = names(&out);
    assert_eq!(n.iter().filter(|x| x.starts_with("PreStop")).count(), 2);
}

#[test]
fn a_kept_alive_hook_connection_closing_after_the_stop_is_the_hook_until_the_stop() {
    let mut e = http_hook_engine(30.0);
    let mut events = pod();
    events.push(signal(12 * SEC, 700, 1, "runc", 200, 15, 0));
    events.push(exit(12 * SEC + 20 * MS, 200, 21, 0x0));
    // The kubelet kept the connection: it closes when the container's process is gone.
    events.push(kubelet_conn(
        10 * SEC,
        12 * SEC + 21 * MS,
        8080,
        ConnOutcome::Closed,
    ));
    let out = feed(&mut e, &events);
    let hook = hook_events(&out);
    assert_eq!(hook.len(), 2, "{:?}", names(&out));
    assert_eq!(hook[0].1, 10 * SEC);
    assert_eq!(
        (hook[1].1, &hook[1].2["duration_ms"]),
        (12 * SEC, &2000.0.into())
    );
    assert!(
        !names(&out).contains(&"ProbeSucceeded"),
        "the hook is not a probe"
    );
}

#[test]
fn an_http_hook_refused_or_outlasting_the_grace_says_so() {
    // Nothing listened: the hook failed at once, then the stop.
    let mut e = http_hook_engine(30.0);
    let mut events = pod();
    events.push(kubelet_conn(
        10 * SEC,
        10 * SEC + MS,
        8080,
        ConnOutcome::Refused,
    ));
    events.push(signal(10 * SEC + 3 * MS, 700, 1, "runc", 200, 15, 0));
    let out = feed(&mut e, &events);
    let done = find(&out, "PreStopFinished");
    assert_eq!(json(done, "connection"), "refused");
    let text = text::to_text(&e.timeline(UID, WallClock::default()).unwrap());
    let line = text
        .lines()
        .find(|l| l.contains("PreStopFinished"))
        .unwrap();
    assert!(line.contains("connection=refused"), "{text}");

    // A hook still answering at the grace (2 s): the kubelet stops the container anyway.
    let mut e = http_hook_engine(2.0);
    let mut events = pod();
    events.push(signal(12 * SEC, 700, 1, "runc", 200, 15, 0));
    events.push(kubelet_conn(
        10 * SEC,
        12 * SEC + 30 * MS,
        8080,
        ConnOutcome::Reset,
    ));
    let out = feed(&mut e, &events);
    let done = find(&out, "PreStopFinished");
    assert_eq!(json(done, "killed_at_grace"), true);
    assert_eq!(json(done, "grace_used"), 1.0);
}

#[test]
fn a_probe_long_before_the_stop_or_on_another_port_is_not_the_hook() {
    let mut e = http_hook_engine(30.0);
    let mut events = pod();
    events.push(kubelet_conn(SEC, SEC + MS, 8080, ConnOutcome::Closed));
    events.push(kubelet_conn(
        9 * SEC,
        9 * SEC + MS,
        9090,
        ConnOutcome::Closed,
    ));
    events.push(signal(10 * SEC, 700, 1, "runc", 200, 15, 0));
    let out = feed(&mut e, &events);
    assert!(hook_events(&out).is_empty(), "{:?}", names(&out));
}

#[test]
fn without_the_deletion_a_sleep_hook_cannot_be_told() {
    let mut e = engine_with(PreStop::Sleep { seconds: 5 }, 30.0);
    let mut events = pod();
    events.push(signal(6 * SEC, 700, 1, "runc", 200, 15, 0));
    let out = feed(&mut e, &events);
    assert!(!names(&out).iter().any(|n| n.starts_with("PreStop")));
}

#[test]
fn a_hook_the_runtime_kills_at_its_exec_timeout_is_killed_at_grace() {
    let mut e = engine_with(PreStop::Exec { argv: argv(&HOOK) }, 2.0);
    let mut events = pod();
    events.extend(exec_session(SEC, 600, &HOOK));
    // The shim's SIGKILL at the ExecSync timeout, counted from before the hook started.
    events.push(signal(
        3 * SEC - 100 * MS,
        800,
        1,
        "containerd-shim",
        601,
        9,
        0,
    ));
    events.push(exit(3 * SEC - 100 * MS + 10, 601, 21, 0x9));
    let out = feed(&mut e, &events);
    let done = find(&out, "PreStopFinished");
    assert_eq!(json(done, "killed_at_grace"), true);
    assert_eq!(json(done, "grace_used"), 0.95);
}

#[test]
fn the_timeline_sums_up_the_shutdown_in_json_and_text() {
    let mut e = engine_with(PreStop::Exec { argv: argv(&HOOK) }, 30.0);
    let mut events = pod();
    events.extend(exec_session(SEC, 600, &HOOK));
    events.push(exit(2 * SEC + 3, 601, 21, 0));
    let before = feed(&mut e, &events);
    assert!(!before.is_empty());
    let running = e.timeline(UID, WallClock::new(0)).unwrap();
    let app = running.containers.iter().find(|c| c.id == APP).unwrap();
    assert!(app.termination.is_some(), "the hook ran: stopping");
    assert_eq!(app.termination.as_ref().unwrap().outcome, None);
    feed(
        &mut e,
        &[
            signal(2 * SEC + 10 * MS, 700, 1, "runc", 200, 15, 0),
            exit(2 * SEC + 20 * MS, 200, 21, 0x0),
        ],
    );
    let t = e.timeline(UID, WallClock::new(0)).unwrap();
    let v = serde_json::to_value(&t).unwrap();
    let app = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == APP)
        .unwrap();
    let term = &app["termination"];
    assert_eq!(term["outcome"], "clean", "{term}");
    assert_eq!(term["prestop_s"], 1.0);
    assert_eq!(term["exited_after_s"], 0.01);
    assert_eq!(term["configured_grace_s"], 30.0);
    assert_eq!(v["shutdown_order"], serde_json::json!(["app"]));
    let sandbox = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == SB)
        .unwrap();
    assert!(sandbox["termination"].is_null());
    let text = text::to_text(&t);
    assert!(text.contains("shutdown order: app"), "{text}");
    assert!(text.contains("clean"), "{text}");
    assert!(text.contains("preStop 1.000s"), "{text}");
}

fn oom_of(pid: u32) -> KernelEvent {
    let kind = KernelEventKind::OomVictim {
        pid,
        info: Box::new(podlife_core::OomVictimInfo {
            victim_comm: Some("sh".into()),
            total_vm_kb: None,
            anon_rss_kb: Some(64),
            file_rss_kb: None,
            shmem_rss_kb: None,
            pgtables_kb: None,
            oom_score_adj: None,
        }),
    };
    ev(30 * MS, pid, 21, "sh", kind)
}

#[test]
fn a_restart_says_what_ended_the_instance_before_it() {
    // (how the app's init 200 ends, cause of the restart that follows)
    let term = |t| signal(t, 700, 1, "runc", 200, 15, 0);
    let failing_probe = |t, p| {
        let mut v = exec_session(t, p, &["check"]);
        v.push(exit(t + 5 * MS, p + 1, 21, 0x100));
        v
    };
    let mut liveness = failing_probe(20 * MS, 500);
    liveness.extend(failing_probe(40 * MS, 510));
    liveness.push(term(60 * MS));
    let cases: Vec<(Vec<KernelEvent>, u32, Option<&str>)> = vec![
        (vec![], 0x100, Some("error_exit")),
        (vec![], 0x0, None),
        (
            vec![signal(20 * MS, 200, 21, "sh", 200, 11, 0)],
            0x8b,
            Some("crash"),
        ),
        (vec![oom_of(200)], 0x9, Some("oom")),
        (vec![term(20 * MS)], 0xf, Some("runtime_stop")),
        (
            vec![term(20 * MS), signal(2_020 * MS, 701, 1, "runc", 200, 9, 0)],
            0x9,
            Some("grace_overrun"),
        ),
        (liveness, 0xf, Some("liveness_probe")),
    ];
    const NEXT: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    for (i, (before, raw, cause)) in cases.into_iter().enumerate() {
        let mut events = pod();
        events.extend(before);
        events.extend([
            exit(3 * SEC, 200, 21, raw),
            mkdir(13 * SEC, 0, 40, &format!("{POD}/{NEXT}")),
            ns(13 * SEC + 1, 800, 40, true, CLONE_NEWIPC),
            exec(13 * SEC + 2, 801, 40, "/bin/sh", &["sh", "-c", "work"]),
        ]);
        let (_, out) = run(&events);
        let r = find(&out, "ContainerRestarted");
        assert_eq!(
            json(r, "cause").as_str(),
            cause,
            "case {i}: {:?}",
            names(&out)
        );
    }
}
