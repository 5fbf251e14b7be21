//! Recorded kernel event sequences (tests/fixtures/*.jsonl, captured on a real kernel by
//! `podlife record` while runc ran the scenario, see record.sh) replayed through the engine.

use podlife_core::{Engine, EngineConfig, KernelEvent, LifecycleEvent, LifecycleKind};

fn replay(name: &str) -> Vec<LifecycleEvent> {
    let path = format!("{}/tests/fixtures/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ev: KernelEvent =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}:{}: {e}", i + 1));
        out.extend(engine.apply(&ev));
    }
    out.extend(engine.flush());
    out
}

fn types(events: &[LifecycleEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

fn find<'a>(events: &'a [LifecycleEvent], name: &str) -> Vec<&'a LifecycleEvent> {
    events.iter().filter(|e| e.kind.name() == name).collect()
}

fn field(e: &LifecycleEvent, k: &str) -> serde_json::Value {
    serde_json::to_value(e).unwrap()[k].clone()
}

#[test]
fn lifecycle_sandbox_app_probes_ignored_stop_grace_overrun_removal() {
    let ev = replay("ctr_lifecycle");
    assert_eq!(
        types(&ev),
        [
            "PodAdmitted",
            "SandboxStarted",
            "ContainerCreated",
            "ContainerStarted",
            "ExecStarted",
            "ExecFinished",
            "ExecStarted",
            "ExecFinished",
            "ExecStarted",
            "ExecFinished",
            "ProbeFailed",
            "StopRequested",
            "StopSignalIgnored",
            "GracePeriodOverrun",
            "ContainerExited",
            "SandboxStopped",
            "PodRemoved",
        ]
    );
    assert!(ev
        .iter()
        .all(|e| e.pod_uid == "8f3c2a1e-1111-4a4a-9b9b-0000000000a1"));
    let started = find(&ev, "ContainerStarted")[0];
    assert_eq!(
        field(started, "argv"),
        serde_json::json!([
            "/bin/sh",
            "-c",
            "trap \"\" TERM; while true; do sleep 1; done"
        ])
    );
    let execs = find(&ev, "ExecFinished");
    assert_eq!(
        execs
            .iter()
            .map(|e| field(e, "exit_code"))
            .collect::<Vec<_>>(),
        [0, 1, 1]
    );
    assert!(execs
        .iter()
        .all(|e| field(e, "duration_ms").as_f64().unwrap() > 0.0));
    // The same failing command twice is a recurring (probe) command.
    assert_eq!(field(execs[1], "probe"), serde_json::Value::Null);
    assert_eq!(field(execs[2], "probe"), "exec_probe");
    assert_eq!(
        field(find(&ev, "ProbeFailed")[0], "consecutive_failures"),
        2
    );
    let stop = find(&ev, "StopRequested")[0];
    assert_eq!(field(stop, "signal"), "SIGTERM");
    assert_eq!(field(stop, "sender")["comm"], "runc");
    assert_eq!(
        field(find(&ev, "StopSignalIgnored")[0], "pid"),
        field(started, "pid")
    );
    let grace = field(find(&ev, "GracePeriodOverrun")[0], "observed_grace_s")
        .as_f64()
        .unwrap();
    assert!(
        (1.9..2.5).contains(&grace),
        "ctr killed 2 s after the stop: observed {grace}"
    );
    let exit = find(&ev, "ContainerExited")[0];
    assert_eq!(field(exit, "exit_code"), 137);
    assert_eq!(field(exit, "signal"), "SIGKILL");
    assert_eq!(field(exit, "killed_by"), "grace_overrun");
    assert_eq!(field(exit, "sender")["comm"], "runc");
}

