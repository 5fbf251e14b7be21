//! Which pods to ask the API server about after the kernel saw a kubelet network probe fail
//! (`--kube-api`): the kubelet's `Unhealthy` Events say what the kernel cannot see (an HTTP
//! status). Asked per pod, never cluster-wide; at most one lookup per pod per 10 s, through a
//! bounded queue that the pipeline never waits on (kube/unhealthy.rs does the asking).

use std::collections::HashMap;

use podlife_core::{LifecycleEvent, LifecycleKind, ProbeKind};
use tokio::sync::mpsc;

/// Lookups waiting for the API task; beyond, they are dropped (counted).
pub const QUEUE: usize = 256;
/// One lookup per pod per this much kernel time.
pub const PER_POD_NS: u64 = 10_000_000_000;
/// Pods whose last lookup is remembered; at the bound all are forgotten (counted).
pub const MAX_PODS: usize = 4096;

/// A pod to look up.
#[derive(Debug)]
pub struct Lookup {
    pub namespace: String,
    pub uid: String,
    /// When it was queued: the task waits a little after it, for the kubelet to post.
    pub queued: tokio::time::Instant,
}

/// What became of an offered probe failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The pod was looked up less than 10 s ago.
    Limited,
    /// The queue was full (or its task gone).
    Dropped,
}

pub struct ProbeLookups {
    tx: mpsc::Sender<Lookup>,
    /// Pod uid → kernel ns of its last queued lookup.
    last: HashMap<String, u64>,
    /// Times `last` was cleared at its bound.
    pub evicted: u64,
}

/// A network probe failure the kernel saw: its lookup may add the kubelet's message. Exec
/// probes are left out: the kernel has their exit code.
pub fn wants_lookup(e: &LifecycleEvent) -> bool {
    matches!(
        e.kind,
        LifecycleKind::ProbeFailed {
            probe_kind: ProbeKind::Tcp | ProbeKind::Http | ProbeKind::Grpc,
            ..
        }
    )
}

impl ProbeLookups {
    pub fn new(tx: mpsc::Sender<Lookup>) -> Self {
        Self {
            tx,
            last: HashMap::new(),
            evicted: 0,
        }
    }

    /// Queue a lookup of pod `uid` in `namespace` at kernel time `now_ns`, unless it had one
    /// within PER_POD_NS or the queue is full.
    pub fn offer(&mut self, namespace: &str, uid: &str, now_ns: u64) -> Offer {
        if self
            .last
            .get(uid)
            .is_some_and(|t| now_ns.saturating_sub(*t) < PER_POD_NS)
        {
            return Offer::Limited;
        }
        let lookup = Lookup {
            namespace: namespace.to_string(),
            uid: uid.to_string(),
            queued: tokio::time::Instant::now(),
        };
        if self.tx.try_send(lookup).is_err() {
            // Not remembered: the pod's next failure tries again.
            return Offer::Dropped;
        }
        if self.last.len() >= MAX_PODS && !self.last.contains_key(uid) {
            self.last.clear();
            self.evicted += 1;
        }
        self.last.insert(uid.to_string(), now_ns);
        Offer::Queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn one_lookup_per_pod_per_ten_seconds() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let mut l = ProbeLookups::new(tx);
        assert_eq!(l.offer("shop", "a", 100 * SEC), Offer::Queued);
        for t in [100 * SEC, 101 * SEC, 109 * SEC + SEC / 2] {
            assert_eq!(l.offer("shop", "a", t), Offer::Limited);
        }
        assert_eq!(
            l.offer("shop", "b", 101 * SEC),
            Offer::Queued,
            "another pod"
        );
        assert_eq!(l.offer("shop", "a", 110 * SEC), Offer::Queued);
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|x| format!("{}/{}", x.namespace, x.uid))
            .collect();
        assert_eq!(got, ["shop/a", "shop/b", "shop/a"]);
    }

    #[test]
    fn a_full_queue_drops_and_forgets_nothing_it_did_not_send() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut l = ProbeLookups::new(tx);
        assert_eq!(l.offer("ns", "a", SEC), Offer::Queued);
        assert_eq!(l.offer("ns", "b", SEC), Offer::Queued);
        assert_eq!(l.offer("ns", "c", SEC), Offer::Dropped);
        rx.try_recv().unwrap();
        // Dropped, not limited: the next failure of c is asked for at once.
        assert_eq!(l.offer("ns", "c", SEC + 1), Offer::Queued);
        drop(rx);
        assert_eq!(l.offer("ns", "d", SEC), Offer::Dropped, "the task is gone");
    }

    #[test]
    fn the_pod_map_is_bounded() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let mut l = ProbeLookups::new(tx);
        for i in 0..MAX_PODS + 1 {
            assert_eq!(l.offer("ns", &format!("pod-{i}"), SEC), Offer::Queued);
            while rx.try_recv().is_ok() {}
        }
        assert_eq!(l.evicted, 1);
        assert!(l.last.len() <= MAX_PODS);
        // Forgotten: asked again.
        assert_eq!(l.offer("ns", "pod-0", SEC), Offer::Queued);
    }

    #[test]
    fn network_probe_failures_only() {
        let failed = |probe_kind| LifecycleEvent {
            ts_ns: 1,
            pod_uid: "u".into(),
            container_id: None,
            container: None,
            source: podlife_core::Source::Kernel,
            kind: LifecycleKind::ProbeFailed {
                argv: Vec::new(),
                exit_code: None,
                timed_out: false,
                probe: None,
                consecutive_failures: 1,
                probe_kind,
                port: Some(8080),
                reason: podlife_core::ProbeFailReason::ConnectionRefused,
            },
        };
        for k in [ProbeKind::Tcp, ProbeKind::Http, ProbeKind::Grpc] {
            assert!(wants_lookup(&failed(k)));
        }
        assert!(!wants_lookup(&failed(ProbeKind::Exec)));
        let mut other = failed(ProbeKind::Tcp);
        other.kind = LifecycleKind::PodAdmitted;
        assert!(!wants_lookup(&other));
    }
}
