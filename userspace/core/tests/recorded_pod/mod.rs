//! A pod recorded on a real kernel (fixtures/cri_graceful.jsonl: a sandbox and an app started,
//! stopped with SIGTERM and exited), replayed through the engine, with its app's facts.
#![allow(dead_code)]

use podlife_core::*;

pub fn recorded() -> Vec<KernelEvent> {
    let path = format!(
        "{}/tests/fixtures/cri_graceful.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

pub fn run(events: &[KernelEvent]) -> (Engine, Vec<LifecycleEvent>) {
    run_with(Engine::new(EngineConfig::default()), events)
}

/// Replay `events` through `engine` (prepared with addresses or metadata), then flush it.
pub fn run_with(mut engine: Engine, events: &[KernelEvent]) -> (Engine, Vec<LifecycleEvent>) {
    let mut out: Vec<_> = events.iter().flat_map(|e| engine.apply(e)).collect();
    out.extend(engine.flush());
    (engine, out)
}

pub fn find<'a>(out: &'a [LifecycleEvent], name: &str) -> Vec<&'a LifecycleEvent> {
    out.iter().filter(|e| e.kind.name() == name).collect()
}

/// The recorded pod's app.
pub struct App {
    pub pid: u32,
    pub cgroup: u64,
    pub start: u64,
    pub stop: u64,
    pub exit: u64,
    pub uid: String,
    /// The app's container id.
    pub id: String,
}

pub fn app() -> App {
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
        id: started.container_id.clone().expect("the app's id"),
    }
}
