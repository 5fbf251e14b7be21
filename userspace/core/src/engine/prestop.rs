//! preStop hooks. An exec hook is the exec session the kubelet runs through the runtime before
//! it stops the container: matched exactly to the container's handler (same argv), it gives
//! PreStopStarted / PreStopFinished instead of ExecStarted / ExecFinished. A sleep hook has no
//! process: it is the kubelet's pause between the deletion request and the stop signal, told
//! only when the deletion is known (API server watch). An HTTP hook is the kubelet's own
//! connection to the pod's address and the hook's port (net_probe.rs hands them over): after
//! the known deletion request, at once; without it, the last such connection, when it closed
//! just before the stop signal (the kubelet sends the stop as soon as the hook answered).

use super::*;
use crate::prestop::{HandlerKind, PreStop};

/// Without the deletion request, a hook connection must have closed at most this long before
/// the stop signal: the kubelet stops the container right after the hook's answer, and an
/// older connection to the port is a probe.
const HOOK_BEFORE_STOP_NS: u64 = 1_000_000_000;

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
        out.push(self.prestop_finished(ts, uid, cid, HandlerKind::Sleep, None, secs, grace, cut));
    }

    /// The live, not yet stopped, containers of the pod whose hook is an httpGet on `port`.
    fn http_hook_containers(&self, uid: &str, port: u16) -> Vec<String> {
        let Some(pod) = self.pods.get(uid) else {
            return Vec::new();
        };
        (pod.containers.iter())
            .filter(|id| {
                self.containers.get(id.as_str()).is_some_and(|c| {
                    c.exited_ns.is_none()
                        && c.stop.is_none()
                        && !c.net.hook_reported
                        && matches!(c.meta.prestop, Some(PreStop::Http { port: Some(p), .. }) if p == port)
                })
            })
            .cloned()
            .collect()
    }

    /// A kubelet connection to the pod: kept by the containers whose httpGet hook is on its
    /// port; reported as their hook at once when it began after the pod's deletion request
    /// (then it is not a probe: true).
    pub(super) fn http_hook_conn(
        &mut self,
        uid: &str,
        port: u16,
        conn: HookConn,
        out: &mut Vec<LifecycleEvent>,
    ) -> bool {
        let deleted = self.pods.get(uid).and_then(|p| p.deletion_ns);
        let mut hook = false;
        for cid in self.http_hook_containers(uid, port) {
            if deleted.is_some_and(|d| conn.start_ns >= d) {
                self.http_prestop(uid, &cid, conn, out);
                hook = true;
            } else if let Some(c) = self.containers.get_mut(&cid) {
                c.net.last_hook_conn = Some(conn);
            }
        }
        hook
    }

    /// The stop signal of a container with an httpGet hook not reported yet: the last kubelet
    /// connection to its port is the hook when it closed just before.
    pub(super) fn http_prestop_at_stop(
        &mut self,
        ts: u64,
        uid: &str,
        cid: &str,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(c) = self.containers.get(cid) else {
            return;
        };
        if c.net.hook_reported || !matches!(c.meta.prestop, Some(PreStop::Http { .. })) {
            return;
        }
        let Some(conn) = c.net.last_hook_conn else {
            return;
        };
        if conn.end_ns <= ts && conn.end_ns + HOOK_BEFORE_STOP_NS >= ts {
            self.http_prestop(uid, cid, conn, out);
        }
    }

    fn http_prestop(
        &mut self,
        uid: &str,
        cid: &str,
        conn: HookConn,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(c) = self.containers.get_mut(cid) else {
            return;
        };
        c.net.hook_reported = true;
        c.net.last_hook_conn = None;
        let Some(PreStop::Http { port, path }) = c.meta.prestop.clone() else {
            return;
        };
        if let Some(pod) = self.pods.get_mut(uid) {
            if matches!(pod.state, PodState::Running | PodState::Pending) {
                pod.state = PodState::Terminating;
            }
        }
        out.push(self.event(
            conn.start_ns,
            uid,
            Some(cid),
            LifecycleKind::PreStopStarted {
                handler: HandlerKind::Http,
                argv: None,
                port,
                path: Some(path),
                pid: None,
            },
        ));
        let grace = self.grace_of(cid);
        let secs = conn.end_ns.saturating_sub(conn.start_ns) as f64 / 1e9;
        // The hook ran into the grace when it took all of it (the kubelet then gave up on it).
        let cut = grace.is_some_and(|g| secs >= g);
        out.push(self.prestop_finished(
            conn.end_ns,
            uid,
            cid,
            HandlerKind::Http,
            None,
            secs,
            grace,
            cut,
        ));
    }
}
