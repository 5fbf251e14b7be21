//! Resuming `/events/stream`: what a reconnecting client missed comes from history, then live
//! events follow with no gap and no duplicate.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::pipeline::shared::{Inner, Published, Shared};
use podlife_core::{Engine, EngineConfig};

fn shared() -> Arc<Shared> {
    Shared::new(Inner::for_tests(Engine::new(EngineConfig::default())))
}

/// What the agent does with a new event: history gives it an id, then it goes live.
fn publish(s: &Shared, n: u64) -> String {
    let kept = s.lock().history.push(crate::pipeline::history::test_event(
        "8f3c2a1e-1111-4a4a-9b9b-000000000001",
        n as u32,
        n as i64,
    ));
    let _ = s.live.send(Published::new(kept.clone()));
    kept.seq.to_string()
}

/// (id, pid: the test event's marker) of each `lifecycle` event read from the stream until `count` arrived.
async fn read_events(c: &mut TcpStream, count: usize) -> Vec<(String, u64)> {
    let mut text = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while out.len() < count {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("only {out:?} of {count} events in 5 s:\n{text}"))
            .expect("read");
        assert!(n > 0, "stream closed after {out:?}:\n{text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        out.clear();
        for block in text.split("\n\n") {
            let id = block.lines().find_map(|l| l.strip_prefix("id: "));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                let v: Value = serde_json::from_str(data).expect("JSON data");
                out.push((id.to_string(), v["pid"].as_u64().expect("pid")));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_client_resuming_with_last_event_id_misses_nothing_and_gets_nothing_twice() {
    let s = shared();
    let ids: Vec<String> = (0..3).map(|n| publish(&s, n)).collect();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = super::router(s.clone(), Default::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(super::limits::serve_bounded(
        listener,
        app,
        Default::default(),
        Default::default(),
        async move {
            let _ = rx.await;
        },
        || {},
    ));
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /events/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {}\r\n\r\n",
        ids[0]
    );
    c.write_all(req.as_bytes()).await.expect("write");
    let got = read_events(&mut c, 2).await;
    assert_eq!(
        got,
        [(ids[1].clone(), 1), (ids[2].clone(), 2)],
        "the missed ones, in order"
    );
    // An event sent live again (it was already replayed) is not sent twice; a new one is.
    let again = s
        .lock()
        .history
        .select(&crate::pipeline::history::EventQuery {
            since_wall_ns: i128::MIN,
            uid: None,
            after: Some(ids[1].parse().unwrap()),
            limit: 1,
        });
    let _ = s.live.send(Published::new(again[0].clone()));
    let new_id = publish(&s, 3);
    // The re-sent event would come first if it were sent again.
    let got = read_events(&mut c, 1).await;
    assert_eq!(got, [(new_id, 3)]);
    let _ = tx.send(());
}
