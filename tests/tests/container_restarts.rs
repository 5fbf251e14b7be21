//! A container that exits 3, restarted twice the kubelet's way (a new CreateContainer with
//! attempt 1, then 2, after growing back-off delays): ContainerRestarted attempt 1 and 2 with
//! the measured back-off.

use std::time::Duration;

use podlife_e2e::agent::{events, has, metric};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn exit_3_restarted_twice_with_growing_back_off() {
    let mut env = Env::start();
    let pod = env.run_pod("flaky", PodOpts::default());
    let mut ids: Vec<String> = Vec::new();
    // The kubelet's back-off doubles from 10 s; scaled down here, growing all the same.
    for (attempt, delay) in [(0u32, 0.0f64), (1, 0.5), (2, 1.2)] {
        std::thread::sleep(Duration::from_secs_f64(delay));
        let opts = CtrOpts {
            attempt,
            ..CtrOpts::default()
        };
        let c = env.run_container(&pod, "app", &["sh", "-c", "exit 3"], opts);
        assert_eq!(env.cri.wait_exited(&c.id).exit_code, 3);
        assert!(!ids.contains(&c.id), "each attempt is a new container");
        ids.push(c.id);
    }
    let t = env.agent.wait_for(&pod.uid, "two restarts", WAIT, |t| {
        events(t, "ContainerRestarted").len() >= 2 && has(t, "ContainerExited", &ids[2])
    });
    let r = events(&t, "ContainerRestarted");
    assert_eq!(r.len(), 2, "{t}");
    assert_eq!(
        (r[0]["attempt"].clone(), r[1]["attempt"].clone()),
        (1.into(), 2.into())
    );
    assert_eq!(r[0]["container_id"], ids[1].as_str());
    assert_eq!(r[1]["container_id"], ids[2].as_str());
    assert!(r.iter().all(|e| e["container"] == "app"));
    assert!(r.iter().all(|e| e["cause"] == "error_exit"), "{t}");
    let (b1, b2) = (
        r[0]["backoff_s"].as_f64().unwrap(),
        r[1]["backoff_s"].as_f64().unwrap(),
    );
    assert!(
        (0.4..2.0).contains(&b1),
        "first back-off ≈ 0.5 s + runtime: {b1}"
    );
    assert!(b2 > b1 + 0.4, "growing back-off: {b1} then {b2}");
    let exits = events(&t, "ContainerExited");
    assert_eq!(exits.len(), 3, "{t}");
    assert!(exits
        .iter()
        .all(|e| e["exit_code"] == 3 && e["reason"] == "Error"));
    let app = t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == ids[2].as_str())
        .unwrap_or_else(|| panic!("last attempt listed: {t}"));
    assert_eq!(app["restarts"], 2);

    let m = env.agent.metrics();
    let labels = [("uid", pod.uid.as_str()), ("container", "app")];
    assert_eq!(
        metric(&m, "podlife_container_restarts_total", &labels),
        2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "podlife_container_starts_total", &labels), 3.0);
    let by_cause = |cause| {
        let l = [("uid", pod.uid.as_str()), ("cause", cause)];
        metric(&m, "podlife_container_restarts_total", &l)
    };
    assert_eq!((by_cause("error_exit"), by_cause("oom")), (2.0, 0.0), "{m}");
}
