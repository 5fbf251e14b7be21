//! The ring-buffer reader: drains on a short adaptive timer (the programs submit without
//! wakeups, which costs a fork storm far less), and at once when the kernel forces a wakeup
//! (OOM kills).

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use podlife_common::decode::{DecodeError, Record};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::kernel::loader::drain_ring;

/// Wraps the ring buffer so tokio can wait for the kernel's (forced) wakeups.
struct RingFd(RingBuf<MapData>);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Next pause: shorter while records keep coming, up to `max` when idle.
pub fn next_pause(current: Duration, read: usize, min: Duration, max: Duration) -> Duration {
    if read > 0 {
        (current / 2).max(min)
    } else {
        (current * 2).min(max)
    }
}

/// Drain forever, handing each batch to `on_batch`. Returns only if the fd breaks.
pub async fn run(
    ring: RingBuf<MapData>,
    min_pause: Duration,
    max_pause: Duration,
    mut on_batch: impl FnMut(Vec<Result<Record, DecodeError>>),
) -> std::io::Result<()> {
    let min = min_pause.min(max_pause);
    // SAFETY: the ring buffer's map fd is owned by `RingFd` and stays open, unchanged, for as
    // long as the AsyncFd that owns it.
    let mut fd = unsafe { AsyncFd::register_with_interest(RingFd(ring), Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let mut pause = max_pause;
    loop {
        let mut batch = Vec::new();
        drain_ring(&mut fd.get_mut().0, &mut |r| batch.push(r));
        let n = batch.len();
        on_batch(batch);
        pause = next_pause(pause, n, min, max_pause);
        tokio::select! {
            guard = fd.readable_mut() => {
                guard?.clear_ready();
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_adapts_to_load() {
        let (min, max) = (Duration::from_millis(1), Duration::from_millis(10));
        let mut p = max;
        for _ in 0..5 {
            p = next_pause(p, 100, min, max);
        }
        assert_eq!(p, min);
        for _ in 0..5 {
            p = next_pause(p, 0, min, max);
        }
        assert_eq!(p, max);
    }
}
