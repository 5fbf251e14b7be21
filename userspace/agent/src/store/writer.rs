//! The history store's own thread: the pipeline hands it event lines through a bounded queue and
//! never waits for the disk. A full, failing or hung disk (an fsync that does not return) stalls
//! only this thread; lines beyond the queue's bound are dropped and counted, the reader and the
//! pipeline go on, and the API keeps serving from memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::node::clock::WallClock;
use crate::store::Store;

/// How often the writer flushes (and fsyncs) queued lines.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How often it records its heartbeat (a write, an fsync and a rename). An `AgentGap` starts at
/// the later of the heartbeat and the newest stored event, so it is early by at most this
/// period; an idle node pays one such fsync a second rather than four.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// What the writer did, read by the pipeline into the metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Lines not queued because the queue was full.
    pub dropped: AtomicU64,
    /// Failed writes (each retried at the next flush).
    pub errors: AtomicU64,
    /// Monotonic ns of the writer's last completed loop: a hung disk shows as an old stamp.
    pub last_loop_ns: AtomicU64,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    closing: bool,
}

struct Channel {
    queue: Mutex<Queue>,
    wake: Condvar,
    max_bytes: usize,
    stats: Arc<StoreStats>,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pipeline's end: appending is a memory copy under a lock the writer holds only to swap
/// buffers, never across a write.
pub struct StoreSink {
    channel: Arc<Channel>,
    writer: Option<JoinHandle<()>>,
}

impl StoreSink {
    /// Start the writer thread on `store`; at most `max_bytes` of lines wait for it.
    pub fn spawn(store: Store, max_bytes: usize) -> std::io::Result<Self> {
        let channel = Arc::new(Channel {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            max_bytes,
            stats: Arc::default(),
        });
        let c = channel.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(store, &c))?;
        Ok(Self {
            channel,
            writer: Some(writer),
        })
    }

    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.channel.stats
    }

    /// Queue one event's JSON line (without its newline).
    pub fn append(&self, line: &str) {
        let mut q = self.channel.lock();
        if q.bytes.len() + line.len() >= self.channel.max_bytes {
            drop(q);
            self.channel.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes.extend_from_slice(line.as_bytes());
        q.bytes.push(b'\n');
    }

    /// Ask the writer for a last flush and wait for it at most `timeout` (a hung disk must not
    /// hold the agent's exit). True when the writer finished.
    pub fn close(mut self, timeout: Duration) -> bool {
        self.channel.lock().closing = true;
        self.channel.wake.notify_one();
        let Some(writer) = self.writer.take() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        while !writer.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        writer.join().is_ok()
    }
}

fn write_loop(mut store: Store, channel: &Channel) {
    let stats = &channel.stats;
    let mut failing = false;
    let mut last_heartbeat: Option<Instant> = None;
    loop {
        let closing = {
            let mut q = channel.lock();
            if !q.closing {
                q = channel
                    .wake
                    .wait_timeout(q, FLUSH_EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            // A batch that failed stays in the store for the retry; take more only after it.
            if !store.has_pending() {
                store.queue_batch(std::mem::take(&mut q.bytes));
            }
            q.closing
        };
        let now_wall = WallClock::now_wall_ns();
        let heartbeat_due =
            closing || last_heartbeat.is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY);
        match store.flush(now_wall).and_then(|()| {
            if heartbeat_due {
                store.heartbeat(now_wall)?;
                last_heartbeat = Some(Instant::now());
            }
            Ok(())
        }) {
            Ok(()) => {
                if failing {
                    warn!("history store: writing again");
                }
                failing = false;
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                // One line per failure episode, not one every 250 ms of a full disk.
                if !failing {
                    warn!("history store: {e} (retrying; new events are dropped once the write queue is full)");
                }
                failing = true;
            }
        }
        stats
            .last_loop_ns
            .store(WallClock::now_mono_ns(), Ordering::Relaxed);
        if closing && (!store.has_pending() || failing) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Limits;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("podlife-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 30,
        max_age_ns: u64::MAX / 2,
        load_bytes: 1 << 30,
        pending_bytes: 1 << 20,
    };

    fn open(d: &std::path::Path) -> (Store, Vec<serde_json::Value>) {
        let mut seen = Vec::new();
        let (s, _) = Store::open(d, LIMITS, 1, |v: serde_json::Value| seen.push(v)).unwrap();
        (s, seen)
    }

    #[test]
    fn lines_reach_the_disk_and_close_flushes_the_rest() {
        let d = dir("flush");
        let (store, _) = open(&d);
        let sink = StoreSink::spawn(store, 1 << 20).unwrap();
        for i in 0..100 {
            sink.append(&format!("{{\"n\":{i}}}"));
        }
        assert!(sink.close(Duration::from_secs(10)));
        let (_, seen) = open(&d);
        let ns: Vec<i64> = seen.iter().map(|v| v["n"].as_i64().unwrap()).collect();
        assert_eq!(ns, (0..100).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_growing() {
        // No writer thread: what a hung disk looks like to the pipeline.
        let sink = StoreSink {
            channel: Arc::new(Channel {
                queue: Mutex::default(),
                wake: Condvar::new(),
                max_bytes: 64,
                stats: Arc::default(),
            }),
            writer: None,
        };
        let line = "x".repeat(20);
        for _ in 0..10 {
            sink.append(&line);
        }
        assert_eq!(
            sink.channel.lock().bytes.len(),
            3 * 21,
            "three lines fit under 64 bytes"
        );
        assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 7);
        assert!(
            sink.close(Duration::from_secs(1)),
            "no writer: nothing to wait for"
        );
    }
}
