//! Kubelet probes over the network (ProbeFailed / ProbeSucceeded of tcp, http, grpc probes,
//! `time_to_first_probe_success_s`): kubelet connections to the pod's address added to a pod's
//! life recorded on a real kernel (fixtures/cri_graceful.jsonl).

use podlife_core::*;
use serde_json::{json, Value};

mod recorded_pod;
use recorded_pod::*;

const POD_IP: &str = "10.88.0.7";

/// A kubelet connection to `addr:port` that ended at `ts` with `outcome`.
fn conn(ts: u64, addr: &str, port: u16, outcome: ConnOutcome) -> KernelEvent {
    KernelEvent {
        ts_ns: ts,
        tgid: 0,
        tid: 0,
        cgroup_id: 1,
        comm: "swapper/0".into(),
        kind: KernelEventKind::KubeletConn {
            sk: ts,
            addr: addr.parse().unwrap(),
            port,
            sport: 40_000,
            outcome,
            start_ns: ts.saturating_sub(1_000),
            established_ns: (outcome == ConnOutcome::Closed).then_some(ts - 500),
        },
    }
}

fn listen(app: &App, ts: u64, port: u16) -> KernelEvent {
    KernelEvent {
        ts_ns: ts,
        tgid: app.pid,
        tid: app.pid,
        cgroup_id: app.cgroup,
        comm: "server".into(),
        kind: KernelEventKind::TcpState {
            sk: 0xa0,
            old: TcpState::Close,
            new: TcpState::Listen,
            saddr: "0.0.0.0".parse().unwrap(),
            sport: port,
            daddr: "0.0.0.0".parse().unwrap(),
            dport: 0,
        },
    }
}

/// The recording with `extra` merged in time order; the pod has `POD_IP` and `meta`.
fn replay(
    app: &App,
    meta: Option<PodMeta>,
    extra: Vec<KernelEvent>,
) -> (Engine, Vec<LifecycleEvent>) {
    let mut events = recorded();
    events.extend(extra);
    events.sort_by_key(|e| e.ts_ns);
    let mut engine = Engine::new(EngineConfig::default());
    assert!(engine.set_pod_address(&app.uid, POD_IP.parse().unwrap()));
    if let Some(m) = meta {
        engine.set_pod_metadata(&app.uid, m);
        engine.set_container_metadata(
            &app.id,
            ContainerMeta {
                container_name: Some("app".into()),
                ..Default::default()
            },
        );
    }
    run_with(engine, &events)
}

/// Probe events as served (without the event's type).
fn probes(out: &[LifecycleEvent]) -> Vec<(String, Option<String>, Value)> {
    out.iter()
        .filter(|e| matches!(e.kind.name(), "ProbeFailed" | "ProbeSucceeded"))
        .map(|e| {
            let mut v = serde_json::to_value(&e.kind).unwrap();
            v.as_object_mut().unwrap().remove("type");
            (e.kind.name().to_string(), e.container_id.clone(), v)
        })
        .collect()
}

/// `n` times between `from` and `to`, evenly.
fn times(from: u64, to: u64, n: u64) -> Vec<u64> {
    (1..=n).map(|i| from + (to - from) * i / (n + 1)).collect()
}

fn refused(consecutive: u32) -> Value {
    json!({"argv": [], "exit_code": null, "timed_out": false, "probe": null,
           "consecutive_failures": consecutive, "probe_kind": "tcp", "port": 8080,
           "reason": "connection_refused"})
}

#[test]
fn failures_before_the_listener_then_one_success_and_nothing_for_healthy_probes() {
    let a = app();
    // 3 refused probes, the listen, then 4 healthy probes: all before the stop request.
    let t = times(a.start, a.stop, 9);
    let mut extra: Vec<_> = t[..3]
        .iter()
        .map(|ts| conn(*ts, POD_IP, 8080, ConnOutcome::Refused))
        .collect();
    extra.push(listen(&a, t[3], 8080));
    extra.extend(
        t[4..8]
            .iter()
            .map(|ts| conn(*ts, POD_IP, 8080, ConnOutcome::Closed)),
    );
    let (engine, out) = replay(&a, None, extra);
    let got = probes(&out);
    assert_eq!(
        got,
        vec![
            ("ProbeFailed".into(), None, refused(1)),
            ("ProbeFailed".into(), None, refused(2)),
            ("ProbeFailed".into(), None, refused(3)),
            (
                "ProbeSucceeded".into(),
                Some(a.id.clone()),
                json!({"probe_kind": "tcp", "port": 8080, "probe": null, "first": true,
                       "after_failures": 3})
            ),
        ],
        "nothing is known of the probe but its port: a connection-level (tcp) probe; the \
         success is the listening container's; three more healthy probes add nothing"
    );
    let ok = find(&out, "ProbeSucceeded")[0];
    assert_eq!(ok.ts_ns, t[4]);
    let us = |ns: u64| (ns as f64 / 1e3).round() / 1e6;
    let summary = engine.pod_summary(&a.uid).unwrap();
    let c = summary.containers.iter().find(|c| c.id == a.id).unwrap();
    assert_eq!(c.time_to_first_probe_success_s, Some(us(t[4] - a.start)));
    assert_eq!(c.time_to_listen_s, Some(us(t[3] - a.start)));
    let stats = engine.stats().probe_runs;
    let runs: Vec<_> = stats.iter().filter(|r| r.2 > 0).collect();
    assert_eq!(
        runs,
        [
            (ProbeKind::Tcp, "success", 4),
            (ProbeKind::Tcp, "connection_refused", 3)
        ],
        "every run counted, healthy ones too"
    );
    assert_eq!(
        engine.startup_stage(ok),
        Some(("probe_success", us(t[4] - a.start)))
    );

    let text = text::to_text(&engine.timeline(&a.uid, WallClock::default()).unwrap());
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
            .to_string()
    };
    assert!(
        line("3rd in a row").contains("ProbeFailed")
            && line("3rd in a row").contains("tcp :8080 connection refused (3rd in a row)")
            && line("3rd in a row").starts_with('!'),
        "{text}"
    );
    assert!(
        line("ProbeSucceeded").contains("tcp :8080 after 3 failures"),
        "{text}"
    );
    assert!(line("probe ok after").contains("listening after"), "{text}");
}

