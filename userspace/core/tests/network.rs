//! Listeners of a container (ListenerOpened / ListenerClosed, `time_to_listen_s`): socket
//! transitions added to a pod's stop recorded on a real kernel (fixtures/cri_graceful.jsonl).

use podlife_core::*;
use serde_json::{json, Value};

const MS: u64 = 1_000_000;

fn recorded() -> Vec<KernelEvent> {
    let path = format!(
        "{}/tests/fixtures/cri_graceful.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn run(events: &[KernelEvent]) -> (Engine, Vec<LifecycleEvent>) {
    let mut engine = Engine::new(EngineConfig::default());
    let mut out: Vec<_> = events.iter().flat_map(|e| engine.apply(e)).collect();
    out.extend(engine.flush());
    (engine, out)
}

fn find<'a>(out: &'a [LifecycleEvent], name: &str) -> Vec<&'a LifecycleEvent> {
    out.iter().filter(|e| e.kind.name() == name).collect()
}

/// The recorded pod's app.
struct App {
    pid: u32,
    cgroup: u64,
    start: u64,
    stop: u64,
    exit: u64,
    uid: String,
}

fn app() -> App {
    let events = recorded();
    let (_, out) = run(&events);
    let started = find(&out, "ContainerStarted")[0];
    let LifecycleKind::ContainerStarted { pid, .. } = started.kind else {
        unreachable!()
    };
    let cgroup = events
        .iter()
        .find(|e| e.tgid == pid && matches!(e.kind, KernelEventKind::Exec { .. }))
        .expect("the init's exec")
        .cgroup_id;
    App {
        pid,
        cgroup,
        start: started.ts_ns,
        stop: find(&out, "StopRequested")[0].ts_ns,
        exit: find(&out, "ContainerExited")[0].ts_ns,
        uid: started.pod_uid.clone(),
    }
}

fn sock(ts: u64, tgid: u32, cgroup_id: u64, sk: u64, old: TcpState, new: TcpState) -> KernelEvent {
    KernelEvent {
        ts_ns: ts,
        tgid,
        tid: tgid,
        cgroup_id,
        comm: "server".into(),
        kind: KernelEventKind::TcpState {
            sk,
            old,
            new,
            saddr: "0.0.0.0".parse().unwrap(),
            sport: 8080,
            daddr: "0.0.0.0".parse().unwrap(),
            dport: 0,
        },
    }
}

/// The recording with `extra` events merged in time order.
fn with(extra: Vec<KernelEvent>) -> (Engine, Vec<LifecycleEvent>) {
    let mut events = recorded();
    events.extend(extra);
    events.sort_by_key(|e| e.ts_ns);
    run(&events)
}

/// The event's fields as served (without time, type, source and container fields).
fn fields(e: &LifecycleEvent) -> Value {
    let mut v = serde_json::to_value(&e.kind).unwrap();
    v.as_object_mut().unwrap().remove("type");
    v
}

