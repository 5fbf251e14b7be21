//! `--otlp-endpoint`: every lifecycle event as an OpenTelemetry log record, posted to an OTLP/HTTP
//! receiver (`<endpoint>/v1/logs`, protobuf). The exporter reads the served history after a
//! cursor, like a resuming stream client, and keeps the cursor in the state dir: a receiver
//! that is down, or an agent restart, loses nothing still in retention and sends nothing twice
//! (but for the one batch in flight at a SIGKILL). What left retention before it was sent is
//! counted. It never holds the agent's lock while it talks to the receiver.

pub mod proto;
pub mod records;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use prometheus::{IntCounter, IntCounterVec};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing::{info, warn};

use crate::node::clock::WallClock;
use crate::pipeline::history::EventQuery;
use crate::pipeline::shared::Shared;

/// Records per request at most.
const BATCH: usize = 512;
/// A request may take this long.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between attempts while the receiver fails: doubling from 1 s to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Polls of the history while there is nothing new.
const IDLE: Duration = Duration::from_millis(500);

/// An `http://host:port[/prefix]` receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `<prefix>/v1/logs`.
    pub path: String,
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            format!(
                "{s:?}: expected http://host:port (OTLP/HTTP; for TLS, send to a local collector)"
            )
        })?;
        let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{s:?}: the port is not a number"))?,
            ),
            None => (authority, 4318),
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let prefix = prefix.trim_end_matches('/');
        let path = if prefix.is_empty() {
            "/v1/logs".to_string()
        } else {
            format!("/{prefix}/v1/logs")
        };
        Ok(Self {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            path,
        })
    }
}

pub struct Counters {
    /// Records by result: exported, expired (left retention unsent).
    pub records: IntCounterVec,
    pub failures: IntCounter,
}

fn read_cursor(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Written whole or not at all (rename), so a crash never leaves half a number.
fn write_cursor(path: &Path, cursor: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{cursor}\n"))?;
    std::fs::rename(&tmp, path)
}

/// POST one request; Ok on a 2xx answer.
async fn post(ep: &Endpoint, body: Vec<u8>) -> Result<()> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .with_context(|| format!("connecting to {}:{}", ep.host, ep.port))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            ep.path, ep.host, ep.port, body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(&body).await?;
        // The status line is all we need; the answer's size is the receiver's, so bounded.
        let mut buf = vec![0u8; 512];
        let mut got = 0;
        while got < 16 {
            let n = s.read(&mut buf[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let line = String::from_utf8_lossy(&buf[..got]);
        let code: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if !(200..300).contains(&code) {
            bail!(
                "the receiver answered {}",
                line.lines().next().unwrap_or("nothing")
            );
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {TIMEOUT:?}"))?
}

pub async fn run(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    node: Option<String>,
    cursor_file: PathBuf,
    counters: Counters,
) {
    // First start: from the newest event on (the history before is not replayed).
    let mut cursor = match read_cursor(&cursor_file) {
        Some(c) => c,
        None => {
            let inner = shared.lock();
            let newest = inner.history.select(&EventQuery {
                since_wall_ns: i128::MIN,
                uid: None,
                after: None,
                limit: 1,
            });
            newest.last().map_or(0, |e| e.seq)
        }
    };
    if let Err(e) = write_cursor(&cursor_file, cursor) {
        warn!(
            "OTLP: cannot keep the cursor in {}: {e}; a restart resends from the newest event",
            cursor_file.display()
        );
    }
    info!(
        "OTLP logs to http://{}:{}{} from event id {cursor}",
        endpoint.host, endpoint.port, endpoint.path
    );
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let (batch, expired) = {
            let inner = shared.lock();
            let q = EventQuery {
                since_wall_ns: i128::MIN,
                uid: None,
                after: Some(cursor),
                limit: BATCH,
            };
            (
                inner.history.select(&q),
                inner.history.expired_after(cursor),
            )
        };
        if expired {
            counters.records.with_label_values(&["expired"]).inc();
            warn!("OTLP: events after id {cursor} left retention before they were sent");
        }
        if batch.is_empty() {
            tokio::time::sleep(IDLE).await;
            continue;
        }
        let events: Vec<serde_json::Value> = batch
            .iter()
            .filter_map(|e| e.to_map(podlife_core::served::Fields::All).ok())
            .map(serde_json::Value::Object)
            .collect();
        let now = u64::try_from(WallClock::now_wall_ns()).unwrap_or(0);
        let body = records::request(&events, node.as_deref(), now).encode_to_vec();
        match post(&endpoint, body).await {
            Ok(()) => {
                cursor = batch.last().map_or(cursor, |e| e.seq);
                let _ = write_cursor(&cursor_file, cursor);
                counters
                    .records
                    .with_label_values(&["exported"])
                    .inc_by(batch.len() as u64);
                backoff = Duration::from_secs(1);
                if failing {
                    info!("OTLP: the receiver takes records again");
                    failing = false;
                }
            }
            Err(e) => {
                counters.failures.inc();
                if !failing {
                    warn!("OTLP: {e:#}; retrying with back-off (up to {MAX_BACKOFF:?}), nothing is lost while it is in retention");
                    failing = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_bad_ones_say_why() {
        let e: Endpoint = "http://127.0.0.1:4318".parse().unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 4318, "/v1/logs")
        );
        let e: Endpoint = "http://collector/otlp/".parse().unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("collector", 4318, "/otlp/v1/logs")
        );
        let e: Endpoint = "http://[::1]:9".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9));
        for bad in ["https://x:4318", "x:4318", "http://:4318", "http://x:port"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cursor_survives_as_a_whole_number() {
        let p = std::env::temp_dir().join(format!("podlife-otlp-cursor-{}", std::process::id()));
        assert_eq!(read_cursor(&p), None);
        write_cursor(&p, 1_796_598_046_997_767).unwrap();
        assert_eq!(read_cursor(&p), Some(1_796_598_046_997_767));
        std::fs::remove_file(&p).unwrap();
    }
}
