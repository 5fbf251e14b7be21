//! Bounds and retention: every map has a limit (the oldest, or the least useful, entry goes
//! first, counted in `Evictions`) and time-based cleanup in `expire`.

use super::*;

/// Sweeps of the process table run at most this often (they walk it).
const SWEEP_EVERY_NS: u64 = 5_000_000_000;

impl Engine {
    /// Drop the oldest process entry. False when there is none.
    pub(super) fn evict_oldest_process(&mut self) -> bool {
        while let Some((pid, seq)) = self.proc_order.pop_front() {
            if self.procs.get(&pid).is_some_and(|p| p.seq == seq) {
                self.procs.remove(&pid);
                self.sessions.remove(&pid);
                self.evictions.processes += 1;
                return true;
            }
        }
        false
    }

    /// Drop one container: of a removed pod first, else an exited one, else the oldest.
    pub(super) fn evict_container(&mut self) -> bool {
        let pick = |f: &dyn Fn(&Container) -> bool| {
            self.container_order
                .iter()
                .position(|id| self.containers.get(id).is_some_and(|c| f(c)))
        };
        let removed_pod = |c: &Container| {
            self.pods
                .get(&c.pod_uid)
                .is_none_or(|p| p.removed_ns.is_some())
        };
        let at = pick(&removed_pod)
            .or_else(|| pick(&|c: &Container| c.exited_ns.is_some()))
            .or(if self.container_order.is_empty() {
                None
            } else {
                Some(0)
            });
        let Some(id) = at.and_then(|i| self.container_order.remove(i)) else {
            return false;
        };
        if let Some(c) = self.containers.remove(&id) {
            if let Some(p) = self.pods.get_mut(&c.pod_uid) {
                p.containers.retain(|x| *x != id);
            }
        }
        self.evictions.containers += 1;
        true
    }

    /// Retention: removed pods, removed cgroups, processes of containers whose cgroup is gone
    /// (a cgroup cannot be removed while a task is in it), placeholders and signal facts that no
    /// exit came to use, exit tombstones, stale exec sessions.
    pub(super) fn sweep(&mut self, now: u64) {
        let keep_pods = self.cfg.removed_pod_retention_ns;
        let old: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| {
                p.removed_ns
                    .is_some_and(|t| now.saturating_sub(t) > keep_pods)
            })
            .map(|(u, _)| u.clone())
            .collect();
        for uid in old {
            self.forget_pod(&uid);
        }
        if now.saturating_sub(self.last_sweep_ns) < SWEEP_EVERY_NS {
            return;
        }
        self.last_sweep_ns = now;
        self.cgroups.retain(|_, c| {
            c.removed_ns
                .is_none_or(|t| now.saturating_sub(t) <= keep_pods)
        });
        let ids: std::collections::HashSet<u64> = self.cgroups.keys().copied().collect();
        self.cgroup_order.retain(|id| ids.contains(id));
        let keep_exited = self.cfg.exited_process_retention_ns;
        let keep_signal = self.cfg.signal_retention_ns;
        let gone = |c: Option<&Container>| {
            c.is_none_or(|c| {
                c.cgroup_removed_ns
                    .is_some_and(|t| now.saturating_sub(t) > keep_exited)
            })
        };
        let containers = &self.containers;
        self.procs.retain(|_, p| {
            if p.placeholder {
                return now.saturating_sub(p.seen_ns) <= keep_signal;
            }
            p.container_id
                .as_ref()
                .is_none_or(|c| !gone(containers.get(&**c).map(|b| &**b)))
        });
        for p in self.procs.values_mut() {
            if p.kill
                .as_ref()
                .is_some_and(|k| now.saturating_sub(k.ts) > keep_signal)
            {
                p.kill = None;
            }
        }
        let procs = &self.procs;
        self.sessions.retain(|pid, _| procs.contains_key(pid));
        self.proc_order
            .retain(|(pid, seq)| procs.get(pid).is_some_and(|p| p.seq == *seq));
        self.exited
            .retain(|_, t| now.saturating_sub(*t) <= keep_exited);
        let exited = &self.exited;
        self.exited_order
            .retain(|(pid, t)| exited.get(pid) == Some(t));
        self.recent_ooms
            .retain(|_, (_, t)| now.saturating_sub(*t) <= keep_exited);
        self.oom_groups
            .retain(|_, (t, _)| now.saturating_sub(*t) <= keep_exited);
    }
}
