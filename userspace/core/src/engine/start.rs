//! Forks and execs: children inherit their parent's container and session role; the first real
//! exec in a container cgroup is its init starting (SandboxStarted for the pod's sandbox,
//! ContainerCreated + ContainerStarted otherwise, ContainerRestarted when the same container
//! ran and exited before in the pod).

use super::*;

/// runc's own re-execs on the way to the container init (`/proc/self/exe`, the memfd copy at
/// `/dev/fd/N`), and busybox applets re-executing themselves: not an entrypoint.
fn is_runtime_exec(filename: &str) -> bool {
    filename.starts_with("/proc/self/")
        || filename.starts_with("/dev/fd/")
        || filename.starts_with("/memfd:")
}

fn looks_like_pause(filename: &str, argv: &[String]) -> bool {
    let pause = |s: &str| s == "pause" || s.ends_with("/pause");
    pause(filename) || argv.first().is_some_and(|a| pause(a))
}

/// Restart identities of a container within its pod: its name when known, and its command.
pub(super) fn restart_keys(c: &Container) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(n) = &c.meta.container_name {
        keys.push(format!("name:{n}"));
    }
    if !c.argv.is_empty() {
        keys.push(format!("argv:{}", c.argv.join("\u{1f}")));
    }
    keys
}

/// Delays that roughly double (10 s, 20 s, 40 s ... up to the kubelet's 5 min cap) are its
/// crash-loop back-off.
pub(super) fn looks_like_crash_loop(backoffs: &[f64]) -> bool {
    const CAP_S: f64 = 250.0;
    backoffs.len() >= 2
        && backoffs.windows(2).all(|w| {
            let ratio = w[1] / w[0].max(1e-3);
            (1.5..=2.6).contains(&ratio) || (w[0] >= CAP_S && w[1] >= CAP_S)
        })
}

impl Engine {
    pub(super) fn on_fork(&mut self, ev: &KernelEvent, child: u32) {
        if self.exited.get(&child).is_some_and(|&t| t >= ev.ts_ns) {
            // The child's exit was applied before its fork (events out of order): keep it dead.
            return;
        }
        let container_id = self.container_of(ev.tgid, ev.cgroup_id);
        let (role, joined) = self
            .procs
            .get(&ev.tgid)
            .map_or((SessionRole::None, 0), |p| {
                let role = match p.role {
                    SessionRole::Leader | SessionRole::Member => SessionRole::Member,
                    r => r,
                };
                (role, p.joined_ns)
            });
        if container_id.is_none() && role == SessionRole::None && !self.procs.contains_key(&child) {
            return; // host process outside any pod: not tracked
        }
        let p = self.proc_mut(child, &ev.comm, ev.ts_ns);
        p.placeholder = false;
        p.parent = ev.tgid;
        p.comm.clone_from(&ev.comm);
        p.container_id = container_id.or(p.container_id.take());
        p.role = role;
        p.joined_ns = joined;
    }

    pub(super) fn on_exec(
        &mut self,
        ev: &KernelEvent,
        filename: &str,
        argv: &[String],
        out: &mut Vec<LifecycleEvent>,
    ) {
        let cid = self.container_of(ev.tgid, ev.cgroup_id);
        if cid.is_none() {
            if self.mode == CgroupMode::V2
                && ev.cgroup_id > 1
                && !self.cgroups.contains_key(&ev.cgroup_id)
            {
                self.failures.unknown_cgroup += 1;
            }
            if let Some(p) = self.procs.get_mut(&ev.tgid) {
                p.comm.clone_from(&ev.comm);
            }
            return;
        }
        let runtime_exec = is_runtime_exec(filename);
        let p = self.proc_mut(ev.tgid, &ev.comm, ev.ts_ns);
        p.placeholder = false;
        p.comm.clone_from(&ev.comm);
        if p.container_id.is_none() || p.role == SessionRole::None {
            p.container_id.clone_from(&cid);
        }
        if runtime_exec {
            return;
        }
        let role = p.role;
        let cid = cid.expect("checked above");
        match role {
            SessionRole::Candidate => return self.exec_session_started(ev, &cid, argv, out),
            SessionRole::Leader | SessionRole::Member => return,
            SessionRole::None => {}
        }
        let Some(c) = self.containers.get(&*cid) else {
            return;
        };
        if c.init_pid.is_none() && c.exited_ns.is_none() {
            self.init_started(ev, &cid, filename, argv, out);
        }
    }

