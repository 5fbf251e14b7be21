//! Kernel suite, network: TCP listeners of pod processes opening and closing
//! (sock:inet_sock_set_state), reported in the listener's own context, and nothing of the
//! host's connections. Root.

mod support;

use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use podlife_core::{KernelEvent, KernelEventKind as K, TcpState};
use support::*;

/// A port free on this machine now (bound and released at once).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("its address").port()
}

/// busybox nc listening on `port` (all addresses): it closes its listener after one accept.
fn nc_listen(cg: &TestCgroup, port: u16) -> std::process::Child {
    cg.spawn(
        Command::new("busybox")
            .args(["nc", "-l", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )
}

/// Wait until something listens on 127.0.0.1:`port`.
fn wait_listening(port: u16) {
    for _ in 0..300 {
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default()
            + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
        // local_address column "ADDR:PORT" in hex, state 0A = LISTEN.
        let want = format!(":{port:04X} ");
        if tcp
            .lines()
            .any(|l| l.contains(&want) && l.split_whitespace().nth(3) == Some("0A"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on port {port}");
}

/// Transitions of sockets with local port `port`.
fn transitions(seen: &Seen, port: u16) -> Vec<(&KernelEvent, u64, TcpState, TcpState, IpAddr)> {
    seen.0
        .iter()
        .filter_map(|e| match e.kind {
            K::TcpState {
                sk,
                old,
                new,
                saddr,
                sport,
                ..
            } if sport == port => Some((e, sk, old, new, saddr)),
            _ => None,
        })
        .collect()
}

fn any_on_port(seen: &Seen, port: u16) -> Vec<&KernelEvent> {
    seen.0
        .iter()
        .filter(|e| matches!(e.kind, K::TcpState { sport, dport, .. } if sport == port || dport == port))
        .collect()
}

#[test]
fn a_pod_listener_opens_and_closes_in_its_own_context() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let port = free_port();
    let mut nc = nc_listen(&cg, port);
    let pid = nc.id();
    let seen = drain_until(&mut cap, "the listen of nc", &[pid], |s| {
        !transitions(s, port).is_empty()
    });
    let opened = transitions(&seen, port);
    let (ev, sk, old, new, addr) = opened[0];
    assert_eq!((old, new), (TcpState::Close, TcpState::Listen));
    assert_eq!(
        (ev.tgid, ev.cgroup_id, ev.comm.as_str()),
        (pid, cg.id(), "busybox"),
        "listen(2) runs in the listener's context, in its pod cgroup"
    );
    assert!(addr.is_unspecified(), "nc listens on every address: {addr}");

    // One connection from the host: nc accepts it and closes its listener (close(2) in its
    // own context). The accepted and the client sockets are connections, never reported.
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connect to nc");
    let seen = drain_until(&mut cap, "the close of the listener", &[pid], |s| {
        !transitions(s, port).is_empty()
    });
    drop(client);
    let _ = wait(&mut nc);
    let more = drain_for(&mut cap, Duration::from_millis(200));
    let closed = transitions(&seen, port);
    let (ev, sk2, old, new, _) = closed[0];
    assert_eq!((old, new), (TcpState::Listen, TcpState::Close));
    assert_eq!(sk2, sk, "the same socket, followed by its kernel address");
    assert_eq!((ev.tgid, ev.cgroup_id), (pid, cg.id()));
    let rest: Vec<_> = any_on_port(&seen, port)
        .into_iter()
        .chain(any_on_port(&more, port))
        .filter(|e| !std::ptr::eq(*e, ev))
        .collect();
    assert!(
        rest.is_empty(),
        "only the listener's two transitions are reported, not its connections: {rest:?}"
    );
}

#[test]
fn a_listener_closed_by_its_process_exit_is_reported() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let port = free_port();
    let mut nc = nc_listen(&cg, port);
    let pid = nc.id();
    wait_listening(port);
    kill(pid, libc::SIGKILL);
    let _ = wait(&mut nc);
    let seen = drain_until(&mut cap, "open and close of the listener", &[pid], |s| {
        transitions(s, port).len() >= 2
    });
    let t = transitions(&seen, port);
    assert_eq!(
        t.iter().map(|x| (x.2, x.3)).collect::<Vec<_>>(),
        [
            (TcpState::Close, TcpState::Listen),
            (TcpState::Listen, TcpState::Close)
        ]
    );
    assert_eq!(
        (t[1].0.tgid, t[1].0.cgroup_id),
        (pid, cg.id()),
        "the exit closes the listener in the dying process's context"
    );
}

#[test]
fn host_listeners_and_connections_never_reach_the_ring_buffer() {
    let mut cap = capture();
    let cg = TestCgroup::host();
    let port = free_port();
    let mut nc = nc_listen(&cg, port);
    let pid = nc.id();
    wait_listening(port);
    // Connection churn on the host: the accept closes nc's listener, then more refused connects.
    drop(TcpStream::connect(("127.0.0.1", port)).expect("connect to nc"));
    let _ = wait(&mut nc);
    for _ in 0..20 {
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
    // The test's own listener (a host process too).
    let own = TcpListener::bind("127.0.0.1:0").expect("bind");
    let own_port = own.local_addr().unwrap().port();
    drop(own);
    let seen = drain_for(&mut cap, Duration::from_millis(300));
    let leaked: Vec<_> = any_on_port(&seen, port)
        .into_iter()
        .chain(any_on_port(&seen, own_port))
        .collect();
    assert!(leaked.is_empty(), "host sockets were reported: {leaked:?}");
    // The filter is not simply off: the same kind of listener in a pod is reported.
    let pod = TestCgroup::pod();
    let port = free_port();
    let mut nc = nc_listen(&pod, port);
    let pid2 = nc.id();
    drain_until(&mut cap, "a pod listener", &[pid, pid2], |s| {
        !transitions(s, port).is_empty()
    });
    kill(pid2, libc::SIGKILL);
    let _ = wait(&mut nc);
}

/// Resets sent from `port` (the refusing side), as (refusing address, client address, client port).
fn resets(seen: &Seen, port: u16) -> Vec<(IpAddr, IpAddr, u16)> {
    seen.0
        .iter()
        .filter_map(|e| match e.kind {
            K::TcpReset {
                saddr,
                sport,
                daddr,
                dport,
            } if sport == port => Some((saddr, daddr, dport)),
            _ => None,
        })
        .collect()
}

#[test]
fn connections_refused_by_a_pod_address_are_reported_and_no_others() {
    // Loopback stands in for pod addresses: every 127/8 address is this machine's.
    let pod: IpAddr = "127.0.0.2".parse().unwrap();
    let other: IpAddr = "127.0.0.3".parse().unwrap();
    let mut cap = capture();
    cap.add_pod_address(pod).expect("add a pod address");
    let port = free_port();
    if !tracepoint_has_field("tcp", "tcp_send_reset", "reason") {
        // Before 6.10 the tracepoint has no reason and skips socket-less resets: the feature
        // `refused_connections` is off (checked by `capture`) and nothing may come.
        assert!(TcpStream::connect((pod, port)).is_err());
        let seen = drain_for(&mut cap, Duration::from_millis(300));
        assert!(resets(&seen, port).is_empty(), "{:?}", resets(&seen, port));
        return;
    }
    for _ in 0..3 {
        let err = TcpStream::connect((pod, port)).expect_err("nothing listens there");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    // Refused by an address that is not a pod's, and accepted by a pod address: not reported.
    assert!(TcpStream::connect((other, port)).is_err());
    let listener = TcpListener::bind((pod, 0)).expect("bind on the pod address");
    let open = listener.local_addr().unwrap().port();
    drop(TcpStream::connect((pod, open)).expect("a listener is there"));
    drop(listener);
    let seen = drain_until(&mut cap, "three resets", &[], |s| {
        resets(s, port).len() >= 3
    });
    let more = drain_for(&mut cap, Duration::from_millis(200));
    let all: Vec<_> = resets(&seen, port)
        .into_iter()
        .chain(resets(&more, port))
        .collect();
    assert_eq!(all.len(), 3, "one reset per refused connect: {all:?}");
    for (saddr, daddr, dport) in &all {
        assert_eq!((*saddr, daddr.is_loopback()), (pod, true), "{all:?}");
        assert_ne!(*dport, 0, "the client's port");
    }
    let ports: std::collections::HashSet<_> = all.iter().map(|r| r.2).collect();
    assert_eq!(ports.len(), 3, "three clients: {all:?}");
    assert!(resets(&seen, open).is_empty() && resets(&more, open).is_empty());

    // The pod is gone: its address is no longer reported.
    cap.remove_pod_address(pod).expect("remove the address");
    assert!(TcpStream::connect((pod, port)).is_err());
    let after = drain_for(&mut cap, Duration::from_millis(200));
    assert!(
        resets(&after, port).is_empty(),
        "{:?}",
        resets(&after, port)
    );
}
