//! Signals and OOM kills: stop requests of the runtime, stop signals the init ignores,
//! SIGKILL after the grace period, and OOM victims with the limit that fired.

use super::process::is_runtime_comm;
use super::*;
use crate::kernel_event::{SignalResult, SI_KERNEL};

const SIGKILL: i32 = 9;

/// Signals that never end a process: not worth remembering as a cause of death.
fn harmless(sig: i32) -> bool {
    matches!(sig, 0 | 17 | 18 | 19 | 20 | 21 | 22 | 23 | 28)
}

impl Engine {
    pub(super) fn on_signal(
        &mut self,
        ev: &KernelEvent,
        sig: i32,
        target: u32,
        code: i32,
        result: SignalResult,
        out: &mut Vec<LifecycleEvent>,
    ) {
        if harmless(sig) {
            return;
        }
        let sender = Sender {
            pid: ev.tgid,
            comm: ev.comm.clone(),
        };
        let sender_container = self
            .procs
            .get(&ev.tgid)
            .and_then(|p| p.container_id.clone());
        let target_container = self.procs.get(&target).and_then(|p| p.container_id.clone());
        if let Some(t) = self.procs.get_mut(&target) {
            t.kill = Some(Kill {
                ts: ev.ts_ns,
                sig,
                sender: sender.clone(),
                by_kernel: code == SI_KERNEL && ev.tgid != target,
            });
        } else if ev.tgid != target {
            // Keep the fact for a process we learn about later in the batch (out-of-order CPUs).
            let p = self.proc_mut(target, "");
            p.kill = Some(Kill {
                ts: ev.ts_ns,
                sig,
                sender: sender.clone(),
                by_kernel: code == SI_KERNEL,
            });
        }
        let Some(cid) = target_container else {
            return;
        };
        if sender_container.as_deref() == Some(cid.as_str()) || !is_runtime_comm(&ev.comm) {
            return;
        }
        let Some(c) = self.containers.get_mut(&cid) else {
            return;
        };
        if c.init_pid != Some(target) || c.exited_ns.is_some() || c.is_sandbox() {
            return;
        }
        let uid = c.pod_uid.clone();
        if sig == SIGKILL {
            if let Some(stop) = &c.stop {
                let observed = ev.ts_ns.saturating_sub(stop.ts) as f64 / 1e9;
                let configured = c
                    .meta
                    .grace_period_s
                    .or_else(|| self.pods.get(&uid).and_then(|p| p.meta.grace_period_s));
                out.push(self.event(
                    ev.ts_ns,
                    &uid,
                    Some(&cid),
                    LifecycleKind::GracePeriodOverrun {
                        observed_grace_s: (observed * 1000.0).round() / 1000.0,
                        configured_grace_s: configured,
                    },
                ));
            }
            return;
        }
        if c.stop.is_none() {
            c.stop = Some(StopRequest { ts: ev.ts_ns, sig });
        }
        if let Some(pod) = self.pods.get_mut(&uid) {
            if pod.state == PodState::Running {
                pod.state = PodState::Terminating;
            }
        }
        out.push(self.event(
            ev.ts_ns,
            &uid,
            Some(&cid),
            LifecycleKind::StopRequested {
                signal: signal_name(sig),
                sender,
                pid: target,
            },
        ));
        if result == SignalResult::Ignored {
            out.push(self.event(
                ev.ts_ns,
                &uid,
                Some(&cid),
                LifecycleKind::StopSignalIgnored {
                    signal: signal_name(sig),
                    pid: target,
                },
            ));
        }
    }

    pub(super) fn on_oom(&mut self, ev: &KernelEvent, out: &mut Vec<LifecycleEvent>) {
        let KernelEventKind::OomVictim {
            pid,
            victim_comm: comm,
            total_vm_kb,
            anon_rss_kb,
            file_rss_kb,
            shmem_rss_kb,
            oom_score_adj,
            ..
        } = &ev.kind
        else {
            return;
        };
        let pid = *pid;
        // The kill runs in the allocating task's context, which is usually the victim.
        let own_cgroup = if ev.tgid == pid {
            Some(ev.cgroup_id)
        } else {
            None
        };
        let cid = self
            .procs
            .get(&pid)
            .and_then(|p| p.container_id.clone())
            .or_else(|| {
                own_cgroup
                    .and_then(|cg| self.cgroups.get(&cg))
                    .and_then(|c| c.container_id.clone())
            });
        self.proc_mut(pid, comm.as_deref().unwrap_or("")).oom = true;
        let Some(cid) = cid else {
            self.failures.oom_unattributed += 1;
            return;
        };
        let Some(c) = self.containers.get(&cid) else {
            self.failures.oom_unattributed += 1;
            return;
        };
        let uid = c.pod_uid.clone();
        let victim_is_init = c.init_pid == Some(pid);
        let scope = self
            .oom_scope_hints
            .remove(&pid)
            .unwrap_or_else(|| "unknown".into());
        let bytes = |kb: &Option<u64>| kb.map(|k| k * 1024);
        out.push(self.event(
            ev.ts_ns,
            &uid,
            Some(&cid),
            LifecycleKind::OomKill {
                pid,
                comm: comm.clone(),
                victim_is_init,
                limit_scope: scope,
                anon_rss_bytes: bytes(anon_rss_kb),
                file_rss_bytes: bytes(file_rss_kb),
                shmem_rss_bytes: bytes(shmem_rss_kb),
                total_vm_bytes: bytes(total_vm_kb),
                oom_score_adj: *oom_score_adj,
            },
        ));
    }
}
