//! Facts the API server tells about a pod that the kernel cannot see: the deletion request that
//! starts a pod's termination (DeletionRequested, source `api`).

use super::*;

/// Deletions of pods not seen yet kept at most (the API can tell before the pod's cgroup exists).
const MAX_PENDING_DELETIONS: usize = 4096;

impl Engine {
    /// The API server accepted the deletion of pod `uid` at `ts_ns` (monotonic; the caller
    /// converts the deletionTimestamp), with the grace period the kubelet was given. Derived once
    /// per pod: the watch repeats the same deletionTimestamp on every later update. A pod not
    /// seen yet gets it when it shows up (released by `expire`).
    pub fn deletion_requested(
        &mut self,
        uid: &str,
        ts_ns: u64,
        grace_period_s: Option<f64>,
    ) -> Vec<LifecycleEvent> {
        let Some(pod) = self.pods.get_mut(uid) else {
            if self.pending_deletions.len() >= MAX_PENDING_DELETIONS {
                self.pending_deletions.clear();
                self.evictions.pending += 1;
            }
            self.pending_deletions
                .insert(uid.to_string(), (ts_ns, grace_period_s));
            return Vec::new();
        };
        if pod.deletion_ns.is_some() {
            return Vec::new();
        }
        pod.deletion_ns = Some(ts_ns);
        if grace_period_s.is_some() {
            // The deletion's grace period replaces the spec's for the kill that may follow.
            pod.meta.grace_period_s = grace_period_s;
        }
        if pod.removed_ns.is_none() && matches!(pod.state, PodState::Pending | PodState::Running) {
            pod.state = PodState::Terminating;
        }
        let mut e = self.event(
            ts_ns,
            uid,
            None,
            LifecycleKind::DeletionRequested { grace_period_s },
        );
        e.source = Source::Api;
        let out = vec![e];
        self.record(&out);
        out
    }

    /// Deletions told before their pod appeared, for the pods that exist now.
    pub(super) fn release_pending_deletions(&mut self, out: &mut Vec<LifecycleEvent>) {
        if self.pending_deletions.is_empty() {
            return;
        }
        let ready: Vec<String> = self
            .pending_deletions
            .keys()
            .filter(|u| self.pods.contains_key(*u))
            .cloned()
            .collect();
        for uid in ready {
            if let Some((ts, grace)) = self.pending_deletions.remove(&uid) {
                out.extend(self.deletion_requested(&uid, ts, grace));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_event::{KernelEvent, KernelEventKind};

    const UID: &str = "0d6c3a4e-2222-4b4b-8c8c-000000000002";

    fn mkdir_pod(ts_ns: u64) -> KernelEvent {
        KernelEvent {
            ts_ns,
            tgid: 1,
            tid: 1,
            cgroup_id: 0,
            comm: "kubelet".into(),
            kind: KernelEventKind::CgroupMkdir {
                root: 0,
                id: 100,
                level: 3,
                path: format!("/kubepods/burstable/pod{UID}"),
            },
        }
    }

    fn engine() -> Engine {
        Engine::new(EngineConfig {
            reorder_window_ns: 0,
            ..EngineConfig::default()
        })
    }

    #[test]
    fn derived_once_with_the_api_source_and_the_pod_terminating() {
        let mut e = engine();
        e.apply(&mkdir_pod(1_000));
        let out = e.deletion_requested(UID, 5_000, Some(30.0));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].source, Source::Api);
        assert_eq!(
            out[0].kind,
            LifecycleKind::DeletionRequested {
                grace_period_s: Some(30.0)
            }
        );
        let v = serde_json::to_value(&out[0]).unwrap();
        assert_eq!(v["type"], "DeletionRequested");
        assert_eq!(v["source"], "api");
        assert_eq!(v["grace_period_s"], 30.0);
        assert_eq!(e.pod_summary(UID).unwrap().state, PodState::Terminating);
        assert_eq!(e.pod_meta(UID).unwrap().grace_period_s, Some(30.0));
        // The watch repeats the deletionTimestamp on every later update of the pod.
        assert!(e.deletion_requested(UID, 5_000, Some(30.0)).is_empty());
        assert_eq!(
            e.timeline_events(UID)
                .iter()
                .filter(|x| x.kind.name() == "DeletionRequested")
                .count(),
            1
        );
    }

    #[test]
    fn a_deletion_before_the_pod_is_released_when_it_appears() {
        let mut e = engine();
        assert!(e.deletion_requested(UID, 500, None).is_empty());
        assert!(e.expire(600).is_empty(), "no pod yet");
        e.apply(&mkdir_pod(1_000));
        let out = e.expire(2_000);
        let del: Vec<_> = out
            .iter()
            .filter(|x| x.kind.name() == "DeletionRequested")
            .collect();
        assert_eq!(del.len(), 1, "{out:?}");
        assert_eq!(del[0].ts_ns, 500);
        // Served in time order: the deletion came before the kubelet made the pod's cgroup.
        let names: Vec<_> = e
            .timeline_events(UID)
            .iter()
            .map(|x| x.kind.name())
            .collect();
        assert_eq!(names, ["DeletionRequested", "PodAdmitted"]);
        assert!(e.expire(3_000).is_empty(), "released once");
    }

    #[test]
    fn a_removed_pod_keeps_its_state() {
        let mut e = engine();
        e.apply(&mkdir_pod(1_000));
        let mut rm = mkdir_pod(2_000);
        if let KernelEventKind::CgroupMkdir {
            root,
            id,
            level,
            path,
        } = rm.kind
        {
            rm.kind = KernelEventKind::CgroupRmdir {
                root,
                id,
                level,
                path,
            };
        }
        e.apply(&rm);
        assert_eq!(e.pod_summary(UID).unwrap().state, PodState::Removed);
        assert_eq!(e.deletion_requested(UID, 1_500, None).len(), 1);
        assert_eq!(e.pod_summary(UID).unwrap().state, PodState::Removed);
    }
}
