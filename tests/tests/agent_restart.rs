//! The agent killed with SIGKILL in the middle of a scenario and started again: the written
//! history is still served, the timeline says the agent was down, the live pod is found again
//! and followed to its end.

use std::time::{Duration, Instant};

use podlife_e2e::agent::{events, events_of};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;

/// Wait until a line of the agent's store on disk (its `*.jsonl` segments) holds `needles`: a
/// SIGKILL then loses none of it.
fn wait_stored(env: &Env, what: &str, needles: &[&str]) {
    let dir = env.agent.state_dir();
    let t = Instant::now();
    loop {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "jsonl") {
                files.push(std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        let stored = files
            .iter()
            .flat_map(|f| f.lines())
            .any(|l| needles.iter().all(|n| l.contains(n)));
        if stored {
            return;
        }
        if t.elapsed() > Duration::from_secs(10) {
            panic!(
                "{what} not in the store under {} after 10 s ({} segments):\n{}\nagent log:\n{}",
                dir.display(),
                files.len(),
                files.join("\n"),
                env.agent.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkilled_agent_restarts_with_its_history_and_an_agent_gap() {
    let mut env = Env::start();
    let done = env.run_pod("before", PodOpts::default());
    let first = env.run_container(&done, "app", &["sh", "-c", "exit 7"], CtrOpts::default());
    env.agent
        .wait_for(&done.uid, "first exit", Duration::from_secs(15), |t| {
            !events_of(t, "ContainerExited", &first.id).is_empty()
        });
    let live = env.run_pod("during", PodOpts::default());
    let app = env.run_container(
        &live,
        "app",
        &["sh", "-c", "sleep 4; exit 9"],
        CtrOpts::default(),
    );
    env.agent
        .wait_for(&live.uid, "live start", Duration::from_secs(15), |t| {
            !events_of(t, "ContainerStarted", &app.id).is_empty()
        });
    // The store is flushed on a 250 ms tick: wait until both are on disk, then pull the plug.
    wait_stored(
        &env,
        "the first pod's exit",
        &["\"ContainerExited\"", &first.id],
    );
    wait_stored(&env, "the live start", &["\"ContainerStarted\"", &app.id]);
    env.agent.crash_and_restart();

    let t = env.agent.timeline(&done.uid);
    assert_eq!(
        events_of(&t, "ContainerExited", &first.id)[0]["exit_code"],
        7,
        "history of a finished pod survives: {t}"
    );
    let t = env.agent.wait_for(
        &live.uid,
        "the live pod's exit after the restart",
        Duration::from_secs(20),
        |t| !events_of(t, "ContainerExited", &app.id).is_empty(),
    );
    assert_eq!(
        events(&t, "AgentGap").len(),
        1,
        "the timeline says the agent was down: {t}"
    );
    // Served in time order: the gap between the live container's start and its exit.
    let types: Vec<(&str, &str)> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["container_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let at = |ty: &str, id: &str| {
        types
            .iter()
            .position(|&(a, b)| a == ty && (id.is_empty() || b == id))
    };
    let (start, gap, exit) = (
        at("ContainerStarted", &app.id),
        at("AgentGap", ""),
        at("ContainerExited", &app.id),
    );
    assert!(
        start < gap && gap < exit,
        "start {start:?}, gap {gap:?}, exit {exit:?}: {t}"
    );
    assert_eq!(
        events_of(&t, "ContainerStarted", &app.id).len(),
        1,
        "no duplicate start after re-discovery: {t}"
    );
    assert_eq!(
        events_of(&t, "ContainerExited", &app.id)[0]["exit_code"],
        9,
        "{t}"
    );
}
