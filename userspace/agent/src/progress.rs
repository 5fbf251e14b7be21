//! Liveness that means something: the threads the agent cannot work without (the ring-buffer
//! reader, the pipeline that applies its batches and fires time-based rules) stamp each loop here,
//! and /healthz fails when one of them has stopped (died, or blocked), so the kubelet restarts
//! the agent instead of trusting a process that serves stale timelines.

use std::sync::atomic::{AtomicU64, Ordering};

/// A thread is stalled after this long without a loop (the reader loops every ≤ 10 ms, the
/// pipeline every ≤ 250 ms).
pub const STALL_NS: u64 = 10_000_000_000;

#[derive(Debug, Default)]
pub struct Progress {
    reader: AtomicU64,
    pipeline: AtomicU64,
}

impl Progress {
    pub fn reader_loop(&self, now_mono_ns: u64) {
        self.reader.store(now_mono_ns, Ordering::Relaxed);
    }

    pub fn pipeline_loop(&self, now_mono_ns: u64) {
        self.pipeline.store(now_mono_ns, Ordering::Relaxed);
    }

    /// The first task that has not looped for `STALL_NS`, with how long; tasks that have not
    /// started yet (0) are not judged: readiness covers the start.
    pub fn stalled(&self, now_mono_ns: u64) -> Option<(&'static str, u64)> {
        [
            ("ring-buffer reader", &self.reader),
            ("pipeline", &self.pipeline),
        ]
        .into_iter()
        .find_map(|(name, last)| {
            let last = last.load(Ordering::Relaxed);
            let idle = now_mono_ns.saturating_sub(last);
            (last != 0 && idle > STALL_NS).then_some((name, idle))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_that_stops_looping_is_named_and_one_not_started_is_not() {
        let p = Progress::default();
        assert_eq!(p.stalled(u64::MAX / 2), None, "nothing started yet");
        p.reader_loop(1_000);
        p.pipeline_loop(1_000);
        assert_eq!(p.stalled(1_000 + STALL_NS), None);
        p.pipeline_loop(2 * STALL_NS);
        let (name, idle) = p.stalled(2 * STALL_NS).expect("reader stalled");
        assert_eq!((name, idle), ("ring-buffer reader", 2 * STALL_NS - 1_000));
        p.reader_loop(2 * STALL_NS);
        assert_eq!(p.stalled(2 * STALL_NS + 1), None);
    }
}