#[test]
fn a_listener_opened_after_start_and_closed_after_sigterm() {
    let App {
        pid,
        cgroup: cg,
        start,
        stop,
        exit,
        uid,
    } = app();
    // The recorded app is stopped tens of ms after its start and exits soon after that.
    let listen = start + (stop - start) / 2;
    let close = stop + (exit - stop) / 2;
    let (engine, out) = with(vec![
        sock(listen, pid, cg, 0xa0, TcpState::Close, TcpState::Listen),
        sock(close, pid, cg, 0xa0, TcpState::Listen, TcpState::Close),
    ]);
    let opened = find(&out, "ListenerOpened");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].ts_ns, listen);
    assert_eq!(
        fields(opened[0]),
        json!({"pid": pid, "comm": "server", "port": 8080, "address": "0.0.0.0", "family": "ipv4"})
    );
    let started = find(&out, "ContainerStarted")[0];
    assert_eq!(opened[0].container_id, started.container_id);
    assert_eq!(opened[0].pod_uid, uid);
    let closed = find(&out, "ListenerClosed");
    assert_eq!(closed.len(), 1);
    let us = |ns: u64| (ns as f64 / 1e3).round() / 1e6;
    assert_eq!(
        fields(closed[0]),
        json!({"pid": pid, "comm": "server", "port": 8080,
               "open_s": us(close - listen), "after_stop_s": us(close - stop)})
    );
    // Time order: opened after the start, closed between the stop request and the exit.
    let names: Vec<_> = out.iter().map(|e| e.kind.name()).collect();
    let at = |n| names.iter().position(|x| *x == n).unwrap();
    assert!(at("ContainerStarted") < at("ListenerOpened"));
    assert!(at("StopRequested") < at("ListenerClosed"));
    assert!(at("ListenerClosed") < at("ContainerExited"));

    let summary = engine.pod_summary(&uid).unwrap();
    let app = summary
        .containers
        .iter()
        .find(|c| Some(c.id.as_str()) == started.container_id.as_deref())
        .unwrap();
    assert_eq!(app.time_to_listen_s, Some(us(listen - start)));
    let sandbox = summary.containers.iter().find(|c| c.id != app.id).unwrap();
    assert_eq!(sandbox.time_to_listen_s, None, "the sandbox never listened");

    let t = engine.timeline(&uid, WallClock::default()).unwrap();
    let text = text::to_text(&t);
    let line = text
        .lines()
        .find(|l| l.contains("ListenerClosed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with(' ')
            && line.contains(":8080")
            && line.contains(&format!("{:.3}s after stop", us(close - stop))),
        "{line}"
    );
    let listening = format!("listening after {:.3}s", us(listen - start));
    assert!(text.contains(&listening), "{text}");
}

#[test]
fn only_listener_transitions_of_containers_become_events() {
    let App {
        pid,
        cgroup: cg,
        start,
        ..
    } = app();
    let t = start + 30 * MS;
    let (_, out) = with(vec![
        // A host process (root cgroup, unknown pid) listening.
        sock(t, 4242, 1, 0xb0, TcpState::Close, TcpState::Listen),
        // Connections of the container: not listeners.
        sock(t + 1, pid, cg, 0xb1, TcpState::Close, TcpState::SynSent),
        sock(
            t + 2,
            pid,
            cg,
            0xb1,
            TcpState::SynSent,
            TcpState::Established,
        ),
        sock(t + 3, pid, cg, 0xb2, TcpState::Other(12), TcpState::Close),
    ]);
    assert!(find(&out, "ListenerOpened").is_empty());
    assert!(find(&out, "ListenerClosed").is_empty());
}

#[test]
fn a_listener_the_engine_never_saw_open_closes_without_open_s() {
    let App {
        pid,
        cgroup: cg,
        start,
        ..
    } = app();
    let (_, out) = with(vec![sock(
        start + 1000,
        pid,
        cg,
        0xc0,
        TcpState::Listen,
        TcpState::Close,
    )]);
    let closed = find(&out, "ListenerClosed");
    assert_eq!(closed.len(), 1);
    let f = fields(closed[0]);
    assert_eq!(
        (f["open_s"].clone(), f["after_stop_s"].clone()),
        (Value::Null, Value::Null)
    );
}

#[test]
fn listeners_kept_per_container_are_bounded() {
    let App {
        pid,
        cgroup: cg,
        start,
        ..
    } = app();
    let n = MAX_LISTENERS as u64 + 5;
    let mut extra: Vec<_> = (0..n)
        .map(|i| {
            sock(
                start + MS + i,
                pid,
                cg,
                0x1000 + i,
                TcpState::Close,
                TcpState::Listen,
            )
        })
        .collect();
    // The oldest were forgotten at the bound: their close has no open_s; the newest has one.
    extra.push(sock(
        start + 2 * MS,
        pid,
        cg,
        0x1000,
        TcpState::Listen,
        TcpState::Close,
    ));
    extra.push(sock(
        start + 3 * MS,
        pid,
        cg,
        0x1000 + n - 1,
        TcpState::Listen,
        TcpState::Close,
    ));
    let (_, out) = with(extra);
    assert_eq!(find(&out, "ListenerOpened").len() as u64, n);
    let closed = find(&out, "ListenerClosed");
    assert_eq!(fields(closed[0])["open_s"], Value::Null);
    assert!(fields(closed[1])["open_s"].as_f64().is_some());
}
