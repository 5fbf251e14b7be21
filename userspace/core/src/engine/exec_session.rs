//! Exec sessions (exec probes, `kubectl exec`): a process that joined a container's namespaces
//! from outside and was attached to its cgroup runs a command (ExecStarted); its exit ends the
//! session (ExecFinished with status and duration; timed out when the runtime's shim killed it).
//! A session is a probe when its command matches the pod's probe spec, or, without a spec, when
//! the same command keeps recurring in the container; failed probes give ProbeFailed, the first
//! success of a probe command and the first after failures ProbeSucceeded.

use super::*;
use crate::kernel_event::ExitStatus;

const SIGKILL: i32 = 9;

/// Processes that kill an exec session at its timeout (containerd's shim, CRI-O's conmon).
fn is_exec_supervisor(comm: &str) -> bool {
    comm.starts_with("containerd-shim") || comm.starts_with("conmon") || comm == "crio"
}

impl Engine {
    pub(super) fn exec_session_started(
        &mut self,
        ev: &KernelEvent,
        cid: &str,
        argv: &[String],
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(uid) = self.containers.get(cid).map(|c| c.pod_uid.clone()) else {
            return;
        };
        while self.sessions.len() >= self.cfg.max_exec_sessions.max(1) {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.seq)
                .map(|(p, _)| *p);
            let Some(p) = oldest else {
                break;
            };
            self.sessions.remove(&p);
            self.evictions.exec_sessions += 1;
        }
        if let Some(p) = self.procs.get_mut(&ev.tgid) {
            p.role = SessionRole::Leader;
            p.container_id = Some(ContainerId::from(cid));
        }
        self.seq += 1;
        let prestop = self.is_exec_prestop(cid, argv);
        self.sessions.insert(
            ev.tgid,
            ExecSession {
                container_id: cid.to_string(),
                started_ns: ev.ts_ns,
                argv: argv.to_vec(),
                seq: self.seq,
                prestop,
            },
        );
        if prestop {
            out.push(self.prestop_started(ev.ts_ns, &uid, cid, argv, ev.tgid));
            return;
        }
        out.push(self.event(
            ev.ts_ns,
            &uid,
            Some(cid),
            LifecycleKind::ExecStarted {
                pid: ev.tgid,
                argv: argv.to_vec(),
            },
        ));
    }

    /// The probe type of a command from the pod's spec (container probes first).
    pub(super) fn spec_probe(&self, uid: &str, cid: &str, argv: &[String]) -> Option<String> {
        let c = self.containers.get(cid)?;
        if let Some(p) = c.meta.probes.iter().find(|p| p.argv == argv) {
            return Some(p.probe_type.clone());
        }
        let name = c.meta.container_name.as_deref();
        self.pods
            .get(uid)?
            .meta
            .exec_probes
            .iter()
            .find_map(|(cname, kind, a)| {
                (a == argv && name.is_none_or(|n| n == cname)).then(|| kind.clone())
            })
    }

    pub(super) fn exec_session_finished(
        &mut self,
        ev: &KernelEvent,
        uid: &str,
        s: ExecSession,
        proc: Option<&Proc>,
        status: Option<ExitStatus>,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let code = status.and_then(|s| s.code);
        let signal = status.and_then(|s| s.signal);
        let timed_out = signal == Some(SIGKILL)
            && proc
                .and_then(|p| p.kill.as_ref())
                .is_some_and(|k| k.sig == SIGKILL && is_exec_supervisor(&k.sender.comm));
        if s.prestop {
            let exit_code = code.or(signal.map(|s| 128 + s));
            let killed = (signal == Some(SIGKILL)).then_some(timed_out);
            self.exec_prestop_finished(ev.ts_ns, uid, &s, exit_code, killed, out);
            return;
        }
        let failed = timed_out || code != Some(0);
        let spec = self.spec_probe(uid, &s.container_id, &s.argv);
        let (recurrence, window) = (
            self.cfg.probe_recurrence,
            self.cfg.probe_recurrence_window_ns,
        );
        let Some(c) = self.containers.get_mut(&s.container_id) else {
            return;
        };
        if c.exec_counts.len() >= 64 && !c.exec_counts.contains_key(&s.argv) {
            // Distinct one-off commands (kubectl exec of scripts) are not probes: forget them.
            c.exec_counts.retain(|_, st| st.runs > 1);
            if c.exec_counts.len() >= 64 {
                c.exec_counts.clear();
            }
        }
        let st = c.exec_counts.entry(s.argv.clone()).or_default();
        if st.runs > 0 && ev.ts_ns.saturating_sub(st.last_ns) > window {
            *st = ExecStats {
                ever_ok: st.ever_ok,
                ..ExecStats::default()
            };
        }
        st.runs += 1;
        st.last_ns = ev.ts_ns;
        let before = std::mem::take(&mut st.consecutive_failures);
        if failed {
            st.consecutive_failures = before + 1;
        }
        let (runs, fails) = (st.runs, st.consecutive_failures);
        let probe = spec.or_else(|| (runs >= recurrence).then(|| "exec_probe".to_string()));
        // A success of a probe is told only when it is the command's first or ends failures
        // (the same rule as the network probes): a healthy container's probes add nothing.
        let succeeded = (probe.is_some() && !failed).then(|| {
            let first = !std::mem::replace(&mut st.ever_ok, true);
            c.net.first_probe_ok_ns.get_or_insert(ev.ts_ns);
            (first, before)
        });
        let exit_code = code.or(signal.map(|s| 128 + s));
        let reason = if timed_out {
            ProbeFailReason::Timeout
        } else {
            ProbeFailReason::ExitCode
        };
        if probe.is_some() {
            self.probe_runs
                .add(ProbeKind::Exec, failed.then_some(reason));
        }
        out.push(self.event(
            ev.ts_ns,
            uid,
            Some(&s.container_id),
            LifecycleKind::ExecFinished {
                pid: ev.tgid,
                argv: s.argv.clone(),
                exit_code,
                signal: signal.map(signal_name),
                duration_ms: (ev.ts_ns.saturating_sub(s.started_ns) as f64 / 1e3).round() / 1e3,
                timed_out,
                probe: probe.clone(),
            },
        ));
        if let Some((first, after_failures)) = succeeded.filter(|(f, n)| *f || *n > 0) {
            out.push(self.event(
                ev.ts_ns,
                uid,
                Some(&s.container_id),
                LifecycleKind::ProbeSucceeded {
                    probe_kind: ProbeKind::Exec,
                    port: None,
                    probe: probe.clone(),
                    first,
                    after_failures,
                },
            ));
        }
        if probe.is_some() && failed {
            out.push(self.event(
                ev.ts_ns,
                uid,
                Some(&s.container_id),
                LifecycleKind::ProbeFailed {
                    argv: s.argv,
                    exit_code,
                    timed_out,
                    probe,
                    consecutive_failures: fails,
                    probe_kind: ProbeKind::Exec,
                    port: None,
                    reason,
                },
            ));
        }
    }
}
