//! Recorded kernel event sequences (tests/fixtures/*.jsonl, captured on a real kernel by
//! `podlife record`, see fixtures/README.md) replayed through the engine: `cri_*` while real
//! containerd pods ran through the CRI, `ctr_*` (older) while runc ran through ctr.

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
        "{}/tests/fixtures/cri_lifecycle.jsonl",
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

/// Lifecycle events per container, containers in order of first appearance (`None`: the pod's
/// own events), each with its event types in order.
fn per_container(events: &[LifecycleEvent]) -> Vec<(Option<String>, Vec<&'static str>)> {
    let mut out: Vec<(Option<String>, Vec<&'static str>)> = Vec::new();
    for e in events {
        match out.iter_mut().find(|(c, _)| *c == e.container_id) {
            Some((_, types)) => types.push(e.kind.name()),
            None => out.push((e.container_id.clone(), vec![e.kind.name()])),
        }
    }
    out
}

fn sequences(events: &[LifecycleEvent]) -> Vec<Vec<&'static str>> {
    per_container(events).into_iter().map(|(_, t)| t).collect()
}

fn of<'a>(events: &'a [LifecycleEvent], container: &Option<String>) -> Vec<&'a LifecycleEvent> {
    events
        .iter()
        .filter(|e| &e.container_id == container)
        .collect()
}

/// One pod per CRI fixture, every event kernel-sourced.
fn one_pod(events: &[LifecycleEvent]) {
    let uid = &events[0].pod_uid;
    assert!(events.iter().all(|e| &e.pod_uid == uid), "one pod");
    assert!(events
        .iter()
        .all(|e| e.source == podlife_core::Source::Kernel));
}

#[test]
fn cri_lifecycle_init_then_app_execs_probe_ignored_stop_grace_overrun_removal() {
    let ev = replay("cri_lifecycle");
    one_pod(&ev);
    assert_eq!(
        sequences(&ev),
        [
            vec!["PodAdmitted", "PodRemoved"],
            vec!["SandboxStarted", "SandboxStopped"],
            vec!["ContainerCreated", "ContainerStarted", "ContainerExited"],
            vec![
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
            ],
        ]
    );
    assert_eq!(types(&ev).first(), Some(&"PodAdmitted"));
    assert_eq!(types(&ev).last(), Some(&"PodRemoved"));
    let ids = per_container(&ev);
    let (init, app) = (of(&ev, &ids[2].0), of(&ev, &ids[3].0));
    assert_eq!(
        field(init[1], "argv"),
        serde_json::json!(["sh", "-c", "sleep 0.2"])
    );
    assert_eq!(field(init[2], "exit_code"), 0);
    assert_eq!(field(init[2], "reason"), "Completed");
    assert_eq!(field(init[2], "killed_by"), serde_json::Value::Null);
    assert!(
        init[2].ts_ns < app[0].ts_ns,
        "the app after the init's exit"
    );
    let started = app[1];
    assert_eq!(
        field(started, "argv"),
        serde_json::json!([
            "sh",
            "-c",
            "trap '' TERM; echo trapped; while true; do sleep 1; done"
        ])
    );
    let execs: Vec<_> = app
        .iter()
        .filter(|e| e.kind.name() == "ExecFinished")
        .collect();
    assert_eq!(
        execs
            .iter()
            .map(|e| (field(e, "exit_code"), field(e, "probe")))
            .collect::<Vec<_>>(),
        [
            (0.into(), serde_json::Value::Null),
            (1.into(), serde_json::Value::Null),
            // The same failing command twice is a recurring (probe) command.
            (1.into(), "exec_probe".into()),
        ]
    );
    assert!(execs
        .iter()
        .all(|e| field(e, "duration_ms").as_f64().unwrap() > 0.0));
    assert_eq!(field(app[8], "consecutive_failures"), 2);
    let stop = app[9];
    assert_eq!(field(stop, "signal"), "SIGTERM");
    assert_eq!(field(stop, "sender")["comm"], "runc");
    assert_eq!(field(stop, "pid"), field(started, "pid"));
    assert_eq!(field(app[10], "pid"), field(started, "pid"));
    let grace = field(app[11], "observed_grace_s").as_f64().unwrap();
    assert!(
        (1.9..2.5).contains(&grace),
        "StopContainer timeout 2 s: observed {grace}"
    );
    let exit = app[12];
    assert_eq!(field(exit, "exit_code"), 137);
    assert_eq!(field(exit, "signal"), "SIGKILL");
    assert_eq!(field(exit, "reason"), "Signaled");
    assert_eq!(field(exit, "killed_by"), "grace_overrun");
    assert_eq!(field(exit, "sender")["comm"], "runc");
    assert!(
        exit.ts_ns < of(&ev, &ids[1].0)[1].ts_ns,
        "containers end before the sandbox"
    );
}

