//! Signals and OOM kills: the runtime's stop request to a container init (StopRequested), the
//! kernel dropping it because PID 1 has no handler (StopSignalIgnored), the runtime's SIGKILL
//! after the grace period (GracePeriodOverrun), and OOM victims (OOMKill) with the limit scope
//! the agent read from cgroupfs. Every fatal-looking signal is remembered on its target until
//! the exit it explains.

use super::*;
use crate::kernel_event::SignalResult;

const SIGKILL: i32 = 9;

/// Signals that never end a process: not worth remembering as a cause of death.
fn harmless(sig: i32) -> bool {
    // 0 (probe), SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH
    matches!(sig, 0 | 17 | 18 | 19 | 20 | 21 | 22 | 23 | 28)
}

/// comm of container runtimes, shims and their monitors: their signals are the runtime's.
pub(super) fn is_runtime_comm(comm: &str) -> bool {
    [
        "runc",
        "crun",
        "runsc",
        "youki",
        "conmon",
        "containerd-shim",
        "containerd",
        "crio",
        "dockerd",
    ]
    .iter()
    .any(|r| comm.starts_with(r))
}

impl Engine {
    pub(super) fn on_signal(&mut self, ev: &KernelEvent, out: &mut Vec<LifecycleEvent>) {
        let KernelEventKind::SignalGenerate {
            sig,
            target_pid,
            code,
            result,
            target_comm,
            ..
        } = &ev.kind
        else {
            return;
        };
        let (sig, target) = (*sig, *target_pid);
        if harmless(sig) {
            return;
        }
        let sender = Sender {
            pid: ev.tgid,
            comm: ev.comm.to_string(),
        };
        let sender_container = self.container_of(ev.tgid, ev.cgroup_id);
        let target_container = self.procs.get(&target).and_then(|p| p.container_id.clone());
        let from_runtime = is_runtime_comm(&ev.comm)
            && (sender_container.is_none() || sender_container != target_container);
        let known = self.procs.contains_key(&target);
        if !known {
            if target_container.is_none() && sender_container.is_none() && !from_runtime {
                return; // host to host
            }
            self.failures.unknown_process += 1;
        }
        let p = self.proc_mut(target, target_comm, ev.ts_ns);
        if p.comm.is_empty() {
            p.comm = *target_comm;
        }
        p.placeholder |= !known;
        p.kill = Some(Kill {
            ts: ev.ts_ns,
            sig,
            sender: sender.clone(),
            code: *code,
            from_runtime,
        });
        if !from_runtime {
            return;
        }
        let Some(cid) = target_container else {
            return;
        };
        self.stop_signal(ev.ts_ns, &cid, target, sig, *result, sender, out);
    }

    /// The runtime signalled a container's init: a stop request, or the kill that ends it.
    #[allow(clippy::too_many_arguments)]
    fn stop_signal(
        &mut self,
        ts: u64,
        cid: &str,
        target: u32,
        sig: i32,
        result: SignalResult,
        sender: Sender,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(c) = self.containers.get_mut(cid) else {
            return;
        };
        if c.init_pid != Some(target) || c.exited_ns.is_some() || c.is_sandbox() {
            return;
        }
        let uid = c.pod_uid.clone();
        if let Some(stop) = c.stop.clone() {
            if sig == SIGKILL && stop.sig != SIGKILL {
                let observed = ts.saturating_sub(stop.ts) as f64 / 1e9;
                let configured = c
                    .meta
                    .grace_period_s
                    .or_else(|| self.pods.get(&uid).and_then(|p| p.meta.grace_period_s));
                out.push(self.event(
                    ts,
                    &uid,
                    Some(cid),
                    LifecycleKind::GracePeriodOverrun {
                        observed_grace_s: (observed * 1000.0).round() / 1000.0,
                        configured_grace_s: configured,
                    },
                ));
            }
            return;
        }
        c.stop = Some(StopRequest { ts, sig });
        if let Some(pod) = self.pods.get_mut(&uid) {
            if pod.state == PodState::Running || pod.state == PodState::Pending {
                pod.state = PodState::Terminating;
            }
        }
        self.sleep_prestop(ts, &uid, cid, out);
        self.http_prestop_at_stop(ts, &uid, cid, out);
        out.push(self.event(
            ts,
            &uid,
            Some(cid),
            LifecycleKind::StopRequested {
                signal: signal_name(sig),
                sender,
                pid: target,
            },
        ));
        if result == SignalResult::Ignored {
            out.push(self.event(
                ts,
                &uid,
                Some(cid),
                LifecycleKind::StopSignalIgnored {
                    signal: signal_name(sig),
                    pid: target,
                },
            ));
        }
    }

