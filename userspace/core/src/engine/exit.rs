//! Process exits (keyed on tgid: the kernel reports the group's last thread): crashes of any
//! container process, the end of exec sessions, and the end of containers and sandboxes with
//! the reason and who or what ended them.

use super::start::restart_keys;
use super::*;
use crate::kernel_event::{ExitStatus, SI_KERNEL};

const SIGKILL: i32 = 9;

/// Why a container's init ended and who ended it.
struct Verdict {
    reason: ExitReason,
    killed_by: Option<KilledBy>,
    sender: Option<Sender>,
}

fn verdict(
    pid: u32,
    proc: Option<&Proc>,
    status: Option<ExitStatus>,
    stop: Option<&StopRequest>,
) -> Verdict {
    let code = status.and_then(|s| s.code);
    let signal = status.and_then(|s| s.signal);
    let stopped = stop.map(|_| KilledBy::RuntimeStop);
    let v = |reason, killed_by, sender| Verdict {
        reason,
        killed_by,
        sender,
    };
    match (code, signal) {
        // The sender of an OOM kill is the process whose allocation set it off, when that is
        // another one (a group kill started by a child's OOM).
        (_, Some(SIGKILL)) if proc.is_some_and(|p| p.oom) => v(
            ExitReason::OomKilled,
            Some(KilledBy::OomKiller),
            proc.and_then(|p| p.oom_trigger.as_deref().cloned()),
        ),
        (Some(0), _) => v(ExitReason::Completed, stopped, None),
        (Some(_), _) => v(ExitReason::Error, stopped, None),
        (None, Some(sig)) => {
            let Some(k) = proc.and_then(|p| p.kill.as_ref()).filter(|k| k.sig == sig) else {
                return v(ExitReason::Signaled, stopped, None);
            };
            let by = if k.sender.pid == pid {
                if k.code == SI_KERNEL {
                    KilledBy::Kernel
                } else {
                    KilledBy::Itself
                }
            } else if k.code == SI_KERNEL {
                KilledBy::Kernel
            } else if k.from_runtime {
                match stop {
                    Some(s) if sig == SIGKILL && s.sig != SIGKILL => KilledBy::GraceOverrun,
                    _ => KilledBy::RuntimeStop,
                }
            } else {
                KilledBy::Process
            };
            v(ExitReason::Signaled, Some(by), Some(k.sender.clone()))
        }
        (None, None) => v(ExitReason::Unknown, stopped, None),
    }
}

impl Engine {
    pub(super) fn on_exit(
        &mut self,
        ev: &KernelEvent,
        status: Option<ExitStatus>,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let proc = self.procs.remove(&ev.tgid);
        let session = self.sessions.remove(&ev.tgid);
        self.remember_exit(ev.tgid, ev.ts_ns);
        let cid = proc
            .as_ref()
            .and_then(|p| p.container_id.clone())
            .or_else(|| self.container_of(ev.tgid, ev.cgroup_id));
        let Some(cid) = cid else {
            return;
        };
        let Some(c) = self.containers.get(&*cid) else {
            return;
        };
        let is_init = c.init_pid == Some(ev.tgid) && c.exited_ns.is_none();
        let crash = status.filter(|s| s.signal.is_some_and(is_crash_signal));
        // Most exits are a container's ordinary children: nothing to derive, nothing to copy.
        if crash.is_none() && session.is_none() && !is_init {
            return;
        }
        let uid = c.pod_uid.clone();
        if let Some(s) = crash {
            let comm = proc
                .as_ref()
                .map(|p| p.comm)
                .filter(|c| !c.is_empty())
                .unwrap_or(ev.comm);
            out.push(self.event(
                ev.ts_ns,
                &uid,
                Some(&cid),
                LifecycleKind::ProcessCrashed {
                    pid: ev.tgid,
                    comm: comm.to_string(),
                    signal: signal_name(s.signal.unwrap_or(0)),
                    core_dumped: s.core_dumped,
                    is_init,
                },
            ));
        }
        if let Some(s) = session {
            self.exec_session_finished(ev, &uid, s, proc.as_ref(), status, out);
            return;
        }
        if is_init {
            self.init_exited(ev, &uid, &cid, proc.as_ref(), status, out);
        }
    }

