//! The pipeline: one OS thread that applies the reader's batches to the engine and fires the
//! time-based rules every 250 ms (loss accounting, rescans after loss, expiry, metrics). It
//! publishes to history, metrics, the store's queue and the live broadcast, none of which waits
//! for a disk or a client. HTTP handlers share its state through a lock held for short reads;
//! the ring reader never takes it.

pub mod cri_apply;
pub mod enrich;
pub mod facts;
pub mod history;
pub mod loss;
pub mod metrics;
pub mod pod_series;
pub mod probe_lookups;
pub mod seed;
pub mod shared;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use podlife_common::Counter;
use podlife_core::KernelEventKind;
use tracing::{info, warn};

use crate::capture::convert::to_kernel_event;
use crate::capture::loader::Capture;
use crate::capture::reader::Batch;
use crate::node::cgroupfs::CgroupMounts;
use crate::node::clock::WallClock;
use crate::node::cri::CriAsk;
use crate::pipeline::shared::Shared;

const TICK: Duration = Duration::from_millis(250);
/// Lost records may include the mkdir of a pod: cgroupfs and /proc are scanned again after
/// loss, at most this often.
const RESCAN_EVERY: Duration = Duration::from_secs(5);

pub struct Pipeline {
    pub shared: Arc<Shared>,
    pub capture: Capture,
    pub mounts: CgroupMounts,
    pub batches: Receiver<Batch>,
    pub cri: tokio::sync::mpsc::Sender<CriAsk>,
    /// The reader's drain period: batches come at least this often while events do.
    pub drain: Duration,
    /// When (monotonic ns) the newest held lifecycle step the kernel woke the reader for (a
    /// pod or container cgroup's mkdir or rmdir, an OOM kill) is due; 0 when none is held.
    pub urgent_due: u64,
}

/// At most this many events held in the reorder window: a lone step (a pod's cgroup, an OOM
/// kill), released when due. More: a stream, which the next batch releases, so the pipeline
/// does not wake once more per batch for it.
const LONE_EVENTS: usize = 32;

