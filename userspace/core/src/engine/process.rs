//! Processes: forks inherit their container, the container init's exec starts the container,
//! exec sessions (probes, kubectl exec) are told apart by the mount namespace they joined,
//! and exits finish containers and sessions with who or what ended them.

use super::*;
use crate::kernel_event::clone::{CLONE_NEWIPC, CLONE_NEWNS, CLONE_NEWUTS};
use crate::kernel_event::ExitStatus;

/// runc's own re-execs inside a container cgroup are not the entrypoint.
fn is_runtime_exec(filename: &str) -> bool {
    filename == "/proc/self/exe"
        || filename.starts_with("/dev/fd/")
        || filename.starts_with("/memfd:")
}

/// comm of container runtimes and shims: their signals are the runtime's.
pub(super) fn is_runtime_comm(comm: &str) -> bool {
    [
        "runc",
        "crun",
        "runsc",
        "conmon",
        "containerd-shim",
        "containerd",
        "crio",
        "dockerd",
    ]
    .iter()
    .any(|r| comm.starts_with(r))
}

const SIGKILL: i32 = 9;

/// Restart identity of a container within its pod: its name, else its command line.
pub(super) fn restart_key(c: &Container) -> String {
    c.meta
        .container_name
        .clone()
        .unwrap_or_else(|| format!("argv:{}", c.argv.join("\u{1f}")))
}

/// Delays that roughly double (10 s, 20 s, 40 s ...) are the kubelet's crash-loop back-off.
fn looks_like_crash_loop(backoffs: &[f64]) -> bool {
    backoffs.len() >= 2
        && backoffs
            .windows(2)
            .all(|w| w[0] > 0.0 && w[1] >= w[0] * 1.5)
}

impl Engine {
    pub(super) fn on_fork(&mut self, ev: &KernelEvent, child: u32) {
        let (container_id, joined_mnt) = match self.procs.get(&ev.tgid) {
            Some(p) => (p.container_id.clone(), p.joined_mnt),
            None => (
                self.cgroups
                    .get(&ev.cgroup_id)
                    .and_then(|c| c.container_id.clone()),
                false,
            ),
        };
        let p = self.proc_mut(child, &ev.comm);
        p.parent = ev.tgid;
        p.comm.clone_from(&ev.comm);
        // An exited pid reused by the kernel must not inherit the old process's facts.
        p.kill = None;
        p.oom = false;
        p.exec_started_ns = None;
        p.container_id = container_id;
        p.joined_mnt = joined_mnt;
    }

    pub(super) fn on_setns(&mut self, ev: &KernelEvent, nstype: u64, ret: i32) {
        if ret != 0 {
            return;
        }
        if nstype & CLONE_NEWNS != 0 {
            self.proc_mut(ev.tgid, &ev.comm).joined_mnt = true;
        }
        if nstype & (CLONE_NEWIPC | CLONE_NEWUTS) != 0 {
            if let Some(cid) = self
                .cgroups
                .get(&ev.cgroup_id)
                .and_then(|c| c.container_id.clone())
            {
                if let Some(c) = self.containers.get_mut(&cid) {
                    c.joins_namespaces = true;
                }
            }
        }
    }

    pub(super) fn on_unshare(&mut self, ev: &KernelEvent, flags: u64) {
        if flags & (CLONE_NEWIPC | CLONE_NEWUTS) == 0 {
            return;
        }
        if let Some(cid) = self
            .cgroups
            .get(&ev.cgroup_id)
            .and_then(|c| c.container_id.clone())
        {
            if let Some(c) = self.containers.get_mut(&cid) {
                c.creates_namespaces = true;
            }
        }
    }

