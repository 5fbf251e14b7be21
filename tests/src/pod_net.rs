//! Reaching a pod's address from the host: the address of its network namespace, and a route
//! through the test's own bridge (never anywhere else).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// The IPv4 address of eth0 in the network namespace of the sandbox's pause (`pid`).
pub fn pod_ip(pid: u64) -> String {
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .expect("nsenter");
    let text = String::from_utf8_lossy(&out.stdout);
    // "2: eth0    inet 10.231.7.2/24 brd ... scope global eth0"
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no IPv4 address on eth0 of the pod's netns: {out:?}"))
}

/// Give the host an address on the test's own bridge, so the pod's address is reached through
/// it; fail loudly when the route goes anywhere else.
pub fn route_to_pod(bridge: &str, pod_ip: &str) {
    let ip: IpAddr = pod_ip
        .parse()
        .unwrap_or_else(|_| panic!("pod ip {pod_ip:?}"));
    let IpAddr::V4(v4) = ip else {
        panic!("an IPv4 pod address on the e2e bridge: {ip}")
    };
    let o = v4.octets();
    let gw = format!("{}.{}.{}.1/24", o[0], o[1], o[2]);
    let out = Command::new("ip")
        .args(["addr", "replace", &gw, "dev", bridge])
        .output()
        .expect("ip addr");
    assert!(
        out.status.success(),
        "ip addr replace {gw} dev {bridge}: {out:?}"
    );
    let route = Command::new("ip")
        .args(["route", "get", pod_ip])
        .output()
        .expect("ip route get");
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.contains(&format!("dev {bridge} ")),
        "the route to {pod_ip} must use the test's bridge {bridge}: {route}"
    );
}

/// What one kubelet-style probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Refused,
    Ok,
}

/// One probe as the kubelet makes it, from a thread whose comm is `kubelet`: a connect and
/// close (tcpSocket), or with `path` a GET with the kubelet's User-Agent read to its end
/// (httpGet probe or hook).
pub fn kubelet_probe(addr: SocketAddr, path: Option<&'static str>) -> Seen {
    std::thread::Builder::new()
        .name("kubelet".into())
        .spawn(move || probe(addr, path))
        .expect("spawn the prober")
        .join()
        .expect("the prober panicked")
}

fn probe(addr: SocketAddr, path: Option<&str>) -> Seen {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Seen::Refused,
        Err(e) => panic!("probe of {addr}: {e}"),
    };
    if let Some(path) = path {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.34\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("send the GET");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read the answer");
        assert!(answer.starts_with("HTTP/1."), "{answer:?}");
    }
    Seen::Ok
}

/// Waits until the agent follows kubelet connections to `ip` (it adds a pod's address to the
/// kernel's filter once it sees the sandbox): probes `port`, where nothing listens, until the
/// pod's timeline shows one refused.
pub fn wait_for_probe_capture(agent: &crate::agent::Agent, uid: &str, ip: IpAddr, port: u16) {
    let addr = SocketAddr::new(ip, port);
    for _ in 0..300 {
        assert_eq!(kubelet_probe(addr, None), Seen::Refused);
        let t = agent.json(&format!("/pods/{uid}/timeline"));
        if crate::agent::events(&t, "ProbeFailed")
            .iter()
            .any(|e| e["port"] == port)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no probe of the pod's address {ip} was reported");
}