    fn init_exited(
        &mut self,
        ev: &KernelEvent,
        uid: &str,
        cid: &str,
        proc: Option<&Proc>,
        status: Option<ExitStatus>,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let code = status.and_then(|s| s.code);
        let signal = status.and_then(|s| s.signal);
        let c = self.containers.get_mut(cid).expect("caller looked it up");
        c.exited_ns = Some(ev.ts_ns);
        c.exit_code = code.or(signal.map(|s| 128 + s));
        if c.is_sandbox() {
            if let Some(pod) = self.pods.get_mut(uid) {
                if pod.removed_ns.is_none() && pod.sandbox_id.as_deref() == Some(cid) {
                    pod.state = PodState::Stopped;
                }
            }
            out.push(self.event(
                ev.ts_ns,
                uid,
                Some(cid),
                LifecycleKind::SandboxStopped {
                    pid: ev.tgid,
                    exit_code: code.or(signal.map(|s| 128 + s)),
                    signal: signal.map(signal_name),
                },
            ));
            return;
        }
        let v = verdict(ev.tgid, proc, status, c.stop.as_ref());
        let termination_s = c
            .stop
            .as_ref()
            .map(|s| ev.ts_ns.saturating_sub(s.ts) as f64 / 1e9);
        let keys = restart_keys(c);
        let attempt = c.attempt;
        let cause = self.restart_cause(uid, cid, &v, signal);
        if let Some(pod) = self.pods.get_mut(uid) {
            for k in keys {
                let r = pod.restarts.entry(k).or_default();
                r.last_exit_ns = Some(ev.ts_ns);
                r.attempt = attempt;
                r.last_cause = cause;
            }
        }
        out.push(self.event(
            ev.ts_ns,
            uid,
            Some(cid),
            LifecycleKind::ContainerExited {
                pid: ev.tgid,
                exit_code: code.or(signal.map(|s| 128 + s)),
                signal: signal.map(signal_name),
                reason: v.reason,
                killed_by: v.killed_by,
                sender: v.sender,
                termination_s,
            },
        ));
    }

    /// What a restart after this exit would be caused by. A runtime stop is the kubelet's
    /// liveness kill when a probe of the container had failed within the last minute.
    fn restart_cause(
        &self,
        uid: &str,
        cid: &str,
        v: &Verdict,
        signal: Option<i32>,
    ) -> Option<RestartCause> {
        match (v.reason, v.killed_by) {
            (ExitReason::OomKilled, _) => Some(RestartCause::Oom),
            (_, Some(KilledBy::GraceOverrun)) => Some(RestartCause::GraceOverrun),
            (_, Some(KilledBy::RuntimeStop)) => Some(if self.liveness_failing(uid, cid) {
                RestartCause::LivenessProbe
            } else {
                RestartCause::RuntimeStop
            }),
            (ExitReason::Signaled, _) if signal.is_some_and(is_crash_signal) => {
                Some(RestartCause::Crash)
            }
            (ExitReason::Error, _) => Some(RestartCause::ErrorExit),
            _ => None,
        }
    }

    /// A probe of the container failed last before its stop: a liveness probe by the spec,
    /// or, without a spec for it, a recurring command.
    fn liveness_failing(&self, uid: &str, cid: &str) -> bool {
        const RECENT_NS: u64 = 60 * 1_000_000_000;
        let Some(c) = self.containers.get(cid) else {
            return false;
        };
        let stop = c.stop.as_ref().map_or(u64::MAX, |s| s.ts);
        c.exec_counts.iter().any(|(argv, st)| {
            let recent = st.last_ns <= stop && stop.saturating_sub(st.last_ns) <= RECENT_NS;
            let probe = match self.spec_probe(uid, cid, argv) {
                Some(kind) => kind == "liveness",
                None => st.runs >= self.cfg.probe_recurrence,
            };
            st.consecutive_failures > 0 && recent && probe
        })
    }

    /// Remember a pid's exit for a while: a fork or attach of it arriving late is stale.
    fn remember_exit(&mut self, pid: u32, ts: u64) {
        let cap = (self.cfg.max_processes / 4).max(16);
        while self.exited.len() >= cap {
            let Some((old, t)) = self.exited_order.pop_front() else {
                break;
            };
            if self.exited.get(&old) == Some(&t) {
                self.exited.remove(&old);
            }
        }
        self.exited.insert(pid, ts);
        self.exited_order.push_back((pid, ts));
    }
}
