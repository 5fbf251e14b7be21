//! preStop hooks. An exec hook is the exec session the kubelet runs through the runtime before
//! it stops the container: matched exactly to the container's handler (same argv), it gives
//! PreStopStarted / PreStopFinished instead of ExecStarted / ExecFinished. A sleep hook has no
//! process: it is the kubelet's pause between the deletion request and the stop signal, told
//! only when the deletion is known (API server watch). An HTTP hook is the kubelet's own
//! connection to the hook's port: the kernel sees when it began and ended, not its path, so it
//! is told apart from the probes on that port by what follows it: the container's stop signal,
//! which the kubelet sends as soon as the hook returned (or gave up at the grace). The
//! connection's record comes at its close, before the signal or, when the kubelet kept it
//! open, after it: both orders are matched, and the hook is dated to the connection.

use super::*;
use crate::kernel_event::ConnOutcome;
use crate::prestop::{HandlerKind, PreStop};

/// Longest pause between the end of an http hook's connection and the stop signal the kubelet
/// sends after it.
const HOOK_TO_STOP_NS: u64 = 2_000_000_000;
/// A hook the kubelet gave up on at the grace ends this close to it.
const AT_GRACE_S: f64 = 0.25;
/// Default Kubernetes grace period, for the longest hook when the grace is unknown.
const DEFAULT_GRACE_S: f64 = 30.0;

/// A hook connection begun at `start` is not from before the pod's deletion, when it is known
/// (the kubelet runs the hook after it; the same slack as to the stop).
fn after_deletion(deletion: Option<u64>, start: u64) -> bool {
    deletion.is_none_or(|d| start + HOOK_TO_STOP_NS >= d)
}

impl Engine {
    /// The configured grace period of a container (its own, else its pod's).
    pub fn grace_of(&self, cid: &str) -> Option<f64> {
        let c = self.containers.get(cid)?;
        c.meta.grace_period_s.or_else(|| {
            self.pods
                .get(&c.pod_uid)
                .and_then(|p| p.meta.grace_period_s)
        })
    }

    /// A session of a live container running exactly its exec preStop handler.
    pub(super) fn is_exec_prestop(&self, cid: &str, argv: &[String]) -> bool {
        self.containers.get(cid).is_some_and(|c| {
            c.exited_ns.is_none()
                && matches!(&c.meta.prestop, Some(PreStop::Exec { argv: a }) if a == argv)
        })
    }

    pub(super) fn prestop_started(
        &mut self,
        ts: u64,
        uid: &str,
        cid: &str,
        argv: &[String],
        pid: u32,
    ) -> LifecycleEvent {
        if let Some(pod) = self.pods.get_mut(uid) {
            if matches!(pod.state, PodState::Running | PodState::Pending) {
                pod.state = PodState::Terminating;
            }
        }
        self.event(
            ts,
            uid,
            Some(cid),
            LifecycleKind::PreStopStarted {
                handler: HandlerKind::Exec,
                argv: Some(argv.to_vec()),
                port: None,
                path: None,
                pid: Some(pid),
            },
        )
    }