#[test]
fn graceful_stop_with_a_term_handler() {
    let ev = replay("ctr_graceful");
    assert_eq!(
        types(&ev),
        [
            "PodAdmitted",
            "SandboxStarted",
            "ContainerCreated",
            "ContainerStarted",
            "StopRequested",
            "ContainerExited",
            "SandboxStopped",
            "PodRemoved"
        ]
    );
    let exit = find(&ev, "ContainerExited")[0];
    assert_eq!(field(exit, "exit_code"), 0);
    assert_eq!(field(exit, "reason"), "Completed");
    assert_eq!(field(exit, "killed_by"), "runtime_stop");
    assert!(field(exit, "termination_s").as_f64().unwrap() < 1.0);
}

#[test]
fn oom_of_a_child_is_silent_and_oom_of_the_init_ends_the_container() {
    let ev = replay("ctr_oom");
    let ooms = find(&ev, "OOMKill");
    assert_eq!(ooms.len(), 2);
    assert_eq!(field(ooms[0], "victim_is_init"), false);
    assert_eq!(field(ooms[0], "comm"), "tail");
    assert!(field(ooms[0], "anon_rss_bytes").as_u64().unwrap() > 30 << 20);
    assert_eq!(field(ooms[1], "victim_is_init"), true);
    let exits = find(&ev, "ContainerExited");
    let oom_exit = exits
        .iter()
        .find(|e| e.container_id == ooms[1].container_id)
        .expect("the OOM-killed init's exit");
    assert_eq!(field(oom_exit, "reason"), "OOMKilled");
    assert_eq!(field(oom_exit, "killed_by"), "oom_killer");
    // The container whose child was killed kept running until ctr killed it.
    let survivor = exits
        .iter()
        .find(|e| e.container_id == ooms[0].container_id)
        .expect("survivor exit");
    assert_eq!(field(survivor, "reason"), "Signaled");
    assert!(
        survivor.ts_ns > ooms[1].ts_ns,
        "the child OOM did not end its container"
    );
}

#[test]
fn restarts_count_attempts_and_back_off_and_child_crashes_are_reported() {
    let ev = replay("ctr_restart");
    let restarts = find(&ev, "ContainerRestarted");
    assert_eq!(
        restarts
            .iter()
            .map(|e| field(e, "attempt"))
            .collect::<Vec<_>>(),
        [1, 2]
    );
    let b1 = field(restarts[0], "backoff_s").as_f64().unwrap();
    let b2 = field(restarts[1], "backoff_s").as_f64().unwrap();
    assert!(b1 > 0.5 && b2 > b1, "growing delays: {b1} then {b2}");
    let crashes = find(&ev, "ProcessCrashed");
    assert_eq!(crashes.len(), 3);
    assert!(crashes
        .iter()
        .all(|c| field(c, "signal") == "SIGSEGV" && field(c, "is_init") == false));
    let exits = find(&ev, "ContainerExited");
    assert_eq!(exits.len(), 3);
    assert!(exits
        .iter()
        .all(|e| field(e, "exit_code") == 3 && field(e, "reason") == "Error"));
}

/// Replays must not depend on arrival order within small windows (events of different CPUs):
/// swapping neighbours that are not causally tied keeps the headline events.
#[test]
fn neighbour_swaps_keep_the_story() {
    let path = format!(
        "{}/tests/fixtures/ctr_lifecycle.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut events: Vec<KernelEvent> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Swap every pair of adjacent events of different processes.
    let mut i = 0;
    while i + 1 < events.len() {
        if events[i].tgid != events[i + 1].tgid {
            events.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    let mut engine = Engine::new(EngineConfig::default());
    let mut out: Vec<LifecycleEvent> = events.iter().flat_map(|e| engine.apply(e)).collect();
    out.extend(engine.flush());
    let t = types(&out);
    for needed in [
        "PodAdmitted",
        "SandboxStarted",
        "ContainerStarted",
        "ContainerExited",
        "PodRemoved",
    ] {
        assert!(t.contains(&needed), "{needed} lost after swaps: {t:?}");
    }
    let _ = LifecycleKind::PodAdmitted;
}