#[test]
fn cri_graceful_stop_with_a_term_handler() {
    let ev = replay("cri_graceful");
    one_pod(&ev);
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
    let started = find(&ev, "ContainerStarted")[0];
    let stop = find(&ev, "StopRequested")[0];
    assert_eq!(field(stop, "signal"), "SIGTERM");
    assert_eq!(field(stop, "sender")["comm"], "runc");
    assert_eq!(field(stop, "pid"), field(started, "pid"));
    let exit = find(&ev, "ContainerExited")[0];
    assert_eq!(exit.container_id, started.container_id);
    assert_eq!(field(exit, "exit_code"), 0);
    assert_eq!(field(exit, "signal"), serde_json::Value::Null);
    assert_eq!(field(exit, "reason"), "Completed");
    assert_eq!(field(exit, "killed_by"), "runtime_stop");
    assert!(field(exit, "termination_s").as_f64().unwrap() < 1.0);
}

#[test]
fn cri_oom_of_a_child_is_silent_and_oom_of_the_init_ends_the_container() {
    let ev = replay("cri_oom");
    one_pod(&ev);
    assert_eq!(
        sequences(&ev),
        [
            vec!["PodAdmitted", "PodRemoved"],
            vec!["SandboxStarted", "SandboxStopped"],
            // The child's OOM ends nothing: the container runs until the pod is removed.
            vec![
                "ContainerCreated",
                "ContainerStarted",
                "OOMKill",
                "StopRequested",
                "ContainerExited"
            ],
            vec![
                "ContainerCreated",
                "ContainerStarted",
                "OOMKill",
                "ContainerExited"
            ],
        ]
    );
    let ids = per_container(&ev);
    let (survivor, hog) = (of(&ev, &ids[2].0), of(&ev, &ids[3].0));
    let child_oom = survivor[2];
    assert_eq!(field(child_oom, "victim_is_init"), false);
    assert_ne!(field(child_oom, "pid"), field(survivor[1], "pid"));
    assert_eq!(field(child_oom, "comm"), "memhog");
    let rss = field(child_oom, "anon_rss_bytes").as_u64().unwrap();
    assert!(
        (24 << 20..=32 << 20).contains(&rss),
        "near the 32 MiB limit: {rss}"
    );
    assert_eq!(field(hog[2], "victim_is_init"), true);
    assert_eq!(field(hog[2], "pid"), field(hog[1], "pid"));
    let oom_exit = hog[3];
    assert_eq!(field(oom_exit, "exit_code"), 137);
    assert_eq!(field(oom_exit, "signal"), "SIGKILL");
    assert_eq!(field(oom_exit, "reason"), "OOMKilled");
    assert_eq!(field(oom_exit, "killed_by"), "oom_killer");
    let stopped = survivor[4];
    assert_eq!(field(survivor[3], "signal"), "SIGKILL");
    assert_eq!(field(stopped, "reason"), "Signaled");
    assert_eq!(field(stopped, "killed_by"), "runtime_stop");
    assert!(
        stopped.ts_ns > oom_exit.ts_ns,
        "the child OOM did not end its container"
    );
}

#[test]
fn cri_restarts_count_attempts_and_back_off_and_child_crashes_are_reported() {
    let ev = replay("cri_restart");
    one_pod(&ev);
    let attempt = |restarted: bool| {
        let mut v = vec!["ContainerCreated", "ContainerStarted"];
        if restarted {
            v.push("ContainerRestarted");
        }
        v.extend(["ProcessCrashed", "ContainerExited"]);
        v
    };
    assert_eq!(
        sequences(&ev),
        [
            vec!["PodAdmitted", "PodRemoved"],
            vec!["SandboxStarted", "SandboxStopped"],
            attempt(false),
            attempt(true),
            attempt(true),
        ]
    );
    let restarts = find(&ev, "ContainerRestarted");
    assert_eq!(
        restarts
            .iter()
            .map(|e| (field(e, "attempt"), field(e, "crash_loop")))
            .collect::<Vec<_>>(),
        [(1.into(), false.into()), (2.into(), true.into())]
    );
    let b1 = field(restarts[0], "backoff_s").as_f64().unwrap();
    let b2 = field(restarts[1], "backoff_s").as_f64().unwrap();
    assert!(b1 > 0.5 && b2 > b1 + 0.5, "growing delays: {b1} then {b2}");
    let crashes = find(&ev, "ProcessCrashed");
    assert!(crashes.iter().all(|c| field(c, "signal") == "SIGSEGV"
        && field(c, "is_init") == false
        && field(c, "core_dumped") == false));
    let exits = find(&ev, "ContainerExited");
    assert!(exits.iter().all(|e| field(e, "exit_code") == 3
        && field(e, "reason") == "Error"
        && field(e, "killed_by").is_null()));
}
