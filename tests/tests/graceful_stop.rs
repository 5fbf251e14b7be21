//! StopContainer of a PID 1 that handles SIGTERM: the runtime's SIGTERM is delivered, the
//! container exits 0 well within its grace period; nothing is ignored, nothing overruns.

use podlife_e2e::agent::{events_of, has, metric};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn graceful_stop_with_a_term_handler() {
    let mut env = Env::start();
    let pod = env.run_pod("graceful", PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        CtrOpts::default(),
    );
    let t = env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    let init_pid = events_of(&t, "ContainerStarted", &app.id)[0]["pid"].clone();
    let started = std::time::Instant::now();
    env.cri.stop_container(&app.id, 10);
    assert!(
        started.elapsed().as_secs_f64() < 5.0,
        "no grace period used"
    );
    let status = env.cri.wait_exited(&app.id);
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));

    let t = env.agent.wait_for(&pod.uid, "app exit", WAIT, |t| {
        has(t, "ContainerExited", &app.id)
    });
    let stop = &events_of(&t, "StopRequested", &app.id)[0];
    assert_eq!(stop["signal"], "SIGTERM");
    assert_eq!(stop["sender"]["comm"], "runc");
    assert_eq!(stop["pid"], init_pid, "sent to the container init");
    assert!(
        events_of(&t, "StopSignalIgnored", &app.id).is_empty(),
        "{t}"
    );
    assert!(
        events_of(&t, "GracePeriodOverrun", &app.id).is_empty(),
        "{t}"
    );
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    assert_eq!(exit["exit_code"], 0);
    assert_eq!(exit["reason"], "Completed");
    assert_eq!(exit["killed_by"], "runtime_stop");
    assert!(exit["termination_s"].as_f64().unwrap() < 2.0, "{exit}");

    let m = env.agent.metrics();
    let uid = [("uid", pod.uid.as_str())];
    let completed = [("uid", pod.uid.as_str()), ("reason", "Completed")];
    assert_eq!(
        metric(&m, "podlife_container_exits_total", &completed),
        1.0,
        "{m}"
    );
    // Present at 0 (`metric` fails on an absent series) from the container's start: the shape
    // dashboards/rules/tests feeds promtool, so an alert's increase() sees the first event.
    for name in [
        "podlife_stop_signals_ignored_total",
        "podlife_grace_period_overruns_total",
        "podlife_container_restarts_total",
    ] {
        assert_eq!(metric(&m, name, &uid), 0.0, "{name}: {m}");
    }
}
