//! Kernel suite, kubelet probes: TCP connections a process named `kubelet` makes to an address
//! in `POD_ADDRS`, followed from the connect to the close and reported once with how they
//! ended; every other connection leaves no record and no map entry. Root.
//!
//! Loopback stands in for pod addresses (every 127/8 address is this machine's). The prober is
//! a thread of this test named `kubelet`: a thread's name is its comm.

mod support;

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use podlife_core::{ConnOutcome, KernelEventKind as K};
use support::*;

const NOT_POD: &str = "127.0.0.5";

/// (outcome, pod address, pod port, kubelet port, connected) of kubelet connections to `port`.
fn conns(seen: &Seen, port: u16) -> Vec<(ConnOutcome, IpAddr, u16, u16, bool)> {
    seen.0
        .iter()
        .filter_map(|e| match e.kind {
            K::KubeletConn {
                outcome,
                addr,
                port: p,
                sport,
                start_ns,
                established_ns,
                ..
            } if p == port => {
                assert!(
                    established_ns.is_none_or(|t| t >= start_ns) && e.ts_ns >= start_ns,
                    "connect, handshake and close in order: {e:?}"
                );
                Some((outcome, addr, p, sport, established_ns.is_some()))
            }
            _ => None,
        })
        .collect()
}

/// Run `f` on a thread whose comm is `comm`.
fn as_comm<T: Send + 'static>(comm: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name(comm.into())
        .spawn(f)
        .expect("spawn a thread")
        .join()
        .expect("the thread panicked")
}

/// A capture that follows `pod`. Each test has its own pod address: the tests run at once,
/// and every capture's programs see every test's connections.
fn pod_capture(pod: &str) -> podlife::capture::loader::Capture {
    let mut cap = capture();
    cap.add_pod_address(pod.parse().unwrap())
        .expect("add a pod address");
    cap
}

fn listen(addr: &str) -> (TcpListener, u16) {
    let l = TcpListener::bind((addr, 0)).expect("bind a test listener");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn a_kubelet_connection_accepted_by_a_pod_is_reported_once_at_its_close() {
    const POD: &str = "127.0.0.4";
    let mut cap = pod_capture(POD);
    let (l, port) = listen(POD);
    // Held open: followed, not yet reported.
    let (stream, local) = as_comm("kubelet", move || {
        let s = TcpStream::connect((POD, port)).expect("connect");
        let local = s.local_addr().unwrap().port();
        (s, local)
    });
    let (server, _) = l.accept().expect("accept");
    let open = drain_for(&mut cap, Duration::from_millis(100));
    assert!(conns(&open, port).is_empty(), "{:?}", conns(&open, port));
    assert_eq!(
        cap.kubelet_socks_followed(),
        1,
        "the open connection is followed"
    );
    // Both ends close: a client left in FIN_WAIT2 reaches CLOSE only when the server's FIN
    // comes, or after tcp_fin_timeout when the ACK of its own FIN met the socket still locked by
    // close() (a rare race on loopback).
    drop(stream);
    drop(server);
    let seen = drain_until(&mut cap, "the kubelet connection's close", &[], |s| {
        !conns(s, port).is_empty()
    });
    let more = drain_for(&mut cap, Duration::from_millis(200));
    assert_eq!(
        conns(&seen, port),
        [(ConnOutcome::Closed, POD.parse().unwrap(), port, local, true)]
    );
    assert!(conns(&more, port).is_empty(), "one record per connection");
    assert_eq!(
        cap.kubelet_socks_followed(),
        0,
        "the close removed the entry"
    );
}

#[test]
fn a_kubelet_connection_refused_by_a_pod_is_reported_as_refused() {
    const POD: &str = "127.0.0.6";
    let mut cap = pod_capture(POD);
    let (l, port) = listen(POD);
    drop(l);
    as_comm("kubelet", move || {
        let err = TcpStream::connect((POD, port)).expect_err("nothing listens");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    });
    let seen = drain_until(&mut cap, "the refused connection", &[], |s| {
        !conns(s, port).is_empty()
    });
    let got = conns(&seen, port);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].0, got[0].1, got[0].4),
        (ConnOutcome::Refused, POD.parse().unwrap(), false)
    );
    assert_eq!(cap.kubelet_socks_followed(), 0);
}

