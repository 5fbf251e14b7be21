//! Pod and container cgroups: PodAdmitted at mkdir of pod<uid>, a container entry at mkdir of
//! its cgroup, PodRemoved at rmdir of pod<uid>, exec sessions recognised at attach.

use super::*;
use crate::cgroup_path;

impl Engine {
    pub(super) fn on_mkdir(
        &mut self,
        ts: u64,
        id: u64,
        path: &str,
        source: Source,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(p) = cgroup_path::parse(path) else {
            return;
        };
        if p.level == cgroup_path::Level::Other {
            return;
        }
        if !self.pods.contains_key(&p.pod_uid) {
            self.new_pod(&p.pod_uid, Some(p.qos));
            let mut e = self.event(ts, &p.pod_uid, None, LifecycleKind::PodAdmitted);
            e.source = source;
            out.push(e);
        }
        if p.container_id.is_none() {
            self.cgroup_paths
                .insert(p.pod_uid.clone(), path.trim_end_matches('/').to_string());
        }
        if let Some(cid) = &p.container_id {
            if !self.containers.contains_key(cid) {
                self.new_container(cid, &p.pod_uid, ts);
            }
        }
        if !self.cgroups.contains_key(&id) {
            if self.cgroups.len() >= self.cfg.max_cgroups {
                if let Some(old) = self.cgroup_order.pop_front() {
                    self.cgroups.remove(&old);
                    self.evictions.cgroups += 1;
                }
            }
            self.cgroup_order.push_back(id);
        }
        self.cgroups.insert(
            id,
            Cgroup {
                pod_uid: p.pod_uid,
                container_id: p.container_id,
                removed_ns: None,
            },
        );
    }

    pub(super) fn new_pod(&mut self, uid: &str, qos: Option<cgroup_path::Qos>) {
        if self.pods.len() >= self.cfg.max_pods {
            // Oldest removed pod first, else the oldest pod.
            let victim = self
                .pod_order
                .iter()
                .find(|u| self.pods.get(*u).is_some_and(|p| p.removed_ns.is_some()))
                .or_else(|| self.pod_order.front())
                .cloned();
            if let Some(v) = victim {
                self.forget_pod(&v);
                self.evictions.pods += 1;
            }
        }
        self.pods.insert(
            uid.to_string(),
            Pod {
                qos,
                meta: PodMeta::default(),
                state: PodState::Pending,
                removed_ns: None,
                containers: Vec::new(),
                sandbox_id: None,
                last_exit: HashMap::new(),
                events: VecDeque::new(),
            },
        );
        self.pod_order.push_back(uid.to_string());
    }

    pub(super) fn new_container(&mut self, cid: &str, pod_uid: &str, ts: u64) {
        if self.containers.len() >= self.cfg.max_containers {
            if let Some(old) = self.container_order.pop_front() {
                self.containers.remove(&old);
                self.evictions.containers += 1;
            }
        }
        self.containers.insert(
            cid.to_string(),
            Container {
                pod_uid: pod_uid.to_string(),
                meta: ContainerMeta::default(),
                created_ns: ts,
                creates_namespaces: false,
                joins_namespaces: false,
                init_pid: None,
                argv: Vec::new(),
                started_ns: None,
                exited_ns: None,
                stop: None,
                attempt: 0,
                exec_counts: HashMap::new(),
            },
        );
        self.container_order.push_back(cid.to_string());
        if let Some(pod) = self.pods.get_mut(pod_uid) {
            pod.containers.push(cid.to_string());
        }
        if let Some(meta) = self.pending_meta.remove(cid) {
            self.set_container_metadata(cid, meta);
        }
    }

    pub(super) fn on_rmdir(&mut self, ts: u64, id: u64, path: &str, out: &mut Vec<LifecycleEvent>) {
        if let Some(c) = self.cgroups.get_mut(&id) {
            c.removed_ns = Some(ts);
        }
        let Some(p) = cgroup_path::parse(path) else {
            return;
        };
        if p.level != cgroup_path::Level::Pod {
            return;
        }
        let Some(pod) = self.pods.get_mut(&p.pod_uid) else {
            return;
        };
        if pod.removed_ns.is_none() {
            pod.removed_ns = Some(ts);
            pod.state = PodState::Removed;
            out.push(self.event(ts, &p.pod_uid, None, LifecycleKind::PodRemoved));
        }
    }

    /// A process moved into a container cgroup. When the container already runs, this is
    /// `runc exec` placing an exec session (probe or kubectl exec).
    pub(super) fn on_attach(&mut self, _ts: u64, id: u64, path: &str, pid: u32) {
        let cid = match self.cgroups.get(&id) {
            Some(c) => c.container_id.clone(),
            None => cgroup_path::parse(path).and_then(|p| p.container_id),
        };
        let Some(cid) = cid else {
            return;
        };
        let running = self
            .containers
            .get(&cid)
            .is_some_and(|c| c.init_pid.is_some() && c.exited_ns.is_none());
        let p = self.proc_mut(pid, "");
        p.container_id = Some(cid);
        if running {
            p.joined_mnt = true;
        }
    }

    /// A cgroup that existed before the agent started.
    pub fn bootstrap_cgroup(&mut self, id: u64, path: &str, now_ns: u64) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        self.on_mkdir(now_ns, id, path, Source::Bootstrap, &mut out);
        self.record(&out);
        if let Some(cid) = cgroup_path::parse(path).and_then(|p| p.container_id) {
            if let Some(pod) = self.containers.get(&cid).map(|c| c.pod_uid.clone()) {
                if let Some(p) = self.pods.get_mut(&pod) {
                    p.state = PodState::Running;
                }
            }
        }
        out
    }
}
