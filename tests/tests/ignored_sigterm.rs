//! StopContainer of a PID 1 without a SIGTERM handler (plain `sleep`): the kernel drops the
//! signal (StopSignalIgnored), the runtime SIGKILLs it when the StopContainer timeout runs out
//! (GracePeriodOverrun, observed grace ≈ that timeout, configured grace from the kubelet's
//! annotation through the CRI).

use podlife_e2e::agent::{events_of, has, metric};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn pid1_without_a_handler_ignores_sigterm_and_overruns_its_grace_period() {
    let mut env = Env::start();
    let pod = env.run_pod("stubborn", PodOpts::default());
    let grace = CtrOpts {
        grace_s: Some(2),
        ..CtrOpts::default()
    };
    let app = env.run_container(&pod, "app", &["sleep", "1000"], grace);
    env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    env.cri.stop_container(&app.id, 2);
    let status = env.cri.wait_exited(&app.id);
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Error"));

    let t = env.agent.wait_for(&pod.uid, "app exit", WAIT, |t| {
        has(t, "ContainerExited", &app.id)
    });
    assert_eq!(
        events_of(&t, "StopRequested", &app.id)[0]["signal"],
        "SIGTERM"
    );
    assert_eq!(
        events_of(&t, "StopSignalIgnored", &app.id)[0]["signal"],
        "SIGTERM",
        "{t}"
    );
    let overrun = events_of(&t, "GracePeriodOverrun", &app.id);
    assert_eq!(overrun.len(), 1, "{t}");
    let observed = overrun[0]["observed_grace_s"].as_f64().unwrap();
    assert!(
        (1.9..3.0).contains(&observed),
        "StopContainer timeout 2 s, observed {observed}"
    );
    assert_eq!(
        overrun[0]["configured_grace_s"], 2.0,
        "the kubelet's grace period, from the CRI: {t}"
    );
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    assert_eq!(exit["signal"], "SIGKILL");
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["killed_by"], "grace_overrun");

    let m = env.agent.metrics();
    let app_labels = [("uid", pod.uid.as_str()), ("container", "app")];
    assert_eq!(
        metric(&m, "podlife_stop_signals_ignored_total", &app_labels),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "podlife_grace_period_overruns_total", &app_labels),
        1.0
    );
}
