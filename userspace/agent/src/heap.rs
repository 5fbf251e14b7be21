//! Give freed heap memory back to the kernel after bursts.
//!
//! glibc keeps what a burst freed (a storm's queued batches, a large /events page) in its
//! arenas, so the agent's RSS, which its memory limit counts, stays at the burst's high-water
//! mark. `malloc_trim` returns the free pages; it walks the free lists only, a fraction of a
//! millisecond for the agent's heap, so the pipeline calls it every few seconds.

use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Trim {
    last: Option<Instant>,
}

impl Trim {
    /// Trim when the last trim is `EVERY` old.
    pub fn maybe(&mut self) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < EVERY) {
            return;
        }
        self.last = Some(now);
        release_free_memory();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim has no preconditions; it only takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
