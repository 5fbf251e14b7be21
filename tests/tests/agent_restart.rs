//! The agent killed with SIGKILL in the middle of a scenario and started again: the written
//! history is still served, the timeline says the agent was down, the live pod is found again
//! and followed to its end.

use std::time::Duration;

use podlife_e2e::agent::{events, events_of};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;

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
    // The store is flushed on a 250 ms tick: give it one, then pull the plug.
    std::thread::sleep(Duration::from_millis(600));
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
