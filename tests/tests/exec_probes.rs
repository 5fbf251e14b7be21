//! Exec sessions as the kubelet's exec probes run them (ExecSync): success, failure (exit 1,
//! twice: a recurring command is a probe, ProbeFailed), and a timeout the shim enforces with
//! SIGKILL (timed_out true). The first command run twice more: from its second run it is a
//! probe, whose first success gives one ProbeSucceeded and the next nothing.

use podlife_e2e::agent::{events_of, has, metric};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn exec_probes_success_failure_and_timeout() {
    let mut env = Env::start();
    let pod = env.run_pod("probed", PodOpts::default());
    let app = env.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
    env.agent.wait_for(&pod.uid, "app start", WAIT, |t| {
        has(t, "ContainerStarted", &app.id)
    });
    env.assert_container_cgroup(&pod, &app);
    assert_eq!(
        env.cri
            .exec_sync(&app.id, &["sh", "-c", "exit 0"], 5)
            .unwrap(),
        0
    );
    for _ in 0..2 {
        assert_eq!(
            env.cri
                .exec_sync(&app.id, &["sh", "-c", "exit 1"], 5)
                .unwrap(),
            1
        );
    }
    let timeout = env.cri.exec_sync(&app.id, &["sleep", "5"], 1);
    assert!(timeout.is_err(), "ExecSync should time out: {timeout:?}");
    for _ in 0..2 {
        assert_eq!(
            env.cri
                .exec_sync(&app.id, &["sh", "-c", "exit 0"], 5)
                .unwrap(),
            0
        );
    }
    let t = env
        .agent
        .wait_for(&pod.uid, "six exec sessions", WAIT, |t| {
            events_of(t, "ExecFinished", &app.id).len() >= 6
        });
    let fin = events_of(&t, "ExecFinished", &app.id);
    assert_eq!(fin[0]["exit_code"], 0);
    assert_eq!(fin[0]["argv"], serde_json::json!(["sh", "-c", "exit 0"]));
    assert_eq!(fin[1]["exit_code"], 1);
    assert_eq!(fin[2]["exit_code"], 1);
    assert_eq!(
        fin[2]["probe"], "exec_probe",
        "a recurring command is a probe: {t}"
    );
    assert_eq!(
        fin[3]["timed_out"], true,
        "the shim's SIGKILL at the timeout: {t}"
    );
    assert_eq!(fin[3]["signal"], "SIGKILL");
    assert!(
        fin[3]["duration_ms"].as_f64().unwrap() >= 900.0,
        "{}",
        fin[3]
    );
    assert!(fin.iter().all(|e| e["duration_ms"].as_f64().unwrap() > 0.0));
    let failed = events_of(&t, "ProbeFailed", &app.id);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["consecutive_failures"], 2);
    assert_eq!(events_of(&t, "ExecStarted", &app.id).len(), 6);
    let ok = events_of(&t, "ProbeSucceeded", &app.id);
    assert_eq!(
        ok.len(),
        1,
        "one success told, not one per healthy run: {t}"
    );
    assert_eq!(ok[0]["probe_kind"], "exec");
    assert_eq!(ok[0]["probe"], "exec_probe");
    assert_eq!(ok[0]["first"], true);
    assert_eq!(ok[0]["after_failures"], 0);
    assert_eq!(
        ok[0]["time"], fin[4]["time"],
        "at the second run's end: {t}"
    );
    let m = env.agent.metrics();
    let uid = pod.uid.as_str();
    assert_eq!(
        metric(
            &m,
            "podlife_exec_sessions_total",
            &[("uid", uid), ("result", "failure")]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "podlife_exec_sessions_total",
            &[("uid", uid), ("result", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "podlife_probe_failures_total",
            &[("uid", uid), ("container", "app")]
        ),
        1.0
    );
}
