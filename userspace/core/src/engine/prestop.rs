//! preStop hooks. An exec hook is the exec session the kubelet runs through the runtime before
//! it stops the container: matched exactly to the container's handler (same argv), it gives
//! PreStopStarted / PreStopFinished instead of ExecStarted / ExecFinished. A sleep hook has no
//! process: it is the kubelet's pause between the deletion request and the stop signal, told
//! only when the deletion is known (API server watch). An HTTP hook is the kubelet's own
//! connection: not seen here.

use super::*;
use crate::prestop::{HandlerKind, PreStop};

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
}
