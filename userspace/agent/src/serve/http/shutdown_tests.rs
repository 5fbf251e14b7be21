//! Graceful shutdown with a live stream open: the server must finish (so the agent flushes its
//! store and exits before the kubelet's SIGKILL), and the client sees the stream end.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::{serve, tests::shared, Access};

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, signal) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, shared(), Access::private(), async {
        let _ = signal.await;
    }));

    let mut client = TcpStream::connect(addr).await.expect("connect");
    client
        .write_all(b"GET /events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    // Wait for the stream's headers: the request is in flight when the signal comes.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("stream headers within 5 s")
            .expect("read");
        assert!(n > 0, "connection closed before the headers");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");

    stop.send(()).expect("server waiting");
    // Before: the stream never ended, so graceful shutdown waited for ever.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server finishes within 5 s of the signal with a stream open")
        .expect("server task")
        .expect("serve");
    // The client sees the end of the stream (the connection closes), not a hang.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("the stream ends")
        .expect("read");
}
