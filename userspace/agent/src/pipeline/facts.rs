//! Metadata facts on their way to the pipeline thread: what the CRI answers (grace periods,
//! preStop handlers, pod names) and what the API watch tells (names, owners, probe specs,
//! deletion requests). Their tasks hand them over through a bounded queue instead of writing
//! into the shared state: the pipeline thread is the one writer of the engine, and applies them
//! with the kernel's batches (within one tick, 250 ms). A full queue drops the newest fact and
//! counts it (`podlife_evictions_total{what="facts"}`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;

use podlife_core::{ContainerMeta, PodMeta};

use crate::node::cri::SandboxNames;
use crate::pipeline::shared::{Inner, Shared};

/// Facts waiting at most: a burst of pod starts asks the CRI once per container.
const CAPACITY: usize = 4096;

/// The API server accepted the pod's deletion.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    /// Wall-clock ns of the request: deletionTimestamp minus deletionGracePeriodSeconds (the
    /// API server sets deletionTimestamp to the end of the grace period, not to the request).
    pub requested_wall_ns: i128,
    pub grace_period_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub uid: String,
    pub meta: PodMeta,
    /// (container id as the runtime and the cgroup path name it, what the spec says of it).
    pub containers: Vec<(String, ContainerMeta)>,
    pub deletion: Option<Deletion>,
}

pub enum Fact {
    /// The CRI's grace period and preStop handler of a container.
    CriContainer { id: String, meta: ContainerMeta },
    /// The CRI's names of pod `uid`'s sandbox (None: it had none).
    CriSandbox {
        uid: String,
        names: Option<SandboxNames>,
    },
    /// One pod of the API watch.
    Pod(Box<PodFacts>),
    /// The kubelet's Unhealthy Events of pod `uid` (kube/unhealthy.rs).
    Unhealthy {
        uid: String,
        events: Vec<podlife_core::UnhealthyEvent>,
    },
}

pub struct FactQueue {
    tx: SyncSender<Fact>,
    rx: Mutex<Receiver<Fact>>,
    dropped: AtomicU64,
}

impl Default for FactQueue {
    fn default() -> Self {
        let (tx, rx) = sync_channel(CAPACITY);
        Self {
            tx,
            rx: Mutex::new(rx),
            dropped: AtomicU64::new(0),
        }
    }
}

impl FactQueue {
    /// Queue a fact without waiting; false (and counted) when the queue is full.
    pub fn send(&self, fact: Fact) -> bool {
        match self.tx.try_send(fact) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The facts queued now (at most what was queued when it started: senders cannot keep
    /// the caller here).
    fn take(&self) -> Vec<Fact> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        rx.try_iter().take(CAPACITY).collect()
    }
}

/// Apply the queued facts under one lock; the events they derive (DeletionRequested) go to the
/// live stream after it. The pipeline calls this every loop; tests without a pipeline too.
pub fn apply_pending(shared: &Shared) {
    let facts = shared.facts.take();
    if facts.is_empty() {
        return;
    }
    let mut inner = shared.lock();
    for f in facts {
        apply(&mut inner, f);
    }
    let out = std::mem::take(&mut inner.outbox);
    drop(inner);
    for ev in out {
        let _ = shared.live.send(ev);
    }
}

fn apply(inner: &mut Inner, fact: Fact) {
    match fact {
        Fact::CriContainer { id, meta } => {
            crate::pipeline::cri_apply::apply_container(inner, id, meta)
        }
        Fact::CriSandbox { uid, names } => {
            crate::pipeline::cri_apply::apply_sandbox_names(inner, &uid, names)
        }
        Fact::Pod(facts) => apply_pod(inner, *facts),
        Fact::Unhealthy { uid, events } => {
            let out = inner.engine.probe_unhealthy(&uid, &events);
            inner.publish(out);
        }
    }
}

/// Hand one pod's facts to the engine; a deletion request becomes a timeline event.
pub fn apply_pod(inner: &mut Inner, facts: PodFacts) {
    inner.engine.set_pod_metadata(&facts.uid, facts.meta);
    for (id, meta) in facts.containers {
        inner.engine.set_container_metadata(&id, meta);
    }
    let Some(d) = facts.deletion else {
        return;
    };
    // The engine keeps time on the kernel's monotonic clock; a request from before this boot
    // cannot concern a pod running here.
    let Ok(mono) = u64::try_from(d.requested_wall_ns - inner.clock.offset_ns) else {
        tracing::debug!(uid = %facts.uid, "deletion requested before this boot: ignored");
        return;
    };
    let out = inner
        .engine
        .deletion_requested(&facts.uid, mono, d.grace_period_s);
    inner.publish(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_and_a_drain_is_bounded() {
        let q = FactQueue::default();
        let fact = |i: usize| Fact::CriSandbox {
            uid: format!("u{i}"),
            names: None,
        };
        for i in 0..CAPACITY {
            assert!(q.send(fact(i)));
        }
        assert!(!q.send(fact(CAPACITY)), "full");
        assert_eq!(q.dropped(), 1);
        let taken = q.take();
        assert_eq!(taken.len(), CAPACITY);
        assert!(matches!(&taken[0], Fact::CriSandbox { uid, .. } if uid == "u0"));
        assert!(q.take().is_empty());
        assert!(q.send(fact(0)), "room again");
    }
}
