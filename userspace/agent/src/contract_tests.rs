//! The served JSON, pinned: recorded kernel event sequences (podlife-core's replay fixtures)
//! go through the agent's real path (enrich, engine, render, history) and the timelines and
//! /events page it would serve are compared with golden files in tests/golden/. A change to
//! a field name, a value's spelling or the order of events fails here, so a refactor of the
//! event model cannot change what clients see unnoticed. After an intended change, regenerate
//! with `PODLIFE_BLESS=1 cargo test -p podlife --lib contract` and review the diff.

use serde_json::{json, Value};

use crate::node::cgroupfs::CgroupMounts;
use crate::node::clock::WallClock;
use crate::pipeline::history::EventQuery;
use crate::pipeline::metrics::Metrics;
use crate::pipeline::shared::Inner;
use podlife_core::{Engine, EngineConfig, KernelEvent};

const FIXTURES: &[&str] = &[
    "ctr_lifecycle",
    "ctr_graceful",
    "ctr_oom",
    "ctr_restart",
    PROBE_MESSAGES,
];

/// ctr_lifecycle with the kubelet's probe messages read from the API server (`--kube-api`).
const PROBE_MESSAGES: &str = "ctr_lifecycle+probe_messages";

/// The API's Unhealthy Events of the recorded app, told after the replay: one message twice
/// (one event), another once.
fn tell_probe_messages(inner: &mut Inner) {
    let uid = inner.history.uids().next().expect("a pod").to_string();
    let pod = inner.engine.pod_summary(&uid).expect("the pod");
    let app = pod
        .containers
        .iter()
        .find(|c| c.kind != Some(podlife_core::ContainerKind::Sandbox))
        .expect("the app");
    inner.engine.set_container_metadata(
        &app.id,
        podlife_core::ContainerMeta {
            container_name: Some("app".into()),
            ..Default::default()
        },
    );
    let at = pod.first_ts_ns.unwrap_or(0) + 1_000_000_000;
    let event = |ts_ns, message: &str, count| podlife_core::UnhealthyEvent {
        ts_ns,
        field_path: Some("spec.containers{app}".into()),
        message: message.into(),
        count,
    };
    let m503 = "Readiness probe failed: HTTP probe failed with statuscode: 503";
    let out = inner.engine.probe_unhealthy(
        &uid,
        &[
            event(at, m503, 1),
            event(at + 1, "Liveness probe errored: rpc error", 2),
        ],
    );
    inner.publish(out);
    let out = inner
        .engine
        .probe_unhealthy(&uid, &[event(at + 2, m503, 4)]);
    inner.publish(out);
}

fn served(fixture: &str) -> Value {
    let (file, extra) = match fixture.split_once('+') {
        Some((file, _)) => (file, Some(tell_probe_messages as fn(&mut Inner))),
        None => (fixture, None),
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/fixtures");
    let path = format!("{dir}/{file}.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut inner = Inner::new(
        Engine::new(EngineConfig::default()),
        Metrics::new("contract"),
        // A fixed offset: times in the golden files are the recorded monotonic ones.
        WallClock { offset_ns: 0 },
        None,
        Some("node-1".into()),
        Vec::new(),
        CgroupMounts::default(),
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let ev: KernelEvent =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}: {e}: {line}"));
        inner.on_kernel_event(ev);
    }
    let rest = inner.engine.flush();
    inner.publish(rest);
    if let Some(tell) = extra {
        tell(&mut inner);
    }
    let uids: Vec<String> = inner.history.uids().map(str::to_string).collect();
    let timelines: Vec<Value> = uids.iter().filter_map(|u| inner.timeline_json(u)).collect();
    let picked = inner.history.select(&EventQuery {
        since_wall_ns: i128::MIN,
        uid: None,
        after: None,
        limit: 100_000,
    });
    let page: Value = serde_json::from_str(&crate::serve::views::events_page(
        &picked,
        false,
        100_000,
        usize::MAX,
        None,
    ))
    .expect("page JSON");
    json!({"timelines": timelines, "events": page, "pods": inner.pods_json(&Default::default())})
}

#[test]
fn served_json_matches_the_golden_files() {
    let bless = std::env::var_os("PODLIFE_BLESS").is_some();
    let mut failed = Vec::new();
    for fixture in FIXTURES {
        let got = served(fixture);
        let path = format!("{}/tests/golden/{fixture}.json", env!("CARGO_MANIFEST_DIR"));
        let pretty = serde_json::to_string_pretty(&got).expect("JSON") + "\n";
        if bless {
            std::fs::write(&path, &pretty).unwrap_or_else(|e| panic!("{path}: {e}"));
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (PODLIFE_BLESS=1 writes it)"));
        if want != pretty {
            let first = want
                .lines()
                .zip(pretty.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(pretty.lines().count()));
            failed.push(format!(
                "{fixture}: differs from line {}: want {:?}, got {:?}",
                first + 1,
                want.lines().nth(first),
                pretty.lines().nth(first)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "served JSON changed:\n{}",
        failed.join("\n")
    );
}

#[test]
fn the_golden_files_hold_every_story_they_pin() {
    // The pin is worth something only if the fixtures produce the events: guard against
    // golden files that silently became empty.
    let all: Vec<String> = FIXTURES
        .iter()
        .flat_map(|f| {
            served(f)["events"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e["type"].as_str().map(str::to_string))
        .collect();
    for kind in [
        "PodAdmitted",
        "SandboxStarted",
        "ContainerStarted",
        "StopRequested",
        "OOMKill",
        "ContainerExited",
        "ContainerRestarted",
        "ProbeUnhealthy",
    ] {
        assert!(all.iter().any(|k| k == kind), "no {kind} in {all:?}");
    }
}
