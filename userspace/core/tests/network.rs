//! Listeners of a container (ListenerOpened / ListenerClosed, `time_to_listen_s`): socket
//! transitions added to a pod's stop recorded on a real kernel (fixtures/cri_graceful.jsonl).

use podlife_core::*;
use serde_json::{json, Value};

mod recorded_pod;
use recorded_pod::*;

const MS: u64 = 1_000_000;

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
        ..
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

fn reset(ts: u64, addr: &str, port: u16) -> KernelEvent {
    KernelEvent {
        ts_ns: ts,
        tgid: 0,
        tid: 0,
        cgroup_id: 1,
        comm: "swapper/0".into(),
        kind: KernelEventKind::TcpReset {
            saddr: addr.parse().unwrap(),
            sport: port,
            daddr: "10.231.5.1".parse().unwrap(),
            dport: 40_000,
        },
    }
}

/// The recording up to `until` with `extra` events merged, the pod's address told first.
fn with_address(extra: Vec<KernelEvent>, uid: &str, until: u64) -> (Engine, Vec<LifecycleEvent>) {
    let mut events = recorded();
    events.retain(|e| e.ts_ns < until);
    events.extend(extra);
    events.sort_by_key(|e| e.ts_ns);
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_wall_clock(WallClock::new(1_000_000_000_000_000_000));
    assert!(engine.set_pod_address(uid, "10.231.5.2".parse().unwrap()));
    let mut out: Vec<_> = events.iter().flat_map(|e| engine.apply(e)).collect();
    out.extend(engine.flush());
    (engine, out)
}

#[test]
fn connections_refused_per_port_and_second_with_the_pod_s_phase() {
    let App {
        pid,
        cgroup: cg,
        start,
        stop,
        exit,
        uid,
        ..
    } = app();
    let listen = start + (stop - start) / 2;
    let close = stop + (exit - stop) / 3;
    let mut extra = vec![
        // Before anything listened on 8080: starting (two within a second: one event).
        reset(start + 1000, "10.231.5.2", 8080),
        reset(start + 2000, "10.231.5.2", 8080),
        // Another port, and another address (not this pod's): not 8080's, not reported.
        reset(start + 3000, "10.231.5.2", 9090),
        reset(start + 4000, "10.231.5.9", 8080),
        sock(listen, pid, cg, 0xa0, TcpState::Close, TcpState::Listen),
        sock(close, pid, cg, 0xa0, TcpState::Listen, TcpState::Close),
    ];
    // After the listener closed during the stop: terminating, three in one second.
    for i in 0..3 {
        extra.push(reset(close + 1 + i, "10.231.5.2", 8080));
    }
    let (_, out) = with_address(extra, &uid, u64::MAX);
    let refused = find(&out, "ConnectionsRefused");
    let summary: Vec<_> = refused
        .iter()
        .map(|e| {
            let f = fields(e);
            (
                f["port"].clone(),
                f["count"].clone(),
                f["phase"].clone(),
                e.container_id.is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!(8080), json!(2), json!("starting"), false),
            (json!(9090), json!(1), json!("starting"), false),
            (json!(8080), json!(3), json!("terminating"), true),
        ]
    );
    let last = refused[2];
    assert_eq!(last.ts_ns, close + 1, "dated at the first refusal");
    let f = fields(last);
    let wall = WallClock::new(1_000_000_000_000_000_000);
    assert_eq!(
        (f["first"].clone(), f["last"].clone()),
        (
            json!(wall.rfc3339(close + 1)),
            json!(wall.rfc3339(close + 3))
        )
    );
    let started = find(&out, "ContainerStarted")[0];
    assert_eq!(
        last.container_id, started.container_id,
        "the port's listener's container"
    );
}

#[test]
fn refusals_more_than_a_second_apart_are_separate_events() {
    let App {
        stop, exit, uid, ..
    } = app();
    // The recording cut before the exit: the pod stays terminating.
    let t = stop + (exit - stop) / 2;
    let (_, out) = with_address(
        vec![
            reset(t, "10.231.5.2", 8080),
            reset(t + 999 * MS, "10.231.5.2", 8080),
            reset(t + 1000 * MS, "10.231.5.2", 8080),
        ],
        &uid,
        t,
    );
    let counts: Vec<_> = find(&out, "ConnectionsRefused")
        .iter()
        .map(|e| fields(e)["count"].clone())
        .collect();
    assert_eq!(counts, [json!(2), json!(1)]);
}

#[test]
fn a_removed_pod_refuses_nothing() {
    let App { exit, uid, .. } = app();
    // The recording ends with the pod's removal; its address may be another pod's by then.
    let late = reset(exit + 5_000 * MS, "10.231.5.2", 8080);
    let (_, out) = with_address(vec![late], &uid, u64::MAX);
    assert_eq!(find(&out, "PodRemoved").len(), 1);
    assert!(find(&out, "ConnectionsRefused").is_empty());
}

#[test]
fn a_removed_pod_s_addresses_are_forgotten_and_bounded() {
    let mut engine = Engine::new(EngineConfig::default());
    let a: std::net::IpAddr = "10.231.5.2".parse().unwrap();
    assert!(engine.set_pod_address("u1", a));
    assert_eq!(engine.forget_pod_addresses("u1"), vec![a]);
    assert!(engine.forget_pod_addresses("u1").is_empty());
    for i in 0..MAX_POD_ADDRESSES as u32 {
        assert!(engine.set_pod_address("u", std::net::Ipv4Addr::from(i).into()));
    }
    assert!(!engine.set_pod_address("u", a), "full");
    assert!(
        engine.set_pod_address("u2", std::net::Ipv4Addr::from(0).into()),
        "a known address moves"
    );
}