    pub(super) fn on_exec(
        &mut self,
        ev: &KernelEvent,
        filename: &str,
        argv: &[String],
        out: &mut Vec<LifecycleEvent>,
    ) {
        let from_cgroup = self
            .cgroups
            .get(&ev.cgroup_id)
            .and_then(|c| c.container_id.clone());
        if from_cgroup.is_none()
            && !self.cgroups.contains_key(&ev.cgroup_id)
            && ev.cgroup_id > 1
            && !self.procs.contains_key(&ev.tgid)
        {
            self.failures.unknown_cgroup += 1;
        }
        let p = self.proc_mut(ev.tgid, &ev.comm);
        p.comm.clone_from(&ev.comm);
        if p.container_id.is_none() {
            p.container_id = from_cgroup;
        }
        let Some(cid) = p.container_id.clone() else {
            return;
        };
        if is_runtime_exec(filename) {
            return;
        }
        let joined = p.joined_mnt;
        let first_exec = p.exec_started_ns.is_none();
        let Some(c) = self.containers.get_mut(&cid) else {
            return;
        };
        let uid = c.pod_uid.clone();
        let running = c.init_pid.is_some() && c.exited_ns.is_none();
        if joined && running {
            if first_exec {
                let p = self.proc_mut(ev.tgid, &ev.comm);
                p.exec_started_ns = Some(ev.ts_ns);
                p.argv = argv.to_vec();
                out.push(self.event(
                    ev.ts_ns,
                    &uid,
                    Some(&cid),
                    LifecycleKind::ExecStarted {
                        pid: ev.tgid,
                        argv: argv.to_vec(),
                    },
                ));
            }
            return;
        }
        if c.init_pid.is_some() {
            if let Some(p) = self.procs.get_mut(&ev.tgid) {
                p.argv = argv.to_vec();
            }
            return;
        }
        c.init_pid = Some(ev.tgid);
        c.started_ns = Some(ev.ts_ns);
        c.argv = argv.to_vec();
        // Without metadata: the pod's first container that creates its own IPC/UTS namespaces
        // (rather than joining another's), or that runs the pause binary, is the sandbox.
        let evidence = (c.creates_namespaces && !c.joins_namespaces)
            || filename.ends_with("/pause")
            || ev.comm == "pause";
        let pod_has_sandbox = self.pods.get(&uid).is_some_and(|p| p.sandbox_id.is_some());
        let c = self.containers.get_mut(&cid).expect("looked up above");
        let sandbox = c.is_sandbox() || (c.meta.kind.is_none() && !pod_has_sandbox && evidence);
        if sandbox {
            c.meta.kind.get_or_insert(ContainerKind::Sandbox);
        }
        let kind = c.meta.kind.map(|k| k.as_str().to_string());
        let created = c.created_ns;
        let key = restart_key(c);
        if let Some(p) = self.procs.get_mut(&ev.tgid) {
            p.argv = argv.to_vec();
        }
        if sandbox {
            if let Some(pod) = self.pods.get_mut(&uid) {
                pod.state = PodState::Running;
                pod.sandbox_id = Some(cid.clone());
            }
            out.push(self.event(
                ev.ts_ns,
                &uid,
                Some(&cid),
                LifecycleKind::SandboxStarted { pid: ev.tgid },
            ));
            return;
        }
        out.push(self.event(
            created,
            &uid,
            Some(&cid),
            LifecycleKind::ContainerCreated { kind: kind.clone() },
        ));
        out.push(self.event(
            ev.ts_ns,
            &uid,
            Some(&cid),
            LifecycleKind::ContainerStarted {
                pid: ev.tgid,
                argv: argv.to_vec(),
                kind,
            },
        ));
        let restart = self.pods.get_mut(&uid).and_then(|pod| {
            pod.state = PodState::Running;
            pod.last_exit
                .get_mut(&key)
                .map(|(exit_ts, attempt, backoffs)| {
                    let backoff_s = ev.ts_ns.saturating_sub(*exit_ts) as f64 / 1e9;
                    backoffs.push(backoff_s);
                    (*attempt + 1, backoff_s, looks_like_crash_loop(backoffs))
                })
        });
        if let Some((attempt, backoff_s, crash_loop)) = restart {
            if let Some(c) = self.containers.get_mut(&cid) {
                c.attempt = attempt;
            }
            out.push(self.event(
                ev.ts_ns,
                &uid,
                Some(&cid),
                LifecycleKind::ContainerRestarted {
                    attempt,
                    backoff_s,
                    crash_loop,
                },
            ));
        }
    }

