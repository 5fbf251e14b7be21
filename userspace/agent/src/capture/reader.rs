//! The ring-buffer reader: its own OS thread, which takes no lock and does nothing but decode,
//! so neither HTTP load nor a slow pipeline can starve it. It drains on a fixed timer (10 ms by
//! default), and at once when the kernel forces a wakeup (pod and container cgroups, OOM kills).
//! The timer does not shorten under load: every wakeup of the agent on a busy node preempts a
//! workload thread, and draining a storm every 1 ms cost a pod's fork+exec storm ~12 % of its
//! throughput against ~1 % at 10 ms (docs/BENCHMARKS.md); 8 MiB of ring holds far more than
//! 10 ms of the worst storm measured. While the ring stays empty the pause doubles up to
//! 100 ms: an idle node's reader wakes 10 times a second instead of 100, and those wakeups
//! cost a host fork+exec churn ~3 % (docs/BENCHMARKS.md). The first records after a quiet
//! spell then wait up to 100 ms, unless they are lifecycle steps the kernel wakes us for.
//! Batches go to the pipeline through a bounded channel; when the pipeline falls behind,
//! records wait in the ring, where the kernel counts any loss.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use podlife_common::decode::{DecodeError, Record};

use crate::capture::loader::drain_ring;
use crate::node::clock::WallClock;
use crate::progress::Progress;

pub type Batch = Vec<Result<Record, DecodeError>>;

/// Records per batch at most: with `CHANNEL_BATCHES` this bounds what waits between the reader
/// and the pipeline (the ring buffer holds the rest).
pub const MAX_BATCH: usize = 4096;
/// Batches the channel to the pipeline holds.
pub const CHANNEL_BATCHES: usize = 4;
/// How soon a batch the full channel refused is offered again.
const RETRY: Duration = Duration::from_millis(1);
/// The longest pause while the ring stays empty.
const IDLE_PAUSE_MAX: Duration = Duration::from_millis(100);
/// Below this ring size the pause never grows: a small ring could fill in a long pause.
const IDLE_BACKOFF_MIN_RING: u32 = 1 << 20;

/// The pause after a drain that read `n` records, following `last`: the drain period while
/// records come, doubling up to `idle_max` while none do.
pub fn next_pause(last: Duration, n: usize, pause: Duration, idle_max: Duration) -> Duration {
    if n > 0 {
        pause
    } else {
        (last * 2).clamp(pause, idle_max.max(pause))
    }
}

/// How long the reader may pause while the ring stays empty, for a ring of `ring_bytes`.
pub fn idle_pause_max(pause: Duration, ring_bytes: u32) -> Duration {
    if ring_bytes >= IDLE_BACKOFF_MIN_RING {
        IDLE_PAUSE_MAX.max(pause)
    } else {
        pause
    }
}

/// Start the reader thread. It stops when `stop` is set or the pipeline hangs up.
pub fn spawn(
    mut ring: RingBuf<MapData>,
    pause: Duration,
    idle_max: Duration,
    to_pipeline: SyncSender<Batch>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let wakeups = Wakeups::new(ring.as_raw_fd())?;
    std::thread::Builder::new()
        .name("ring-reader".into())
        .spawn(move || {
            crate::node::sched::no_wakeup_preemption("ring-reader");
            let mut waiting: Option<Batch> = None;
            let mut wait = pause;
            while !stop.load(Ordering::Relaxed) {
                progress.reader_loop(WallClock::now_mono_ns());
                let batch = waiting.take().unwrap_or_else(|| {
                    let mut batch = Vec::new();
                    drain_ring(&mut ring, MAX_BATCH, &mut |r| batch.push(r));
                    batch
                });
                let n = batch.len();
                if n > 0 {
                    match to_pipeline.try_send(batch) {
                        Ok(()) => {}
                        Err(TrySendError::Full(batch)) => waiting = Some(batch),
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
                // A full batch means more is waiting: read on at once. A full channel: the
                // pipeline is behind, and records are better kept in the ring meanwhile.
                if waiting.is_some() {
                    std::thread::sleep(RETRY.min(pause));
                } else if n < MAX_BATCH {
                    wait = next_pause(wait, n, pause, idle_max);
                    wakeups.wait(wait);
                }
            }
        })
}

/// Waits for the kernel's wakeups of the ring buffer's readers, edge-triggered: records the
/// programs submit without a wakeup must not end the pause (level-triggered poll would return
/// at once whenever one is waiting, and a storm would spin the reader on one-record batches).
struct Wakeups(std::os::fd::OwnedFd);

impl Wakeups {
    fn new(ring_fd: i32) -> std::io::Result<Self> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain syscalls; the returned fd is owned from here on.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ep = unsafe { std::os::fd::OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: valid epoll fd and event; the ring fd outlives the reader thread.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, ring_fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(ep))
    }

    /// Sleep up to `timeout`, less when the kernel forces a wakeup. A signal just ends it early.
    fn wait(&self, timeout: Duration) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        let ms = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        // SAFETY: one event slot for the duration of the call.
        unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut ev, 1, ms) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_pause_grows_while_the_ring_is_empty_and_snaps_back_on_records() {
        let (pause, max) = (10 * MS, 100 * MS);
        let mut w = pause;
        let mut seen = Vec::new();
        for _ in 0..6 {
            w = next_pause(w, 0, pause, max);
            seen.push(w.as_millis());
        }
        assert_eq!(seen, [20, 40, 80, 100, 100, 100]);
        assert_eq!(
            next_pause(w, 1, pause, max),
            pause,
            "a record ends the quiet spell"
        );
        // A drain period longer than the cap is kept as it is.
        assert_eq!(next_pause(200 * MS, 0, 200 * MS, max), 200 * MS);
    }

    #[test]
    fn a_small_ring_keeps_the_drain_period() {
        assert_eq!(idle_pause_max(10 * MS, 8 << 20), 100 * MS);
        assert_eq!(idle_pause_max(10 * MS, 8192), 10 * MS);
        assert_eq!(idle_pause_max(200 * MS, 8 << 20), 200 * MS);
    }
}