impl Pipeline {
    /// Run until the reader hangs up (shutdown), then release what the engine holds back.
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        crate::node::sched::no_wakeup_preemption("pipeline");
        let mut next_tick = Instant::now();
        let mut lost_seen = 0u64;
        let mut rescan = Rescan::default();
        let mut trim = crate::heap::Trim::default();
        loop {
            // Wake for the tick, or sooner when an event held in the engine's reorder window is
            // due: batches come every drain period, and a lone pod creation (the kernel wakes
            // the reader for it) would otherwise wait for the next one.
            let wait = next_tick
                .saturating_duration_since(Instant::now())
                .min(self.until_release());
            match self.batches.recv_timeout(wait) {
                Ok(batch) => self.apply(batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            facts::apply_pending(&self.shared);
            self.release_due();
            if Instant::now() >= next_tick {
                self.tick(&mut lost_seen, &mut rescan);
                trim.maybe();
                next_tick = Instant::now() + TICK;
            }
            self.shared.progress.pipeline_loop(WallClock::now_mono_ns());
            if !self.shared.ready.swap(true, Ordering::AcqRel) {
                self.shared.lock().metrics.ready.set(1);
                info!("ready: ring-buffer reader and pipeline running");
            }
        }
        let mut inner = self.shared.lock();
        let rest = inner.engine.flush();
        inner.publish(rest);
        inner.finish_loss();
        inner.tick(WallClock::now_mono_ns());
    }

    /// How long to wait for the engine's held events (`TICK` when none is held): until the
    /// oldest is due when few are held; in a stream, until a held lifecycle step is due, else
    /// two drain periods (the next batch releases the stream; two, so that a batch a little
    /// late does not find the timer fired first). At least 1 ms, so that nothing the engine
    /// keeps past its due time can spin this loop.
    fn until_release(&self) -> Duration {
        let inner = self.shared.lock();
        let Some(due) = inner.engine.next_release_ns() else {
            return TICK;
        };
        let held = inner.engine.held_events();
        drop(inner);
        let now = WallClock::now_mono_ns();
        let wait = if held <= LONE_EVENTS {
            Duration::from_nanos(due.saturating_sub(now))
        } else if self.urgent_due > now {
            Duration::from_nanos(self.urgent_due - now)
        } else {
            self.drain * 2
        };
        wait.max(Duration::from_millis(1))
    }

    /// Release what the reorder window holds once it is due, between batches.
    fn release_due(&mut self) {
        let now = WallClock::now_mono_ns();
        let s = &self.shared;
        let mut inner = s.lock();
        if now >= self.urgent_due {
            self.urgent_due = 0;
        }
        if inner.engine.next_release_ns().is_none_or(|due| due > now) {
            return;
        }
        let released = inner.engine.expire(now);
        inner.publish(released);
        self.send_out(inner);
    }

    /// Decode, convert, apply; release what the engine's reorder window holds back now rather
    /// than at the tick.
    fn apply(&mut self, batch: Batch) {
        let s = &self.shared;
        let mut inner = s.lock();
        let window = inner.engine.reorder_window_ns();
        for r in batch {
            inner.metrics.ringbuf_events.inc();
            match r {
                Ok(rec) => {
                    let ev = to_kernel_event(&rec);
                    if matches!(
                        ev.kind,
                        KernelEventKind::CgroupMkdir { .. }
                            | KernelEventKind::CgroupRmdir { .. }
                            | KernelEventKind::OomVictim { .. }
                    ) {
                        self.urgent_due = self.urgent_due.max(ev.ts_ns.saturating_add(window));
                    }
                    inner.on_kernel_event(ev)
                }
                Err(_) => inner.metrics.decode_errors.inc(),
            }
        }
        let released = inner.engine.expire(WallClock::now_mono_ns());
        inner.publish(released);
        self.send_out(inner);
    }

    /// Hand what the engine derived to live streams and the CRI asks to the runtime client,
    /// after the lock is let go.
    fn send_out(&self, mut inner: std::sync::MutexGuard<'_, crate::pipeline::shared::Inner>) {
        let out = std::mem::take(&mut inner.outbox);
        let ask = std::mem::take(&mut inner.cri_queue);
        drop(inner);
        for ev in out {
            let _ = self.shared.live.send(ev);
        }
        for id in ask {
            let _ = self.cri.try_send(id);
        }
    }

    fn tick(&mut self, lost_seen: &mut u64, rescan: &mut Rescan) {
        let lost = self.capture.counter(Counter::RingbufLost);
        rescan.due |= lost > *lost_seen;
        let found = rescan
            .now()
            .then(|| crate::pipeline::seed::track_existing(&mut self.capture, &self.mounts));
        let s = &self.shared;
        let mut inner = s.lock();
        inner.facts_dropped = s.facts.dropped();
        if let Some((cgroups, procs)) = found {
            crate::pipeline::enrich::bootstrap_engine(
                &mut inner,
                &cgroups,
                &procs,
                WallClock::now_mono_ns(),
            );
        }
        let new_loss = lost.saturating_sub(*lost_seen);
        if new_loss > 0 {
            inner.metrics.ringbuf_lost.inc_by(new_loss);
            warn!(
                lost = new_loss,
                "ring buffer full: events lost (raise --ringbuf-bytes)"
            );
            *lost_seen = lost;
        }
        inner.loss_tick(new_loss, WallClock::now_mono_ns());
        inner.tick(WallClock::now_mono_ns());
        let out = std::mem::take(&mut inner.outbox);
        let addrs = std::mem::take(&mut inner.pod_addr_changes);
        drop(inner);
        for (addr, add) in addrs {
            let r = if add {
                self.capture.add_pod_address(addr)
            } else {
                self.capture.remove_pod_address(addr)
            };
            if let Err(e) = r {
                warn!(%addr, add, "pod address not updated in the reset filter: {e}");
            }
        }
        for ev in out {
            let _ = s.live.send(ev);
        }
    }
}

/// A rescan wanted after loss, run at most every `RESCAN_EVERY`.
#[derive(Default)]
struct Rescan {
    due: bool,
    last: Option<Instant>,
}

impl Rescan {
    fn now(&mut self) -> bool {
        if !self.due || self.last.is_some_and(|t| t.elapsed() <= RESCAN_EVERY) {
            return false;
        }
        self.due = false;
        self.last = Some(Instant::now());
        true
    }
}
