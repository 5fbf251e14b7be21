//! StopContainer of a PID 1 that does not act on SIGTERM — plain `sleep` (no handler: the
//! kernel drops a default-action signal to a namespace init) and `sh` with `trap "" TERM`
//! (SIG_IGN) and a child: the kernel drops the signal (StopSignalIgnored), the runtime SIGKILLs
//! the init when the StopContainer timeout runs out (GracePeriodOverrun, observed grace ≈ that
//! timeout, configured grace from the kubelet's annotation through the CRI). The two differ, as
//! for `kubectl delete --grace-period=2` of a pod whose spec says 30 s: the annotation says 30,
//! StopContainer gets 2, so the test tells which source the agent used.

use podlife_e2e::agent::{events_of, has, metric};
use podlife_e2e::cri::Cri;
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn pid1_ignoring_sigterm_overruns_its_grace_period() {
    let mut env = Env::start();
    let pod = env.run_pod("stubborn", PodOpts::default());
    let grace = CtrOpts {
        grace_s: Some(30),
        ..CtrOpts::default()
    };
    let plain = env.run_container(&pod, "app", &["sleep", "1000"], grace.clone());
    let trap = ["sh", "-c", "trap '' TERM; sleep 1000 & wait"];
    let ignoring = env.run_container(&pod, "noterm", &trap, grace);
    env.agent.wait_for(&pod.uid, "both starts", WAIT, |t| {
        has(t, "ContainerStarted", &plain.id) && has(t, "ContainerStarted", &ignoring.id)
    });
    // Both stops at once, as the kubelet stops a pod's containers in parallel.
    let socket = env.containerd.socket.clone();
    let id = ignoring.id.clone();
    let other = std::thread::spawn(move || Cri::connect(&socket, None).stop_container(&id, 2));
    env.cri.stop_container(&plain.id, 2);
    other.join().expect("StopContainer of noterm");
    for c in [&plain, &ignoring] {
        let status = env.cri.wait_exited(&c.id);
        assert_eq!((status.exit_code, status.reason.as_str()), (137, "Error"));
    }

    let t = env.agent.wait_for(&pod.uid, "both exits", WAIT, |t| {
        has(t, "ContainerExited", &plain.id) && has(t, "ContainerExited", &ignoring.id)
    });
    for c in [&plain, &ignoring] {
        let init = &events_of(&t, "ContainerStarted", &c.id)[0]["pid"];
        let stop = &events_of(&t, "StopRequested", &c.id);
        assert_eq!(stop.len(), 1, "{}: {t}", c.name);
        assert_eq!(stop[0]["signal"], "SIGTERM");
        let ignored = events_of(&t, "StopSignalIgnored", &c.id);
        assert_eq!(ignored.len(), 1, "{}: {t}", c.name);
        assert_eq!(ignored[0]["signal"], "SIGTERM");
        assert_eq!(&ignored[0]["pid"], init);
        let overrun = events_of(&t, "GracePeriodOverrun", &c.id);
        assert_eq!(overrun.len(), 1, "{}: {t}", c.name);
        let observed = overrun[0]["observed_grace_s"].as_f64().unwrap();
        assert!(
            (1.9..3.0).contains(&observed),
            "{}: StopContainer timeout 2 s, observed {observed}",
            c.name
        );
        assert_eq!(
            overrun[0]["configured_grace_s"], 30.0,
            "the kubelet's annotation (30 s) through the CRI, not the StopContainer timeout \
             nor the observed gap (2 s): {t}"
        );
        let exit = &events_of(&t, "ContainerExited", &c.id)[0];
        assert_eq!(exit["signal"], "SIGKILL", "{exit}");
        assert_eq!(exit["exit_code"], 137);
        assert_eq!(exit["killed_by"], "grace_overrun");
    }

    let m = env.agent.metrics();
    for name in ["app", "noterm"] {
        let labels = [("uid", pod.uid.as_str()), ("container", name)];
        assert_eq!(
            metric(&m, "podlife_stop_signals_ignored_total", &labels),
            1.0,
            "{name}: {m}"
        );
        assert_eq!(
            metric(&m, "podlife_grace_period_overruns_total", &labels),
            1.0
        );
    }
}