    /// Is the container about to start the pod's sandbox? Metadata decides when present; else
    /// namespace evidence (created vs joined) or the pause binary, while the pod has no live
    /// sandbox. (A hostNetwork + hostIPC pod's sandbox creates no IPC/UTS/NET namespace: only
    /// its pause binary tells.)
    fn is_sandbox_start(&self, c: &Container, filename: &str, argv: &[String]) -> bool {
        if let Some(k) = c.meta.kind {
            return k == ContainerKind::Sandbox;
        }
        if c.joins_namespaces {
            return false;
        }
        let Some(pod) = self.pods.get(&c.pod_uid) else {
            return false;
        };
        let live_sandbox = pod
            .sandbox_id
            .as_ref()
            .and_then(|s| self.containers.get(s))
            .is_some_and(|s| s.exited_ns.is_none());
        if live_sandbox {
            return false;
        }
        c.creates_namespaces || looks_like_pause(filename, argv)
    }

    fn init_started(
        &mut self,
        ev: &KernelEvent,
        cid: &str,
        filename: &str,
        argv: &[String],
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(c) = self.containers.get(cid) else {
            return;
        };
        let sandbox = self.is_sandbox_start(c, filename, argv);
        let uid = c.pod_uid.clone();
        let c = self.containers.get_mut(cid).expect("looked up above");
        c.init_pid = Some(ev.tgid);
        c.started_ns = Some(ev.ts_ns);
        c.argv = argv.to_vec();
        if sandbox {
            c.meta.kind = Some(ContainerKind::Sandbox);
        }
        let kind = c.meta.kind;
        if let Some(pod) = self.pods.get_mut(&uid) {
            if pod.state == PodState::Pending || pod.state == PodState::Stopped {
                pod.state = PodState::Running;
            }
            if sandbox {
                pod.sandbox_id = Some(cid.to_string());
            }
        }
        if sandbox {
            let e = self.event(
                ev.ts_ns,
                &uid,
                Some(cid),
                LifecycleKind::SandboxStarted { pid: ev.tgid },
            );
            out.push(e);
            return;
        }
        self.container_created(cid, out);
        out.push(self.event(
            ev.ts_ns,
            &uid,
            Some(cid),
            LifecycleKind::ContainerStarted {
                pid: ev.tgid,
                argv: argv.to_vec(),
                kind,
            },
        ));
        self.restart_check(ev.ts_ns, &uid, cid, out);
    }

    /// The same container (by name, else command) exited earlier in this pod: a restart.
    fn restart_check(&mut self, ts: u64, uid: &str, cid: &str, out: &mut Vec<LifecycleEvent>) {
        let Some(c) = self.containers.get(cid) else {
            return;
        };
        let keys = restart_keys(c);
        let meta_attempt = c.meta.attempt;
        let Some(pod) = self.pods.get_mut(uid) else {
            return;
        };
        let Some(prev) = keys.iter().find_map(|k| {
            pod.restarts
                .get(k)
                .filter(|r| r.last_exit_ns.is_some())
                .cloned()
        }) else {
            return;
        };
        let exit = prev.last_exit_ns.unwrap_or(ts);
        let backoff_s = ts.saturating_sub(exit) as f64 / 1e9;
        let mut backoffs = prev.backoffs;
        backoffs.push(backoff_s);
        if backoffs.len() > 8 {
            backoffs.remove(0);
        }
        let attempt = meta_attempt.unwrap_or(prev.attempt + 1);
        let crash_loop = looks_like_crash_loop(&backoffs);
        for k in &keys {
            pod.restarts.insert(
                k.clone(),
                RestartState {
                    last_exit_ns: None,
                    attempt,
                    backoffs: backoffs.clone(),
                    last_cause: None,
                },
            );
        }
        if let Some(c) = self.containers.get_mut(cid) {
            c.attempt = attempt;
        }
        out.push(self.event(
            ts,
            uid,
            Some(cid),
            LifecycleKind::ContainerRestarted {
                attempt,
                backoff_s: (backoff_s * 1e6).round() / 1e6,
                crash_loop,
                cause: prev.last_cause,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_back_off() {
        assert!(looks_like_crash_loop(&[10.2, 20.3, 40.1]));
        assert!(looks_like_crash_loop(&[160.0, 300.0, 300.0]));
        assert!(!looks_like_crash_loop(&[10.0]));
        assert!(!looks_like_crash_loop(&[0.13, 0.12]));
        assert!(!looks_like_crash_loop(&[10.0, 10.0]));
    }

    #[test]
    fn runtime_execs_are_not_entrypoints() {
        assert!(is_runtime_exec("/proc/self/exe"));
        assert!(is_runtime_exec("/dev/fd/6"));
        assert!(!is_runtime_exec("/bin/sh"));
        assert!(looks_like_pause("/pause", &[]));
        assert!(!looks_like_pause("/bin/sh", &["sh".into()]));
    }
}
