//! The kubelet's network probes of a real pod: a prober on the host whose comm is `kubelet`
//! (a thread of this test so named) makes tcpSocket-style connects and HTTP GETs with the
//! kubelet's User-Agent to the pod's address. Before the server listens they are refused
//! (ProbeFailed connection_refused, 1, 2, 3 ... in a row); the first that connects gives one
//! ProbeSucceeded with after_failures, and healthy probes after it give nothing. The container's
//! `time_to_first_probe_success_s`, the probe metrics and the text view tell the same.

use std::net::SocketAddr;
use std::time::Duration;

use podlife_e2e::agent::{events, events_of, metric};
use podlife_e2e::pod_net::{kubelet_probe, pod_ip, route_to_pod, wait_for_probe_capture, Seen};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

const PORT: u16 = 8080;

/// busybox httpd on PORT after 3 s (it answers each GET and closes: a clean exchange).
fn server() -> Vec<&'static str> {
    vec!["sh", "-c", "sleep 3; exec httpd -f -p 8080 -h /tmp"]
}

#[test]
fn refused_probes_before_the_listener_then_one_success_and_silence() {
    let mut env = Env::start();
    let pod = env.run_pod("probed", PodOpts::default());
    let app = env.run_container(&pod, "app", &server(), CtrOpts::default());
    let t = env.agent.wait_for(&pod.uid, "the start", WAIT, |t| {
        !events(t, "SandboxStarted").is_empty()
            && !events_of(t, "ContainerStarted", &app.id).is_empty()
    });
    let sandbox = events(&t, "SandboxStarted")[0]["pid"].as_u64().unwrap();
    let ip = pod_ip(sandbox);
    route_to_pod(&env.kubelet.containerd.bridge, &ip);
    let addr = SocketAddr::new(ip.parse().unwrap(), PORT);

    // Every probe after this counts.
    wait_for_probe_capture(&env.agent, &pod.uid, addr.ip(), PORT + 2);

    // Probe (tcp and http in turn) every 100 ms until one connects, then 6 healthy probes.
    let mut refused = 0u32;
    let mut n = 0u32;
    loop {
        n += 1;
        match kubelet_probe(addr, n.is_multiple_of(2).then_some("/")) {
            Seen::Refused => refused += 1,
            Seen::Ok => break,
        }
        assert!(n < 600, "the server never listened on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused > 0, "the first probes came before the listener");
    let healthy = 6u32;
    for i in 0..healthy {
        assert_eq!(
            kubelet_probe(addr, i.is_multiple_of(2).then_some("/")),
            Seen::Ok,
            "a healthy probe"
        );
    }
    // A marker after them: a refused probe of another port.
    let marker = SocketAddr::new(addr.ip(), PORT + 1);
    assert_eq!(kubelet_probe(marker, None), Seen::Refused);

    let t = env.agent.wait_for(&pod.uid, "the marker probe", WAIT, |t| {
        events(t, "ProbeFailed")
            .iter()
            .any(|e| e["port"] == PORT + 1)
    });
    let failed: Vec<_> = events(&t, "ProbeFailed")
        .into_iter()
        .filter(|e| e["port"] == PORT)
        .collect();
    assert_eq!(
        failed.len() as u32,
        refused,
        "one ProbeFailed per refused probe: {t}"
    );
    for (i, e) in failed.iter().enumerate() {
        assert_eq!(e["consecutive_failures"], i + 1, "{e}");
        assert_eq!(e["reason"], "connection_refused", "{e}");
        assert_eq!(
            e["probe_kind"], "tcp",
            "no spec: a connection-level probe: {e}"
        );
        assert_eq!(e["probe"], serde_json::Value::Null, "{e}");
        assert_eq!(e["argv"], serde_json::json!([]), "{e}");
    }
    let ok = events(&t, "ProbeSucceeded");
    assert_eq!(
        ok.len(),
        1,
        "one success, then silence for {healthy} healthy probes: {t}"
    );
    let ok = ok[0];
    assert_eq!(ok["after_failures"], refused, "{ok}");
    assert_eq!(ok["first"], true, "{ok}");
    assert_eq!(ok["port"], PORT, "{ok}");
    assert_eq!(
        ok["container_id"],
        app.id.as_str(),
        "the listening container: {ok}"
    );
    assert_eq!(ok["container"], "app", "{ok}");

    let c = env.agent.container_summary(&pod.uid, &app.id);
    let listen = c["time_to_listen_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{c}"));
    let probed = c["time_to_first_probe_success_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{c}"));
    assert!(
        probed >= listen,
        "the first success needs the listener: {c}"
    );

    // The engine's probe run counts reach /metrics at the pipeline's next tick (250 ms), which
    // may come after the marker's event is served.
    let runs = [("probe_kind", "tcp"), ("result", "success")];
    let synced = std::time::Instant::now();
    while metric(&env.agent.metrics(), "podlife_probe_runs_total", &runs) < f64::from(healthy + 1)
        && synced.elapsed() < Duration::from_secs(2)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = env.agent.metrics();
    let fails = [
        ("uid", pod.uid.as_str()),
        ("probe_kind", "tcp"),
        ("reason", "connection_refused"),
    ];
    assert_eq!(
        metric(&m, "podlife_probe_failures_total", &fails),
        events(&t, "ProbeFailed").len() as f64,
        "every ProbeFailed of the pod (warm-up, probes, marker): {m}"
    );
    assert_eq!(
        metric(&m, "podlife_probe_runs_total", &runs),
        f64::from(healthy + 1),
        "every healthy probe is counted though it derives no event: {m}"
    );
    for stage in ["listen", "probe_success"] {
        assert_eq!(
            metric(
                &m,
                "podlife_container_startup_seconds_count",
                &[("stage", stage)]
            ),
            1.0,
            "{stage}: {m}"
        );
    }
    let text = env
        .agent
        .get(&format!("/pods/{}/timeline?format=text", pod.uid))
        .1;
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(
        has(&format!("tcp :{PORT} connection refused (1st in a row)"))
            && has(&format!("tcp :{PORT} after {refused} failure")),
        "{text}"
    );
    env.remove_pod(&pod);
}
