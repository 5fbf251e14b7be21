//! The served shape: timeline JSON with wall-clock times, text rendering, restore.

use podlife_core::*;

const UID: &str = "8f3c2a1e-1111-4a4a-9b9b-000000000001";
const CID: &str = "65c022584ce537638b6196ff83bd510e4efe8745955507f332187254d09e7e10";

fn ev(ts_ns: u64, tgid: u32, cgroup_id: u64, comm: &str, kind: KernelEventKind) -> KernelEvent {
    KernelEvent {
        ts_ns,
        tgid,
        tid: tgid,
        cgroup_id,
        comm: comm.into(),
        kind,
    }
}

fn mkdir(ts: u64, id: u64, path: String) -> KernelEvent {
    ev(
        ts,
        100,
        1,
        "runc",
        KernelEventKind::CgroupMkdir {
            root: 0,
            id,
            level: 3,
            path,
        },
    )
}

fn run() -> Engine {
    let mut e = Engine::new(EngineConfig {
        node_name: Some("node-1".into()),
        ..EngineConfig::default()
    });
    let pod = format!("/kubepods/burstable/pod{UID}");
    let mut feed = vec![
        mkdir(1_000, 10, pod.clone()),
        mkdir(2_000, 11, format!("{pod}/{CID}")),
        ev(
            3_000,
            200,
            11,
            "sh",
            KernelEventKind::Exec {
                filename: "/bin/sh".into(),
                argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
                argv_truncated: false,
                old_tid: 200,
            },
        ),
        ev(
            1_003_000,
            200,
            11,
            "sh",
            KernelEventKind::Exit {
                status: Some(ExitStatus::from_wait_status(0x300)),
            },
        ),
    ];
    for k in feed.drain(..) {
        e.apply(&k);
    }
    e.flush();
    e
}

#[test]
fn timeline_json_follows_the_contract() {
    let e = run();
    let t = e
        .timeline(UID, WallClock::new(1_795_348_800_000_000_000))
        .expect("pod known");
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["uid"], UID);
    assert_eq!(v["qos"], "burstable");
    assert_eq!(v["node"], "node-1");
    assert!(v["namespace"].is_null());
    let types: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "PodAdmitted",
            "ContainerCreated",
            "ContainerStarted",
            "ContainerExited"
        ]
    );
    assert_eq!(v["events"][0]["time"], "2026-11-22T12:00:00.000001000Z");
    assert_eq!(
        v["events"][2]["argv"],
        serde_json::json!(["sh", "-c", "exit 3"])
    );
    assert_eq!(v["events"][3]["exit_code"], 3);
    assert_eq!(v["events"][3]["reason"], "Error");
    assert_eq!(v["containers"][0]["id"], CID);
    assert_eq!(v["containers"][0]["state"], "Exited");
    let text = text::to_text(&t);
    assert!(text.contains("ContainerExited"), "{text}");
}

#[test]
fn restore_rebuilds_the_timeline() {
    let events = run().timeline_events(UID);
    let mut fresh = Engine::new(EngineConfig::default());
    fresh.restore(events.clone());
    let t = fresh.timeline(UID, WallClock::default()).unwrap();
    assert_eq!(t.events.len(), events.len());
    assert_eq!(t.containers.len(), 1);
    assert_eq!(t.containers[0].state, "Exited");
}
