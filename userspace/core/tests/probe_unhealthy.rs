//! The kubelet's probe messages from the API server (ProbeUnhealthy, source `api`) on a pod
//! recorded on a real kernel (fixtures/cri_graceful.jsonl): a new message derives one event for
//! the container its fieldPath names; the same message again (a higher count) derives nothing;
//! a name the pod does not have makes it the pod's; at most MAX_PROBE_MESSAGES per container.

use podlife_core::*;

mod recorded_pod;
use recorded_pod::*;

const MSG_503: &str = "Readiness probe failed: HTTP probe failed with statuscode: 503";

fn engine(app: &App) -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_container_metadata(
        &app.id,
        ContainerMeta {
            container_name: Some("app".into()),
            ..Default::default()
        },
    );
    run_with(engine, &recorded()).0
}

fn unhealthy(ts_ns: u64, field_path: &str, message: &str, count: u32) -> UnhealthyEvent {
    UnhealthyEvent {
        ts_ns,
        field_path: Some(field_path.into()),
        message: message.into(),
        count,
    }
}

#[test]
fn a_new_message_once_then_nothing_for_its_repeats() {
    let app = app();
    let mut e = engine(&app);
    let at = app.start + 2_000_000_000;
    let out = e.probe_unhealthy(
        &app.uid,
        &[unhealthy(at, "spec.containers{app}", MSG_503, 3)],
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let ev = &out[0];
    assert_eq!(ev.source, Source::Api);
    assert_eq!(ev.ts_ns, at);
    assert_eq!(ev.container_id.as_deref(), Some(app.id.as_str()));
    assert_eq!(ev.container.as_deref(), Some("app"));
    let v = serde_json::to_value(ev).unwrap();
    assert_eq!(v["type"], "ProbeUnhealthy");
    assert_eq!(v["probe"], "readiness");
    assert_eq!(v["message"], MSG_503);
    assert_eq!(v["count"], 3);
    assert_eq!(v["source"], "api");

    // The next lookup sees the same Event with a higher count, and a new message.
    let liveness = "Liveness probe failed: Get \"http://10.1.2.3:8080/healthz\": dial tcp 10.1.2.3:8080: connect: connection refused";
    let out = e.probe_unhealthy(
        &app.uid,
        &[
            unhealthy(at + 5_000_000_000, "spec.containers{app}", MSG_503, 5),
            unhealthy(at + 6_000_000_000, "spec.containers{app}", liveness, 1),
        ],
    );
    assert_eq!(out.len(), 1, "only the new message: {out:?}");
    assert_eq!(
        out[0].kind,
        LifecycleKind::ProbeUnhealthy {
            probe: Some("liveness".into()),
            message: liveness.into(),
            count: 1,
        }
    );
    assert!(e
        .probe_unhealthy(
            &app.uid,
            &[unhealthy(at, "spec.containers{app}", MSG_503, 9)]
        )
        .is_empty());
    let timeline = e.timeline_events(&app.uid);
    assert_eq!(find(&timeline, "ProbeUnhealthy").len(), 2);

    // The newest message in the container's summary.
    let t = e.timeline(&app.uid, WallClock::default()).unwrap();
    let c = t.containers.iter().find(|c| c.id == app.id).unwrap();
    assert_eq!(c.last_probe_message.as_deref(), Some(liveness));
    let v = serde_json::to_value(&t).unwrap();
    let summary = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == app.id.as_str())
        .unwrap();
    assert_eq!(summary["last_probe_message"], liveness);
}

#[test]
fn a_name_the_pod_lacks_makes_it_the_pods_and_an_unknown_pod_gives_nothing() {
    let app = app();
    let mut e = engine(&app);
    let at = app.start + 1_000_000_000;
    let out = e.probe_unhealthy(
        &app.uid,
        &[unhealthy(at, "spec.containers{other}", MSG_503, 1)],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].container_id, None);
    assert_eq!(out[0].container, None);
    // Remembered for the pod too.
    assert!(e
        .probe_unhealthy(
            &app.uid,
            &[unhealthy(at, "spec.containers{other}", MSG_503, 2)]
        )
        .is_empty());
    assert!(e
        .probe_unhealthy(
            "00000000-0000-0000-0000-00000000beef",
            &[unhealthy(at, "spec.containers{app}", MSG_503, 1)]
        )
        .is_empty());
}

#[test]
fn messages_are_cut_and_bounded_per_container() {
    let app = app();
    let mut e = engine(&app);
    let at = app.start + 1_000_000_000;
    let long = format!("Startup probe failed: {}", "é".repeat(600));
    let out = e.probe_unhealthy(&app.uid, &[unhealthy(at, "spec.containers{app}", &long, 1)]);
    let LifecycleKind::ProbeUnhealthy { message, probe, .. } = &out[0].kind else {
        panic!("{out:?}")
    };
    assert!(
        message.len() <= probe_message::MAX_MESSAGE_BYTES,
        "{}",
        message.len()
    );
    assert!(long.starts_with(message.as_str()));
    assert_eq!(probe.as_deref(), Some("startup"));

    // One remembered already; the bound's worth more derive, the rest are counted.
    let many: Vec<UnhealthyEvent> = (0..MAX_PROBE_MESSAGES + 4)
        .map(|i| {
            unhealthy(
                at + i as u64,
                "spec.containers{app}",
                &format!(
                    "Readiness probe failed: HTTP probe failed with statuscode: {}",
                    500 + i
                ),
                1,
            )
        })
        .collect();
    let out = e.probe_unhealthy(&app.uid, &many);
    assert_eq!(out.len(), MAX_PROBE_MESSAGES - 1);
    assert_eq!(e.stats().evictions.probe_messages, 5);
}

#[test]
fn the_text_view_says_the_probe_once_and_the_count() {
    let app = app();
    let mut e = engine(&app);
    e.probe_unhealthy(
        &app.uid,
        &[unhealthy(app.start + 1, "spec.containers{app}", MSG_503, 3)],
    );
    let text = text::to_text(&e.timeline(&app.uid, WallClock::default()).unwrap());
    let line = text
        .lines()
        .find(|l| l.contains("ProbeUnhealthy"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with('!'), "a problem: {line}");
    assert!(
        line.contains("app  readiness: HTTP probe failed with statuscode: 503 (×3)  (API server)"),
        "{line}"
    );
}
