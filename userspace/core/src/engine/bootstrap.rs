//! What existed before the agent started (processes found in /proc), metadata from the runtime
//! or the API server, and the agent's own events on live timelines.

use super::*;

impl Engine {
    /// A process that existed before the agent started. Call after `bootstrap_cgroup` for every
    /// cgroup, parents before children (ascending pids usually are): the first process of a
    /// container whose parent is outside it is the container's init.
    pub fn bootstrap_process(&mut self, b: BootstrapProcess) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        let cid = self
            .cgroups
            .get(&b.cgroup_id)
            .and_then(|c| c.container_id.clone())
            .or_else(|| self.procs.get(&b.ppid).and_then(|p| p.container_id.clone()));
        let Some(cid) = cid else {
            return out;
        };
        let parent_in_same = self
            .procs
            .get(&b.ppid)
            .and_then(|p| p.container_id.as_deref())
            == Some(&*cid);
        let p = self.proc_mut(b.tgid, &b.comm, b.start_ns);
        p.placeholder = false;
        p.parent = b.ppid;
        p.comm = crate::Comm::new(&b.comm);
        p.container_id = Some(cid.clone());
        let Some(c) = self.containers.get_mut(&*cid) else {
            return out;
        };
        if c.init_pid.is_some() || c.exited_ns.is_some() || parent_in_same {
            return out;
        }
        c.init_pid = Some(b.tgid);
        c.started_ns = Some(b.start_ns);
        c.argv.clone_from(&b.argv);
        let pause = b.comm == "pause" || b.argv.first().is_some_and(|a| a.ends_with("/pause"));
        if c.meta.kind.is_none() && pause {
            c.meta.kind = Some(ContainerKind::Sandbox);
        }
        let uid = c.pod_uid.clone();
        let sandbox = c.is_sandbox();
        let kind = if sandbox {
            LifecycleKind::SandboxStarted { pid: b.tgid }
        } else {
            LifecycleKind::ContainerStarted {
                pid: b.tgid,
                argv: b.argv.clone(),
                kind: c.meta.kind,
            }
        };
        c.created_emitted = true;
        if let Some(pod) = self.pods.get_mut(&uid) {
            if sandbox {
                pod.sandbox_id = Some(cid.to_string());
            }
            if pod.state == PodState::Pending {
                pod.state = PodState::Running;
            }
        }
        let mut e = self.event(b.start_ns, &uid, Some(&cid), kind);
        e.source = Source::Bootstrap;
        out.push(e);
        self.record(&out);
        out
    }

    /// Names and facts of a container (OCI annotations, CRI). Fills what is unknown, keeps what
    /// is known; arrives before the container's cgroup is fine (kept until it appears).
    pub fn set_container_metadata(&mut self, container_id: &str, meta: ContainerMeta) {
        let Some(c) = self.containers.get_mut(container_id) else {
            if self.pending_meta.len() >= self.cfg.max_containers.clamp(1, 4096) {
                self.pending_meta.clear();
                self.evictions.pending += 1;
            }
            self.pending_meta.insert(container_id.to_string(), meta);
            return;
        };
        let m = &mut c.meta;
        macro_rules! fill {
            ($($f:ident),*) => {$( if meta.$f.is_some() { m.$f = meta.$f.clone(); } )*};
        }
        fill!(
            pod_uid,
            pod_name,
            namespace,
            container_name,
            kind,
            grace_period_s,
            attempt,
            prestop
        );
        if !meta.probes.is_empty() {
            m.probes = meta.probes.clone();
        }
        let uid = c.pod_uid.clone();
        let name = c.meta.container_name.clone();
        if let Some(pod) = self.pods.get_mut(&uid) {
            if c.meta.kind.is_none() {
                c.meta.kind = name.as_deref().and_then(|n| pod.meta.kind_of(n));
            }
            if pod.meta.name.is_none() {
                pod.meta.name = meta.pod_name;
            }
            if pod.meta.namespace.is_none() {
                pod.meta.namespace = meta.namespace;
            }
            // Events derived before the name was known get it now.
            if name.is_some() {
                for e in pod.events.iter_mut() {
                    if e.container.is_none() && e.container_id.as_deref() == Some(container_id) {
                        e.container.clone_from(&name);
                    }
                }
            }
        }
    }

    /// Names, grace period, exec probes, owner and container kinds of a pod (API server, CRI).
    pub fn set_pod_metadata(&mut self, uid: &str, meta: PodMeta) {
        let Some(p) = self.pods.get_mut(uid) else {
            if self.pending_pod_meta.len() >= self.cfg.max_pods.clamp(1, 4096) {
                self.pending_pod_meta.clear();
                self.evictions.pending += 1;
            }
            self.pending_pod_meta.insert(uid.to_string(), meta);
            return;
        };
        let m = &mut p.meta;
        if meta.name.is_some() {
            m.name = meta.name;
        }
        if meta.namespace.is_some() {
            m.namespace = meta.namespace;
        }
        if meta.grace_period_s.is_some() {
            m.grace_period_s = meta.grace_period_s;
        }
        if !meta.exec_probes.is_empty() {
            m.exec_probes = meta.exec_probes;
        }
        if !meta.net_probes.is_empty() {
            m.net_probes = meta.net_probes;
            m.net_probes.truncate(MAX_NET_PROBES);
        }
        if meta.owner.is_some() {
            m.owner = meta.owner;
        }
        if !meta.container_kinds.is_empty() {
            m.container_kinds = meta.container_kinds;
        }
        // Containers named before the spec was known get their kind from it.
        let kinds = &p.meta;
        for id in &p.containers {
            if let Some(c) = self.containers.get_mut(id) {
                if c.meta.kind.is_none() {
                    c.meta.kind = c
                        .meta
                        .container_name
                        .as_deref()
                        .and_then(|n| kinds.kind_of(n));
                }
            }
        }
    }

    /// Set the cgroup mode when the agent knows it from the mounts (v2, or v1 only).
    pub fn set_cgroup_mode(&mut self, mode: CgroupMode) {
        self.mode = mode;
    }

    fn live_pods(&self) -> Vec<String> {
        self.pod_order
            .iter()
            .filter(|u| self.pods.get(*u).is_some_and(|p| p.removed_ns.is_none()))
            .cloned()
            .collect()
    }

    fn agent_event(&mut self, ts: u64, kind: LifecycleKind) -> Vec<LifecycleEvent> {
        let out: Vec<LifecycleEvent> = self
            .live_pods()
            .iter()
            .map(|u| {
                let mut e = self.event(ts, u, None, kind.clone());
                e.source = Source::Agent;
                e
            })
            .collect();
        self.record(&out);
        out
    }

    /// AgentStarted on the timeline of every live pod.
    pub fn agent_started(&mut self, now_ns: u64) -> Vec<LifecycleEvent> {
        self.agent_event(now_ns, LifecycleKind::AgentStarted)
    }
}
