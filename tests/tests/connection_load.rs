//! Many clients at once while events flow: 500 live streams and 1,000 idle TCP connections.
//! Beyond its caps the agent refuses streams with a JSON 429 and closes surplus connections,
//! counts both, keeps answering /healthz, and every open stream gets every event.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use podlife_e2e::agent::{metric, Agent};
use podlife_e2e::pod_cgroups;

/// Send a request and read the response head (and what came with it).
fn request(port: u16, path: &str) -> Option<(TcpStream, u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((s, status, text))
}

/// Read a stream until `done` holds on what it has sent so far.
fn read_until(s: &mut TcpStream, seen: &mut String, done: impl Fn(&str) -> bool) -> bool {
    let mut chunk = [0u8; 16384];
    while !done(seen) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&chunk[..n])),
        }
    }
    true
}

#[test]
fn five_hundred_streams_and_a_thousand_idle_connections_are_bounded_and_counted() {
    podlife_e2e::require_root();
    let runtime = podlife_e2e::Scratch::new("load");
    let agent = Agent::start(&runtime.0);
    let port = agent.port;

    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..500 {
        let (s, status, head) =
            request(port, "/events/stream").expect("a stream request unanswered");
        match status {
            200 => streams.push((s, head)),
            429 => {
                assert!(
                    head.contains("application/json") && head.contains("too_many_streams") || {
                        let mut s = s;
                        let mut rest = head.clone();
                        read_until(&mut s, &mut rest, |t| t.contains('}'));
                        rest.contains("\"too_many_streams\"")
                    },
                    "a refused stream without its JSON error: {head}"
                );
                refused += 1;
            }
            other => panic!("/events/stream answered {other}: {head}"),
        }
    }
    assert!(refused > 0, "500 streams were all accepted: no stream cap");
    assert!(!streams.is_empty());

    // Idle connections: no request, held until the agent's header timeout.
    let idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();

    // Events flow while everything is held: pods admitted and removed.
    let tag = std::process::id();
    let uids = pod_cgroups::churn(200, |i| format!("{tag:08x}-0000-4000-8000-cc00{i:08x}"));
    let last = uids.last().unwrap().clone();

    // Health is answered, at the first try (a probe gets one), with every slot taken: the
    // oldest connection that never sent a request makes room.
    let health = agent.get("/healthz");
    eprintln!(
        "{} streams open, {refused} refused, {} idle connections; /healthz {}",
        streams.len(),
        idle.len(),
        health.0
    );
    assert_eq!(
        health.0, 200,
        "/healthz refused with {} streams and {} idle connections open: a kubelet would restart the agent",
        streams.len(),
        idle.len()
    );

    // Every open stream got the churn to its end.
    for (i, (s, head)) in streams.iter_mut().enumerate() {
        let mut seen = std::mem::take(head);
        assert!(
            read_until(s, &mut seen, |t| t
                .lines()
                .any(|l| l.contains(&last) && l.contains("PodRemoved"))),
            "stream {i} ended before the last pod's removal: {:.500}",
            &seen[seen.len().saturating_sub(500)..]
        );
        let admitted = uids
            .iter()
            .filter(|u| seen.contains(&format!("\"uid\":\"{u}\"")))
            .count();
        assert_eq!(admitted, uids.len(), "stream {i} missed pods");
    }
    drop(idle);
    let m = agent.metrics();
    assert_eq!(
        metric(&m, "podlife_http_refused_total", &[("reason", "streams")]),
        refused as f64,
        "refused streams counted"
    );
    assert!(
        metric(
            &m,
            "podlife_http_refused_total",
            &[("reason", "connections")]
        ) > 0.0,
        "{} streams and 1000 idle connections are beyond the connection cap: closes are counted",
        streams.len()
    );
    assert_eq!(
        metric(&m, "podlife_ringbuf_events_lost_total", &[]),
        0.0,
        "events lost by the ring reader under client load"
    );
    drop(streams);
    drop(agent);
}
