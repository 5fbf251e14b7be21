//! Replay helpers shared by the replay tests.
#![allow(dead_code)]

use podlife_core::{BootstrapProcess, Engine, EngineConfig, KernelEvent, LifecycleEvent};

pub const PHASES: [&str; 10] = [
    "01_sandbox_start",
    "02_container_start",
    "03_exec_probe",
    "04_exec_probe_timeout",
    "05_graceful_stop",
    "06_grace_overrun",
    "07_oom_kill",
    "08_container_restart",
    "09_sandbox_stop",
    "10_sandbox_remove",
];

pub fn load(dir: &str, phase: &str) -> Vec<KernelEvent> {
    let path = format!(
        "{}/tests/fixtures/{dir}/{phase}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}:{}: {e}", i + 1)))
        .collect()
}

/// A container that was created between two captures: as an agent would bootstrap it.
pub struct Gap {
    pub before_phase: &'static str,
    pub cgroup_id: u64,
    pub path: String,
    pub pid: u32,
    pub ppid: u32,
    pub comm: &'static str,
    pub argv: Vec<String>,
}

/// Replay phases in order through one engine; derived events per phase.
pub fn replay(dir: &str, gaps: &[Gap]) -> (Engine, Vec<(String, Vec<LifecycleEvent>)>) {
    replay_with(dir, gaps, |_, _, _| Vec::new())
}

/// `replay`, calling `before(engine, phase, first ts of the phase)` ahead of each phase (what an
/// agent learns between captures, e.g. from the API server); its events count for the phase.
pub fn replay_with(
    dir: &str,
    gaps: &[Gap],
    mut before: impl FnMut(&mut Engine, &str, u64) -> Vec<LifecycleEvent>,
) -> (Engine, Vec<(String, Vec<LifecycleEvent>)>) {
    let mut engine = Engine::new(EngineConfig::default());
    let mut per_phase = Vec::new();
    for phase in PHASES {
        let events = load(dir, phase);
        let start = events.iter().map(|e| e.ts_ns).min().unwrap_or(0);
        let mut out = before(&mut engine, phase, start);
        for g in gaps.iter().filter(|g| g.before_phase == phase) {
            let t = start.saturating_sub(1_000_000);
            out.extend(engine.bootstrap_cgroup(g.cgroup_id, &g.path, t));
            out.extend(engine.bootstrap_process(BootstrapProcess {
                tgid: g.pid,
                ppid: g.ppid,
                cgroup_id: g.cgroup_id,
                comm: g.comm.into(),
                argv: g.argv.clone(),
                start_ns: t,
            }));
        }
        for ev in &events {
            out.extend(engine.apply(ev));
        }
        out.extend(engine.flush());
        per_phase.push((phase.to_string(), out));
    }
    (engine, per_phase)
}

pub fn types(events: &[LifecycleEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

pub fn field(e: &LifecycleEvent, k: &str) -> serde_json::Value {
    serde_json::to_value(e).unwrap()[k].clone()
}

pub fn argv(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}