#[test]
fn a_first_success_then_failures_of_each_reason_then_a_success_after_them() {
    let a = app();
    let t = times(a.start, a.stop, 7);
    let extra = vec![
        listen(&a, t[0], 8080),
        conn(t[1], POD_IP, 8080, ConnOutcome::Closed),
        conn(t[2], POD_IP, 8080, ConnOutcome::Reset),
        conn(t[3], POD_IP, 8080, ConnOutcome::Timeout),
        conn(t[4], POD_IP, 8080, ConnOutcome::Closed),
        conn(t[5], POD_IP, 8080, ConnOutcome::Closed),
        // Not the pod's address: not its probe.
        conn(t[6], "10.88.0.99", 8080, ConnOutcome::Refused),
    ];
    let (_, out) = replay(&a, None, extra);
    let got = probes(&out);
    let app = Some(a.id.clone());
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got[0].0, "ProbeSucceeded");
    assert_eq!(
        (&got[0].2["first"], &got[0].2["after_failures"]),
        (&json!(true), &json!(0))
    );
    assert_eq!(
        (
            &got[1].0,
            &got[1].1,
            &got[1].2["reason"],
            &got[1].2["consecutive_failures"]
        ),
        (&"ProbeFailed".to_string(), &app, &json!("reset"), &json!(1))
    );
    assert_eq!(
        (
            &got[2].2["reason"],
            &got[2].2["consecutive_failures"],
            &got[2].2["timed_out"]
        ),
        (&json!("timeout"), &json!(2), &json!(true))
    );
    assert_eq!(got[3].0, "ProbeSucceeded");
    assert_eq!(
        (&got[3].2["first"], &got[3].2["after_failures"]),
        (&json!(false), &json!(2)),
        "the first success after failures, not after the start"
    );
}

fn spec(probes: &[(&str, ProbeKind)]) -> PodMeta {
    PodMeta {
        net_probes: probes
            .iter()
            .map(|(t, k)| NetProbe {
                container: "app".into(),
                probe_type: t.to_string(),
                kind: *k,
                port: 8080,
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn the_spec_gives_kind_and_probe_and_names_the_container_before_it_listens() {
    let a = app();
    let t = times(a.start, a.stop, 3);
    let extra = vec![
        conn(t[0], POD_IP, 8080, ConnOutcome::Refused),
        conn(t[1], POD_IP, 8080, ConnOutcome::Closed),
        // Another port of the pod: no spec, a tcp probe of no container.
        conn(t[2], POD_IP, 9090, ConnOutcome::Refused),
    ];
    let (engine, out) = replay(&a, Some(spec(&[("readiness", ProbeKind::Http)])), extra);
    let got = probes(&out);
    let app = Some(a.id.clone());
    assert_eq!(
        got.iter().map(|g| (g.0.as_str(), &g.1)).collect::<Vec<_>>(),
        [
            ("ProbeFailed", &app),
            ("ProbeSucceeded", &app),
            ("ProbeFailed", &None)
        ]
    );
    assert_eq!(
        (&got[0].2["probe_kind"], &got[0].2["probe"]),
        (&json!("http"), &json!("readiness"))
    );
    assert_eq!(
        got[1].2,
        json!({"probe_kind": "http", "port": 8080, "probe": "readiness", "first": true,
               "after_failures": 1})
    );
    assert_eq!(
        (
            &got[2].2["probe_kind"],
            &got[2].2["probe"],
            &got[2].2["port"]
        ),
        (&json!("tcp"), &json!(null), &json!(9090))
    );
    let text = text::to_text(&engine.timeline(&a.uid, WallClock::default()).unwrap());
    assert!(
        text.contains("readiness http :8080 connection refused (1st in a row)")
            && text.contains("readiness http :8080 after 1 failure"),
        "{text}"
    );
}

#[test]
fn two_probes_on_one_port_keep_their_common_kind_but_no_probe_name() {
    let a = app();
    let t = times(a.start, a.stop, 1);
    let both = spec(&[
        ("liveness", ProbeKind::Http),
        ("readiness", ProbeKind::Http),
    ]);
    let (_, out) = replay(
        &a,
        Some(both),
        vec![conn(t[0], POD_IP, 8080, ConnOutcome::Timeout)],
    );
    let got = probes(&out);
    assert_eq!(
        (&got[0].2["probe_kind"], &got[0].2["probe"]),
        (&json!("http"), &json!(null)),
        "a connection does not say which of the two probes made it"
    );
    let mixed = spec(&[("liveness", ProbeKind::Tcp), ("readiness", ProbeKind::Http)]);
    let (_, out) = replay(
        &a,
        Some(mixed),
        vec![conn(t[0], POD_IP, 8080, ConnOutcome::Timeout)],
    );
    assert_eq!(probes(&out)[0].2["probe_kind"], json!("tcp"));
}
