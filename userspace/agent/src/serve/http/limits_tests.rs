//! The bounds of http/limits.rs on a real listener with raw TCP clients.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{middleware, Router};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::limits::{self, Bounds, Limiter, Refused};

const SHORT: Duration = Duration::from_millis(300);

fn bounds() -> Bounds {
    Bounds {
        connections: 4,
        requests: 1,
        streams: 1,
        header_read: SHORT,
        request: SHORT,
        drain: SHORT,
    }
}

/// Serve `app` under `b` on a loopback port until the returned sender is dropped.
async fn start(app: Router, b: Bounds, refused: Arc<Refused>) -> (String, impl Drop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(limits::serve_bounded(
        listener,
        app,
        b,
        refused,
        async move {
            let _ = rx.await;
        },
        || {},
    ));
    (addr, tx_guard(tx))
}

struct Stop(Option<tokio::sync::oneshot::Sender<()>>);
impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}
fn tx_guard(tx: tokio::sync::oneshot::Sender<()>) -> Stop {
    Stop(Some(tx))
}

async fn get_status(addr: &str, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Whether the server closed `c` (EOF) within `within`.
async fn closed(c: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, c.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn slow_app(limiter: Limiter) -> Router {
    Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/fast", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(limiter, limits::guard))
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let refused = Arc::new(Refused::default());
    let limiter = Limiter::new(bounds(), refused.clone());
    let (addr, _stop) = start(slow_app(limiter), bounds(), refused).await;
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    // Before: axum::serve set no timer, so this connection stayed open for ever.
    assert!(
        closed(&mut idle, Duration::from_secs(3)).await,
        "idle connection kept"
    );
}

/// A connection that has sent a request and stays open (keep-alive, like a live stream).
async fn served(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    c
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_counted() {
    let refused = Arc::new(Refused::default());
    let b = Bounds {
        header_read: Duration::from_secs(30),
        requests: 8,
        ..bounds()
    };
    let limiter = Limiter::new(b, refused.clone());
    let (addr, _stop) = start(slow_app(limiter), b, refused.clone()).await;
    let mut held = Vec::new();
    for _ in 0..b.connections {
        held.push(served(&addr).await);
    }
    let mut extra = TcpStream::connect(&addr).await.expect("connect");
    assert!(
        closed(&mut extra, Duration::from_secs(2)).await,
        "connection over the cap kept"
    );
    assert_eq!(
        refused
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    drop(held);
}

#[tokio::test]
async fn at_the_cap_the_oldest_silent_connection_makes_room() {
    let refused = Arc::new(Refused::default());
    let b = Bounds {
        header_read: Duration::from_secs(30),
        ..bounds()
    };
    let limiter = Limiter::new(b, refused.clone());
    let (addr, _stop) = start(slow_app(limiter), b, refused.clone()).await;
    let mut held = Vec::new();
    for _ in 0..b.connections {
        held.push(TcpStream::connect(&addr).await.expect("connect"));
        // Accepted in this order.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Before: the cap was full of sockets that never sent a byte, so a probe was refused
    // until their header timeout.
    assert_eq!(get_status(&addr, "/fast").await.0, 200);
    assert!(
        closed(&mut held[0], Duration::from_secs(2)).await,
        "the oldest silent connection was not the one closed"
    );
    assert_eq!(
        refused
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn requests_over_the_cap_get_a_json_429_and_slow_ones_a_json_503() {
    let refused = Arc::new(Refused::default());
    let limiter = Limiter::new(bounds(), refused.clone());
    let (addr, _stop) = start(slow_app(limiter), bounds(), refused.clone()).await;
    let a = addr.clone();
    let slow = tokio::spawn(async move { get_status(&a, "/slow").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = get_status(&addr, "/fast").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("\"too_many_requests\""), "{body}");
    let (status, body) = slow.await.expect("join");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"timeout\""), "{body}");
    // The slot is free again.
    assert_eq!(get_status(&addr, "/fast").await.0, 200);
}

#[tokio::test]
async fn live_streams_over_the_cap_get_a_json_429_and_free_their_slot_when_closed() {
    use crate::pipeline::shared::{Inner, Shared};
    use podlife_core::{Engine, EngineConfig};
    let shared = Shared::new(Inner::for_tests(Engine::new(EngineConfig::default())));
    let refused = Arc::new(Refused::default());
    let config = super::ApiConfig {
        limiter: Limiter::new(bounds(), refused.clone()),
        ..Default::default()
    };
    let (addr, _stop) = start(super::router(shared, config), bounds(), refused).await;
    let mut first = TcpStream::connect(&addr).await.expect("connect");
    first
        .write_all(b"GET /events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 12];
    first.read_exact(&mut head).await.expect("stream head");
    assert_eq!(&head, b"HTTP/1.1 200");
    let (status, body) = get_status(&addr, "/events/stream").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("\"too_many_streams\""), "{body}");
    drop(first);
    // The first stream's slot comes back once the server sees the client gone.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        c.write_all(b"GET /events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut head = [0u8; 12];
        if c.read_exact(&mut head).await.is_ok() && &head == b"HTTP/1.1 200" {
            ok = true;
            break;
        }
    }
    assert!(ok, "the stream slot was never freed");
}