    pub(super) fn on_exit(
        &mut self,
        ev: &KernelEvent,
        status: Option<ExitStatus>,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let proc = self.procs.remove(&ev.tgid);
        let cid = proc
            .as_ref()
            .and_then(|p| p.container_id.clone())
            .or_else(|| {
                self.cgroups
                    .get(&ev.cgroup_id)
                    .and_then(|c| c.container_id.clone())
            });
        let Some(cid) = cid else {
            return;
        };
        let proc = proc.unwrap_or_else(|| Proc::new(0, &ev.comm));
        let Some(c) = self.containers.get(&cid) else {
            return;
        };
        let uid = c.pod_uid.clone();
        let is_init = c.init_pid == Some(ev.tgid) && c.exited_ns.is_none();
        let code = status.and_then(|s| s.code);
        let signal = status.and_then(|s| s.signal);
        if let (Some(sig), Some(s)) = (signal, status) {
            if is_crash_signal(sig) {
                out.push(self.event(
                    ev.ts_ns,
                    &uid,
                    Some(&cid),
                    LifecycleKind::ProcessCrashed {
                        pid: ev.tgid,
                        comm: ev.comm.clone(),
                        signal: signal_name(sig),
                        core_dumped: s.core_dumped,
                        is_init,
                    },
                ));
            }
        }
        if let Some(started) = proc.exec_started_ns {
            self.finish_exec(ev, &uid, &cid, &proc, started, code, signal, out);
            return;
        }
        if !is_init {
            return;
        }
        let c = self.containers.get_mut(&cid).expect("looked up above");
        c.exited_ns = Some(ev.ts_ns);
        if c.is_sandbox() {
            if let Some(pod) = self.pods.get_mut(&uid) {
                if pod.removed_ns.is_none() {
                    pod.state = PodState::Stopped;
                }
            }
            out.push(self.event(
                ev.ts_ns,
                &uid,
                Some(&cid),
                LifecycleKind::SandboxStopped {
                    pid: ev.tgid,
                    exit_code: code,
                    signal: signal.map(signal_name),
                },
            ));
            return;
        }
        let stop = c.stop.clone();
        let key = restart_key(c);
        let attempt = c.attempt;
        let (reason, killed_by, sender) = match (proc.oom, code, signal, &proc.kill) {
            (true, ..) => ("OOMKilled", Some("oom_killer"), None),
            (false, Some(0), ..) => ("Completed", stop.as_ref().map(|_| "runtime_stop"), None),
            (false, Some(_), ..) => ("Error", stop.as_ref().map(|_| "runtime_stop"), None),
            (false, None, Some(_), Some(k)) => {
                let by = if k.sender.pid == ev.tgid {
                    "self"
                } else if k.by_kernel {
                    "kernel"
                } else if is_runtime_comm(&k.sender.comm) {
                    if k.sig == SIGKILL && stop.is_some() {
                        "grace_overrun"
                    } else {
                        "runtime_stop"
                    }
                } else {
                    "process"
                };
                ("Signaled", Some(by), Some(k.sender.clone()))
            }
            (false, None, Some(_), None) => {
                ("Signaled", stop.as_ref().map(|_| "runtime_stop"), None)
            }
            _ => ("Unknown", None, None),
        };
        let termination_s = stop
            .as_ref()
            .map(|s| ev.ts_ns.saturating_sub(s.ts) as f64 / 1e9);
        if let Some(pod) = self.pods.get_mut(&uid) {
            let backoffs = pod
                .last_exit
                .get(&key)
                .map(|e| e.2.clone())
                .unwrap_or_default();
            pod.last_exit.insert(key, (ev.ts_ns, attempt, backoffs));
        }
        out.push(self.event(
            ev.ts_ns,
            &uid,
            Some(&cid),
            LifecycleKind::ContainerExited {
                pid: ev.tgid,
                exit_code: code.or(signal.map(|s| 128 + s)),
                signal: signal.map(signal_name),
                reason: reason.into(),
                killed_by: killed_by.map(str::to_string),
                sender,
                termination_s,
            },
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_exec(
        &mut self,
        ev: &KernelEvent,
        uid: &str,
        cid: &str,
        proc: &Proc,
        started: u64,
        code: Option<i32>,
        signal: Option<i32>,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let timed_out = signal == Some(SIGKILL)
            && proc.kill.as_ref().is_some_and(|k| {
                k.sender.comm.starts_with("containerd-shim") || k.sender.comm.starts_with("conmon")
            });
        let failed = timed_out || code != Some(0);
        let probe_recurrence = self.cfg.probe_recurrence;
        let spec_probe = self.pods.get(uid).and_then(|p| {
            let name = self
                .containers
                .get(cid)
                .and_then(|c| c.meta.container_name.clone());
            p.meta
                .exec_probes
                .iter()
                .find(|(cname, _, argv)| {
                    *argv == proc.argv && name.as_deref().is_none_or(|n| n == cname)
                })
                .map(|(_, kind, _)| kind.clone())
        });
        let Some(c) = self.containers.get_mut(cid) else {
            return;
        };
        let (runs, fails) = c.exec_counts.entry(proc.argv.clone()).or_insert((0, 0));
        *runs += 1;
        *fails = if failed { *fails + 1 } else { 0 };
        let (runs, fails) = (*runs, *fails);
        if c.exec_counts.len() > 64 {
            // Bound the table: unbounded distinct commands (kubectl exec of scripts) are not probes.
            c.exec_counts.retain(|_, (r, _)| *r > 1);
        }
        let probe =
            spec_probe.or_else(|| (runs >= probe_recurrence).then(|| "exec_probe".to_string()));
        out.push(self.event(
            ev.ts_ns,
            uid,
            Some(cid),
            LifecycleKind::ExecFinished {
                pid: ev.tgid,
                argv: proc.argv.clone(),
                exit_code: code.or(signal.map(|s| 128 + s)),
                signal: signal.map(signal_name),
                duration_ms: ev.ts_ns.saturating_sub(started) as f64 / 1e6,
                timed_out,
                probe: probe.clone(),
            },
        ));
        if probe.is_some() && failed {
            out.push(self.event(
                ev.ts_ns,
                uid,
                Some(cid),
                LifecycleKind::ProbeFailed {
                    argv: proc.argv.clone(),
                    exit_code: code.or(signal.map(|s| 128 + s)),
                    timed_out,
                    probe,
                    consecutive_failures: fails,
                },
            ));
        }
    }

    /// A process that existed before the agent started.
    pub fn bootstrap_process(&mut self, b: BootstrapProcess) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        let Some(cid) = self
            .cgroups
            .get(&b.cgroup_id)
            .and_then(|c| c.container_id.clone())
        else {
            return out;
        };
        let parent_in_same = self
            .procs
            .get(&b.ppid)
            .and_then(|p| p.container_id.as_deref())
            == Some(cid.as_str());
        let p = self.proc_mut(b.tgid, &b.comm);
        p.parent = b.ppid;
        p.argv.clone_from(&b.argv);
        p.container_id = Some(cid.clone());
        let Some(c) = self.containers.get_mut(&cid) else {
            return out;
        };
        if c.init_pid.is_some() || parent_in_same {
            return out;
        }
        c.init_pid = Some(b.tgid);
        c.started_ns = Some(b.start_ns);
        c.argv.clone_from(&b.argv);
        if b.comm == "pause" {
            c.meta.kind.get_or_insert(ContainerKind::Sandbox);
        }
        let uid = c.pod_uid.clone();
        let kind = if c.is_sandbox() {
            LifecycleKind::SandboxStarted { pid: b.tgid }
        } else {
            LifecycleKind::ContainerStarted {
                pid: b.tgid,
                argv: b.argv.clone(),
                kind: c.meta.kind.map(|k| k.as_str().into()),
            }
        };
        let mut e = self.event(b.start_ns, &uid, Some(&cid), kind);
        e.source = Source::Bootstrap;
        out.push(e);
        self.record(&out);
        out
    }
}