    pub(super) fn on_oom(&mut self, ev: &KernelEvent, out: &mut Vec<LifecycleEvent>) {
        let KernelEventKind::OomVictim { pid, info } = &ev.kind else {
            return;
        };
        let pid = *pid;
        let crate::OomVictimInfo {
            victim_comm,
            total_vm_kb,
            anon_rss_kb,
            file_rss_kb,
            shmem_rss_kb,
            oom_score_adj,
            ..
        } = &**info;
        // The kill usually runs in the victim's own context: then its cgroup is the event's.
        let cid = self
            .procs
            .get(&pid)
            .and_then(|p| p.container_id.clone())
            .or_else(|| {
                (ev.tgid == pid)
                    .then(|| self.container_of(pid, ev.cgroup_id))
                    .flatten()
            });
        let known = self.procs.contains_key(&pid);
        let memcg = self.oom_memcg_hints.remove(&pid).unwrap_or_default();
        let p = self.proc_mut(pid, victim_comm.as_deref().unwrap_or(""), ev.ts_ns);
        p.oom = true;
        p.placeholder &= known;
        if p.container_id.is_none() {
            p.container_id.clone_from(&cid);
        }
        let comm = victim_comm
            .map(String::from)
            .or_else(|| (!p.comm.is_empty()).then(|| p.comm.to_string()));
        let Some((cid, c)) = cid.and_then(|id| self.containers.get(&*id).map(|c| (id, c))) else {
            self.failures.oom_unattributed += 1;
            return;
        };
        let uid = c.pod_uid.clone();
        let victim_is_init = c.init_pid == Some(pid);
        let scope = self.oom_scope_hints.remove(&pid);
        if scope.is_none() {
            self.recent_ooms.insert(pid, (uid.clone(), ev.ts_ns));
        }
        let scope = scope.unwrap_or(LimitScope::Unknown);
        let trigger = self.oom_trigger(ev, &cid, &uid, scope);
        if let Some(t) = trigger.as_ref().filter(|t| t.pid != pid) {
            if let Some(p) = self.procs.get_mut(&pid) {
                p.oom_trigger = Some(Box::new(t.clone()));
            }
        }
        let group = self.oom_group(ev, pid, memcg.group_kill);
        let bytes = |kb: &Option<u64>| kb.map(|k| k.saturating_mul(1024));
        out.push(self.event(
            ev.ts_ns,
            &uid,
            Some(&cid),
            LifecycleKind::OomKill {
                pid,
                comm,
                victim_is_init,
                limit_scope: scope,
                anon_rss_bytes: bytes(anon_rss_kb),
                file_rss_bytes: bytes(file_rss_kb),
                shmem_rss_bytes: bytes(shmem_rss_kb),
                total_vm_bytes: bytes(total_vm_kb),
                oom_score_adj: *oom_score_adj,
                group_kill: memcg.group_kill || group.first_victim.is_some(),
                killed_with: group.killed_with,
                killed_with_more: group.more,
                group_first_victim: group.first_victim,
                trigger,
                usage_bytes: memcg.usage_bytes,
                limit_bytes: memcg.limit_bytes,
            },
        ));
    }

    /// The task that ran the OOM killer is the one whose allocation failed (the kernel runs
    /// it in the allocating task's context; docs/KERNEL-CAPTURE.md). Reported only when it is
    /// a process of the victim's pod, of its container for a container limit: a kernel
    /// thread or another pod's process (a node OOM) is not this pod's to show.
    fn oom_trigger(
        &self,
        ev: &KernelEvent,
        cid: &str,
        uid: &str,
        scope: LimitScope,
    ) -> Option<Sender> {
        let proc = self.procs.get(&ev.tgid);
        let t_cid = proc
            .and_then(|p| p.container_id.clone())
            .or_else(|| self.container_of(ev.tgid, ev.cgroup_id))?;
        let ours = match scope {
            LimitScope::Container => *t_cid == *cid,
            _ => self
                .containers
                .get(&*t_cid)
                .is_some_and(|c| c.pod_uid == uid),
        };
        // The kernel's comm at the kill (the engine's may predate an exec).
        let comm = match ev.comm.is_empty() {
            false => ev.comm,
            true => proc.map(|p| p.comm).unwrap_or_default(),
        };
        (ours && ev.tgid != 0).then_some(Sender {
            pid: ev.tgid,
            comm: comm.to_string(),
        })
    }

    /// Group kill bookkeeping. The kernel kills the group in one pass in the same task's
    /// context: the first victim of a pass lists the others already in the reorder window
    /// (bounded); the others name the first.
    fn oom_group(&mut self, ev: &KernelEvent, pid: u32, group_kill: bool) -> OomGroup {
        let mut g = OomGroup::default();
        match self.oom_groups.get(&ev.tgid) {
            Some((at, first)) if ev.ts_ns.saturating_sub(*at) <= OOM_GROUP_WINDOW_NS => {
                g.first_victim = Some(*first);
                return g;
            }
            _ => {}
        }
        if !group_kill {
            return g;
        }
        let others = self.buffer.iter().filter_map(|(ts, e)| match e.kind {
            KernelEventKind::OomVictim { pid: p, .. }
                if e.tgid == ev.tgid
                    && p != pid
                    && ts.saturating_sub(ev.ts_ns) <= OOM_GROUP_WINDOW_NS =>
            {
                Some(p)
            }
            _ => None,
        });
        for p in others {
            if g.killed_with.len() < MAX_KILLED_WITH {
                g.killed_with.push(p);
            } else {
                g.more += 1;
            }
        }
        if self.oom_groups.len() >= 1024 {
            self.oom_groups.clear();
            self.evictions.pending += 1;
        }
        self.oom_groups.insert(ev.tgid, (ev.ts_ns, pid));
        g
    }

    /// A scope hint for an OOM kill already derived: correct it on the timeline.
    pub(super) fn fix_oom_scope(&mut self, pid: u32, scope: LimitScope) -> bool {
        let Some((uid, ts)) = self.recent_ooms.remove(&pid) else {
            return false;
        };
        let Some(p) = self.pods.get_mut(&uid) else {
            return false;
        };
        for e in p.events.iter_mut().rev().filter(|e| e.ts_ns == ts) {
            if let LifecycleKind::OomKill {
                pid: p,
                limit_scope,
                ..
            } = &mut e.kind
            {
                if *p == pid {
                    *limit_scope = scope;
                    return true;
                }
            }
        }
        false
    }
}

/// How far apart the victims of one group kill can be marked (one kernel pass: microseconds
/// natively, tens of milliseconds behind a slow console).
const OOM_GROUP_WINDOW_NS: u64 = 1_000_000_000;

#[derive(Default)]
struct OomGroup {
    killed_with: Vec<u32>,
    more: u32,
    first_victim: Option<u32>,
}
