//! A server's listener in a real pod: ListenerOpened after a delay from its start (and the
//! container's `time_to_listen_s`), ListenerClosed when its SIGTERM handler closes it, dated from
//! the StopRequested; a client from the host connecting to the pod's address meanwhile is
//! refused once the listener is gone (ConnectionsRefused while terminating, and its metric). A
//! hostNetwork pod's listener is its container's too.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podlife_e2e::agent::{events, events_of, has, metric};
use podlife_e2e::pod_net::{pod_ip, route_to_pod};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

/// Listens on `port` after 0.3 s, serving every connection (`-ll -e true`); on SIGTERM closes
/// the listener (kills nc), keeps running 1 s, exits 0.
fn server(port: u16) -> Vec<String> {
    let script = format!(
        "trap 'kill $p; sleep 1; exit 0' TERM; sleep 0.3; nc -ll -p {port} -e true & p=$!; wait; wait"
    );
    vec!["sh".into(), "-c".into(), script]
}

/// Connects to `addr` every 20 ms until `stop`; counts the refused connections.
fn client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU32>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

fn run(env: &mut Env, name: &str, opts: PodOpts, port: u16) {
    let host_network = opts.host_network;
    let pod = env.run_pod(name, opts);
    let argv = server(port);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let app = env.run_container(&pod, "app", &argv, CtrOpts::default());
    let t = env.agent.wait_for(&pod.uid, "the listener", WAIT, |t| {
        has(t, "ListenerOpened", &app.id)
    });
    let started = &events_of(&t, "ContainerStarted", &app.id)[0];
    let opened = &events_of(&t, "ListenerOpened", &app.id)[0];
    assert_eq!(opened["port"], port, "{opened}");
    assert_eq!(opened["comm"], "nc", "{opened}");
    assert_eq!(opened["container"], "app");
    assert!(
        ["0.0.0.0", "::"].contains(&opened["address"].as_str().unwrap_or("")),
        "{opened}"
    );
    let family = if opened["address"] == "::" {
        "ipv6"
    } else {
        "ipv4"
    };
    assert_eq!(opened["family"], family);
    let nc = opened["pid"].as_u64().unwrap();
    assert_ne!(
        Some(nc),
        started["pid"].as_u64(),
        "nc is a child of the init"
    );

    let c = env.agent.container_summary(&pod.uid, &app.id);
    let ttl = c["time_to_listen_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{c}"));
    assert!(
        (0.3..2.0).contains(&ttl),
        "listening 0.3 s after start: {c}"
    );

    // A client from the host on the pod's address (not for a hostNetwork pod: the node's).
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU32::new(0));
    let connecting = (!host_network).then(|| {
        let sandbox = events(&t, "SandboxStarted")[0]["pid"].as_u64().unwrap();
        let ip = pod_ip(sandbox);
        route_to_pod(&env.kubelet.containerd.bridge, &ip);
        let addr = SocketAddr::new(ip.parse().unwrap(), port);
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("the server on {addr} before the stop: {e}"));
        client(addr, stop.clone(), refused.clone())
    });
    env.cri.stop_container(&app.id, 10);
    let status = env.cri.wait_exited(&app.id);
    assert_eq!(status.exit_code, 0);
    stop.store(true, Ordering::Relaxed);
    if let Some(c) = connecting {
        c.join().expect("client thread");
        let n = refused.load(Ordering::Relaxed);
        assert!(n > 0, "the client was never refused");
        // Every refusal the client saw is a reset from the pod's address: all are counted
        // once their second is over.
        let counted = |t: &serde_json::Value| -> u64 {
            (events_of(t, "ConnectionsRefused", &app.id).iter())
                .map(|e| e["count"].as_u64().unwrap_or(0))
                .sum()
        };
        let t = env
            .agent
            .wait_for(&pod.uid, "every refused connection", WAIT, |t| {
                counted(t) == u64::from(n)
            });
        let r = events_of(&t, "ConnectionsRefused", &app.id);
        assert!(
            r.iter().all(|e| e["port"] == port
                && e["phase"] == "terminating"
                && e["container"] == "app"),
            "refused on the app's port while terminating: {t}"
        );
        let counted = counted(&t);
        let m = env.agent.metrics();
        let labels = [("uid", pod.uid.as_str()), ("phase", "terminating")];
        let exported = metric(&m, "podlife_connections_refused_total", &labels);
        assert_eq!(exported, counted as f64, "{m}");
    }
    let t = env.agent.wait_for(&pod.uid, "the exit", WAIT, |t| {
        has(t, "ContainerExited", &app.id)
    });
    // The termination summary tells the same story: the listener closed after the stop
    // signal, and what was refused meanwhile decides the outcome.
    let summary = t["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == app.id.as_str()))
        .map(|c| c["termination"].clone())
        .unwrap_or_else(|| panic!("no container {} in {t}", app.id));
    let refused_in_events: u64 = events_of(&t, "ConnectionsRefused", &app.id)
        .iter()
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        summary["refused_while_terminating"].as_u64(),
        Some(refused_in_events),
        "{summary}"
    );
    assert!(
        summary["listener_closed_after_s"].as_f64().is_some(),
        "{summary}"
    );
    let want = if refused_in_events > 0 {
        "refused_connections"
    } else {
        "clean"
    };
    assert_eq!(summary["outcome"], want, "{summary}");
    let closed = &events_of(&t, "ListenerClosed", &app.id);
    assert_eq!(closed.len(), 1, "{t}");
    let closed = closed[0];
    assert_eq!(
        (closed["port"].as_u64(), closed["pid"].as_u64()),
        (Some(port.into()), Some(nc))
    );
    let after = closed["after_stop_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{closed}"));
    assert!(after < 0.4, "closed at once by the TERM handler: {closed}");
    let open_s = closed["open_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{closed}"));
    assert!(open_s > 0.0, "{closed}");
    let exit = &events_of(&t, "ContainerExited", &app.id)[0];
    let termination = exit["termination_s"].as_f64().unwrap();
    assert!(
        termination > after + 0.8,
        "the container ran on 1 s after closing its listener: {exit} {closed}"
    );
    let text = env
        .agent
        .get(&format!("/pods/{}/timeline?format=text", pod.uid))
        .1;
    let line = text
        .lines()
        .find(|l| l.contains("ListenerClosed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("app  :{port}")) && line.contains("after stop"),
        "{line}"
    );
    env.remove_pod(&pod);
}

#[test]
fn a_server_listens_after_a_delay_and_closes_its_listener_on_sigterm() {
    let mut env = Env::start();
    run(&mut env, "listener", PodOpts::default(), 8080);
}

#[test]
fn a_host_network_pod_s_listener_is_its_container_s() {
    let mut env = Env::start();
    // The node's own network: a port nothing else on this machine uses now.
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let opts = PodOpts {
        host_network: true,
        ..PodOpts::default()
    };
    run(&mut env, "hostnet-listener", opts, port);
}