    /// The exec hook ended; `sigkilled`: by a SIGKILL, `Some(true)` from the runtime at the
    /// exec's timeout. It was killed at the grace when the runtime's timeout ended it, or a
    /// SIGKILL after the container was told to stop (the kubelet gave up waiting and stopped
    /// the container) or once the whole grace period had passed.
    pub(super) fn exec_prestop_finished(
        &mut self,
        ts: u64,
        uid: &str,
        s: &ExecSession,
        exit_code: Option<i32>,
        sigkilled: Option<bool>,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let grace = self.grace_of(&s.container_id);
        let secs = ts.saturating_sub(s.started_ns) as f64 / 1e9;
        let stopped_first = self
            .containers
            .get(&s.container_id)
            .and_then(|c| c.stop.as_ref())
            .is_some_and(|st| st.ts >= s.started_ns && st.ts <= ts);
        let past_grace = grace.is_some_and(|g| secs >= g);
        let killed = match sigkilled {
            Some(timed_out) => timed_out || stopped_first || past_grace,
            None => false,
        };
        out.push(self.prestop_finished(
            ts,
            uid,
            &s.container_id,
            HandlerKind::Exec,
            exit_code,
            secs,
            grace,
            killed,
            None,
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn prestop_finished(
        &self,
        ts: u64,
        uid: &str,
        cid: &str,
        handler: HandlerKind,
        exit_code: Option<i32>,
        secs: f64,
        grace: Option<f64>,
        killed_at_grace: bool,
        connection: Option<ConnOutcome>,
    ) -> LifecycleEvent {
        let grace_used = grace
            .filter(|g| *g > 0.0)
            .map(|g| ((secs / g).min(1.0) * 1000.0).round() / 1000.0);
        self.event(
            ts,
            uid,
            Some(cid),
            LifecycleKind::PreStopFinished {
                handler,
                exit_code,
                duration_ms: (secs * 1e6).round() / 1e3,
                grace_used,
                killed_at_grace,
                connection,
            },
        )
    }

    /// The stop signal of a container whose hook is a sleep, in a pod whose deletion is known:
    /// the hook ran from the deletion to this signal. It was cut at the grace when it was
    /// configured to sleep at least as long as the grace period.
    pub(super) fn sleep_prestop(
        &mut self,
        ts: u64,
        uid: &str,
        cid: &str,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(PreStop::Sleep { seconds }) = self
            .containers
            .get(cid)
            .and_then(|c| c.meta.prestop.clone())
        else {
            return;
        };
        let Some(deleted) = self
            .pods
            .get(uid)
            .and_then(|p| p.deletion_ns)
            .filter(|d| *d <= ts)
        else {
            return;
        };
        let grace = self.grace_of(cid);
        let secs = ts.saturating_sub(deleted) as f64 / 1e9;
        out.push(self.event(
            deleted,
            uid,
            Some(cid),
            LifecycleKind::PreStopStarted {
                handler: HandlerKind::Sleep,
                argv: None,
                port: None,
                path: None,
                pid: None,
            },
        ));
        let cut = grace.is_some_and(|g| seconds as f64 >= g);
        out.push(self.prestop_finished(
            ts,
            uid,
            cid,
            HandlerKind::Sleep,
            None,
            secs,
            grace,
            cut,
            None,
        ));
    }

    /// The live container of pod `uid` whose http hook is on `port` and not told yet.
    fn http_hook_on(&self, uid: &str, port: u16) -> Option<String> {
        let pod = self.pods.get(uid)?;
        pod.containers
            .iter()
            .rev()
            .find(|id| {
                self.containers.get(*id).is_some_and(|c| {
                    // Exited: the kubelet's kept-alive connection closes with the container.
                    !matches!(c.net.hook.as_deref(), Some(HttpHook::Told))
                        && (c.exited_ns.is_none() || c.stop.is_some())
                        && matches!(c.meta.prestop, Some(PreStop::Http { port: Some(p), .. }) if p == port)
                })
            })
            .cloned()
    }

    /// A kubelet connection to `port` of pod `uid` (`start`..`end`). With the container's stop
    /// signal already seen after the connection began, it is the container's http hook (true:
    /// not a probe). Before the stop it is kept as the candidate the stop signal may confirm.
    pub(super) fn http_prestop_conn(
        &mut self,
        uid: &str,
        port: u16,
        (start, end): (u64, u64),
        outcome: ConnOutcome,
        out: &mut Vec<LifecycleEvent>,
    ) -> bool {
        let Some(cid) = self.http_hook_on(uid, port) else {
            return false;
        };
        let deletion = self.pods.get(uid).and_then(|p| p.deletion_ns);
        let longest = self.grace_of(&cid).unwrap_or(DEFAULT_GRACE_S) * 1e9;
        let Some(c) = self.containers.get_mut(&cid) else {
            return false;
        };
        match c.stop.as_ref() {
            None => {
                c.net.hook = Some(Box::new(HttpHook::Candidate(HookConn {
                    start_ns: start,
                    end_ns: end,
                    outcome,
                })));
                false
            }
            Some(st) => {
                let stop = st.ts;
                let began_before =
                    start <= stop && (stop - start) as f64 <= longest + HOOK_TO_STOP_NS as f64;
                if !began_before || !after_deletion(deletion, start) {
                    return false;
                }
                let conn = HookConn {
                    start_ns: start,
                    end_ns: end.min(stop),
                    outcome,
                };
                self.tell_http_hook(uid, &cid, port, conn, out);
                true
            }
        }
    }

    /// The stop signal of container `cid`: the kubelet connection to its http hook's port that
    /// ended just before it was the hook.
    pub(super) fn http_prestop_at_stop(
        &mut self,
        ts: u64,
        uid: &str,
        cid: &str,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let deletion = self.pods.get(uid).and_then(|p| p.deletion_ns);
        let Some(c) = self.containers.get_mut(cid) else {
            return;
        };
        let Some(PreStop::Http {
            port: Some(port), ..
        }) = c.meta.prestop
        else {
            return;
        };
        let Some(HttpHook::Candidate(conn)) = c.net.hook.as_deref().copied() else {
            return;
        };
        c.net.hook = None;
        let just_before = conn.end_ns <= ts && ts - conn.end_ns <= HOOK_TO_STOP_NS;
        if just_before && after_deletion(deletion, conn.start_ns) {
            self.tell_http_hook(uid, cid, port, conn, out);
        }
    }

    fn tell_http_hook(
        &mut self,
        uid: &str,
        cid: &str,
        port: u16,
        conn: HookConn,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(c) = self.containers.get_mut(cid) else {
            return;
        };
        c.net.hook = Some(Box::new(HttpHook::Told));
        let path = match &c.meta.prestop {
            Some(PreStop::Http { path, .. }) => Some(path.clone()),
            _ => None,
        };
        out.push(self.event(
            conn.start_ns,
            uid,
            Some(cid),
            LifecycleKind::PreStopStarted {
                handler: HandlerKind::Http,
                argv: None,
                port: Some(port),
                path,
                pid: None,
            },
        ));
        let grace = self.grace_of(cid);
        let secs = conn.end_ns.saturating_sub(conn.start_ns) as f64 / 1e9;
        let cut = grace.is_some_and(|g| secs + AT_GRACE_S >= g);
        out.push(self.prestop_finished(
            conn.end_ns,
            uid,
            cid,
            HandlerKind::Http,
            None,
            secs,
            grace,
            cut,
            Some(conn.outcome),
        ));
    }
}