#[test]
fn a_kubelet_connection_given_up_before_the_handshake_is_a_timeout() {
    const POD: &str = "127.0.0.7";
    let mut cap = pod_capture(POD);
    let (l, port) = listen(POD);
    // Backlog 0 (listen again on a listening socket sets it): one pending connection fills
    // the accept queue, and the kernel drops the next SYNs.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let filler = TcpStream::connect((POD, port)).expect("the first connection fits");
    as_comm("kubelet", move || {
        let to: SocketAddr = (POD.parse::<IpAddr>().unwrap(), port).into();
        let err = TcpStream::connect_timeout(&to, Duration::from_millis(200))
            .expect_err("the accept queue is full");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    });
    let seen = drain_until(&mut cap, "the given-up connection", &[], |s| {
        !conns(s, port).is_empty()
    });
    let got = conns(&seen, port);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0, got[0].4), (ConnOutcome::Timeout, false));
    drop(filler);
    drop(l);
}

#[test]
fn a_kubelet_connection_reset_by_the_pod_is_reported_as_reset() {
    const POD: &str = "127.0.0.8";
    let mut cap = pod_capture(POD);
    let (l, port) = listen(POD);
    let client = as_comm("kubelet", move || {
        TcpStream::connect((POD, port)).expect("connect")
    });
    let (server, _) = l.accept().expect("accept");
    // Linger 0: the close sends a reset instead of a FIN.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let ret = unsafe {
        libc::setsockopt(
            server.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    assert_eq!(ret, 0);
    drop(server);
    let mut c = client;
    let err = c.read(&mut [0; 1]).expect_err("the reset arrives");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let seen = drain_until(&mut cap, "the reset connection", &[], |s| {
        !conns(s, port).is_empty()
    });
    let got = conns(&seen, port);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0, got[0].4), (ConnOutcome::Reset, true));
    drop(c);
}

#[test]
fn other_processes_and_other_addresses_leave_no_record_and_no_entry() {
    const POD: &str = "127.0.0.9";
    let mut cap = pod_capture(POD);
    let (pod_l, pod_port) = listen(POD);
    let (other_l, other_port) = listen(NOT_POD);
    // Another comm to the pod address (accepted, then refused); the kubelet to an address
    // that is not a pod's (accepted, then refused).
    let held = as_comm("probe-client", move || {
        let s = TcpStream::connect((POD, pod_port)).expect("connect");
        assert!(TcpStream::connect((POD, 1)).is_err());
        s
    });
    let held2 = as_comm("kubelet", move || {
        let s = TcpStream::connect((NOT_POD, other_port)).expect("connect");
        assert!(TcpStream::connect((NOT_POD, 1)).is_err());
        s
    });
    let _a = pod_l.accept().expect("accept");
    let _b = other_l.accept().expect("accept");
    assert_eq!(
        cap.kubelet_socks_followed(),
        0,
        "nothing followed while they are open"
    );
    drop((held, held2));
    let seen = drain_for(&mut cap, Duration::from_millis(300));
    let leaked: Vec<_> = [pod_port, other_port, 1]
        .iter()
        .flat_map(|p| conns(&seen, *p))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    // The filter is not simply off: the kubelet to the pod address is reported.
    as_comm("kubelet", move || drop(TcpStream::connect((POD, pod_port))));
    // The server's end closes too (see the first test).
    drop(pod_l.accept().expect("accept"));
    drain_until(&mut cap, "the kubelet's connection", &[], |s| {
        !conns(s, pod_port).is_empty()
    });
}
