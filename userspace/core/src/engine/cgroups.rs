//! Pods and containers from cgroup directories: PodAdmitted at mkdir of `pod<uid>`, a container
//! entry at mkdir of its cgroup, PodRemoved at rmdir of `pod<uid>`, processes placed into
//! containers at attach. cgroup v2 (root 0) ids are the ones processes carry; v1 events are used
//! only on a node without cgroup v2, by path and pid (their ids are another numbering).

use super::*;
use crate::cgroup_path::{self, CgroupPath, Level};

/// The parts of a cgroup event the rules use.
struct CgroupEvent<'a> {
    op: Op,
    root: i32,
    id: u64,
    path: &'a str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Mkdir,
    Rmdir,
    Attach(u32),
}

fn split(ev: &KernelEvent) -> Option<CgroupEvent<'_>> {
    let (op, root, id, path) = match &ev.kind {
        KernelEventKind::CgroupMkdir { root, id, path, .. } => (Op::Mkdir, *root, *id, path),
        KernelEventKind::CgroupRmdir { root, id, path, .. } => (Op::Rmdir, *root, *id, path),
        KernelEventKind::CgroupAttach {
            root,
            id,
            path,
            pid,
            ..
        } => (Op::Attach(*pid), *root, *id, path),
        _ => return None,
    };
    Some(CgroupEvent { op, root, id, path })
}

impl Engine {
    /// Anchor attribution at this node's kubepods root (`cgroup_path::node_root` of the agent's
    /// own cgroup). Without it the first kubepods root of each path anchors.
    pub fn set_node_root(&mut self, root: Option<String>) {
        self.node_root = root;
    }

    /// What a cgroup path names, by the one grammar every pod check of the engine and the agent
    /// uses (anchored at the node's root).
    pub fn parse_cgroup_path(&self, path: &str) -> Option<CgroupPath> {
        cgroup_path::parse_under(path, self.node_root.as_deref())
    }

    /// A cgroup event naming a pod, of cgroup v2 (`v2`) or of a v1 hierarchy.
    pub(super) fn is_pod_event(&self, ev: &KernelEvent, v2: bool) -> bool {
        split(ev).is_some_and(|c| (c.root == 0) == v2 && self.parse_cgroup_path(c.path).is_some())
    }

    pub(super) fn on_cgroup(&mut self, ev: &KernelEvent, out: &mut Vec<LifecycleEvent>) {
        let Some(c) = split(ev) else {
            return;
        };
        let Some(parsed) = self.parse_cgroup_path(c.path) else {
            if cgroup_path::looks_like_pod_path(c.path) && c.op == Op::Mkdir {
                self.failures.unparsed_path += 1;
            }
            return;
        };
        let v2 = c.root == 0;
        match self.mode {
            CgroupMode::V2 if !v2 => return,
            CgroupMode::V1 if v2 => return,
            // Decided by the reorder buffer before this event was released; an event pushed
            // out by the buffer bound decides by itself.
            CgroupMode::Auto => self.mode = if v2 { CgroupMode::V2 } else { CgroupMode::V1 },
            _ => {}
        }
        self.apply_cgroup(ev.ts_ns, &c, &parsed, Source::Kernel, out);
    }

    fn apply_cgroup(
        &mut self,
        ts: u64,
        c: &CgroupEvent<'_>,
        p: &CgroupPath,
        source: Source,
        out: &mut Vec<LifecycleEvent>,
    ) {
        // Register what the path names first: an attach or rmdir whose mkdir came late (or was
        // before the agent) still creates the pod and the container.
        if c.op != Op::Rmdir || self.pods.contains_key(&p.pod_uid) {
            self.ensure_pod(ts, p, source, out);
            if p.level == Level::Container {
                if let Some(cid) = &p.container_id {
                    self.ensure_container(cid, &p.pod_uid, ts);
                    if let Some(k) = self.containers.get_mut(cid.as_str()) {
                        // The first path seen names it (mkdir, else an attach or the rescan).
                        k.cgroup_path
                            .get_or_insert_with(|| c.path.trim_end_matches('/').to_string());
                    }
                }
            }
        }
        let ids_comparable = self.mode != CgroupMode::V1 || source == Source::Bootstrap;
        let names_something = p.level != Level::Other || p.container_id.is_some();
        if ids_comparable && names_something && self.pods.contains_key(&p.pod_uid) {
            self.register_cgroup(c.id, p);
        }
        match c.op {
            Op::Mkdir => {
                if p.level == Level::Pod {
                    self.pod_paths
                        .insert(p.pod_uid.clone(), c.path.trim_end_matches('/').to_string());
                }
            }
            Op::Rmdir => self.on_rmdir(ts, c.id, p, out),
            Op::Attach(pid) => self.on_attach(ts, c.id, p, pid),
        }
    }

    fn register_cgroup(&mut self, id: u64, p: &CgroupPath) {
        if !self.cgroups.contains_key(&id) {
            while self.cgroups.len() >= self.cfg.max_cgroups.max(1) {
                let Some(old) = self.evict_cgroup_candidate() else {
                    break;
                };
                self.cgroups.remove(&old);
                self.evictions.cgroups += 1;
            }
            self.cgroup_order.push_back(id);
        }
        self.cgroups.insert(
            id,
            Cgroup {
                pod_uid: p.pod_uid.clone(),
                container_id: p.container_id.as_deref().map(ContainerId::from),
                removed_ns: None,
            },
        );
    }

    fn evict_cgroup_candidate(&mut self) -> Option<u64> {
        let removed = self
            .cgroup_order
            .iter()
            .position(|id| self.cgroups.get(id).is_some_and(|c| c.removed_ns.is_some()));
        match removed {
            Some(i) => self.cgroup_order.remove(i),
            None => self.cgroup_order.pop_front(),
        }
    }

    fn ensure_pod(
        &mut self,
        ts: u64,
        p: &CgroupPath,
        source: Source,
        out: &mut Vec<LifecycleEvent>,
    ) {
        if let Some(pod) = self.pods.get_mut(&p.pod_uid) {
            pod.qos.get_or_insert(p.qos);
            return;
        }
        self.new_pod(&p.pod_uid, Some(p.qos), ts);
        let mut e = self.event(ts, &p.pod_uid, None, LifecycleKind::PodAdmitted);
        e.source = source;
        out.push(e);
    }

    pub(super) fn new_pod(&mut self, uid: &str, qos: Option<cgroup_path::Qos>, ts: u64) {
        while self.pods.len() >= self.cfg.max_pods.max(1) {
            // Oldest removed pod first, else the oldest pod.
            let victim = self
                .pod_order
                .iter()
                .find(|u| self.pods.get(*u).is_some_and(|p| p.removed_ns.is_some()))
                .or_else(|| self.pod_order.front())
                .cloned();
            let Some(v) = victim else {
                break;
            };
            self.forget_pod(&v);
            self.evictions.pods += 1;
        }
        let meta = self.pending_pod_meta.remove(uid).unwrap_or_default();
        self.pods.insert(
            uid.to_string(),
            Box::new(Pod {
                qos,
                meta,
                state: PodState::Pending,
                admitted_ns: ts,
                removed_ns: None,
                containers: Vec::new(),
                sandbox_id: None,
                restarts: HashMap::new(),
                deletion_ns: None,
                probe_messages: ProbeMessages::default(),
                events: VecDeque::new(),
            }),
        );
        self.pod_order.push_back(uid.to_string());
    }

    pub(super) fn ensure_container(&mut self, cid: &str, pod_uid: &str, ts: u64) {
        if self.containers.contains_key(cid) {
            return;
        }
        while self.containers.len() >= self.cfg.max_containers.max(1) {
            if !self.evict_container() {
                break;
            }
        }
        self.containers.insert(
            cid.to_string(),
            Box::new(Container {
                pod_uid: pod_uid.to_string(),
                meta: ContainerMeta::default(),
                created_ns: ts,
                cgroup_removed_ns: None,
                cgroup_path: None,
                creates_namespaces: false,
                joins_namespaces: false,
                created_emitted: false,
                init_pid: None,
                argv: Vec::new(),
                started_ns: None,
                exited_ns: None,
                exit_code: None,
                stop: None,
                attempt: 0,
                exec_counts: HashMap::new(),
                net: NetState::default(),
            }),
        );
        self.container_order.push_back(cid.to_string());
        if let Some(pod) = self.pods.get_mut(pod_uid) {
            pod.containers.push(cid.to_string());
        }
        if let Some(meta) = self.pending_meta.remove(cid) {
            self.set_container_metadata(cid, meta);
        }
    }

    fn on_rmdir(&mut self, ts: u64, id: u64, p: &CgroupPath, out: &mut Vec<LifecycleEvent>) {
        if let Some(c) = self.cgroups.get_mut(&id) {
            c.removed_ns = Some(ts);
        }
        match p.level {
            Level::Container => {
                if let Some(c) = p
                    .container_id
                    .as_ref()
                    .and_then(|c| self.containers.get_mut(c))
                {
                    c.cgroup_removed_ns.get_or_insert(ts);
                }
            }
            Level::Pod => {
                let Some(pod) = self.pods.get_mut(&p.pod_uid) else {
                    return;
                };
                if pod.removed_ns.is_none() {
                    pod.removed_ns = Some(ts);
                    pod.state = PodState::Removed;
                    out.push(self.event(ts, &p.pod_uid, None, LifecycleKind::PodRemoved));
                }
            }
            Level::Other => {}
        }
    }

    /// A process moved into a container cgroup. Into a running container that is how
    /// `runc exec` places an exec session (probe or kubectl exec).
    fn on_attach(&mut self, ts: u64, id: u64, p: &CgroupPath, pid: u32) {
        // The registered cgroup's id is shared; a fresh one only for unregistered cgroups.
        let registered = self.cgroups.get(&id).and_then(|g| g.container_id.clone());
        let Some(cid) = registered.or_else(|| p.container_id.as_deref().map(ContainerId::from))
        else {
            return;
        };
        if self.exited.get(&pid).is_some_and(|&t| t >= ts) {
            return;
        }
        let running = self.containers.get(&*cid).is_some_and(|c| c.running());
        let proc = self.proc_mut(pid, "", ts);
        proc.placeholder = false;
        proc.container_id = Some(cid);
        if running && proc.role == SessionRole::None {
            proc.role = SessionRole::Candidate;
        }
    }

    /// A cgroup that existed before the agent started (the agent walks the cgroup v2 tree,
    /// or a v1 hierarchy on a node without v2: ids are then the walked hierarchy's).
    pub fn bootstrap_cgroup(&mut self, id: u64, path: &str, now_ns: u64) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        let Some(p) = self.parse_cgroup_path(path) else {
            return out;
        };
        let c = CgroupEvent {
            op: Op::Mkdir,
            root: 0,
            id,
            path,
        };
        self.apply_cgroup(now_ns, &c, &p, Source::Bootstrap, &mut out);
        if let Some(pod) = self.pods.get_mut(&p.pod_uid) {
            if p.level == Level::Container && pod.state == PodState::Pending {
                pod.state = PodState::Running;
            }
        }
        self.record(&out);
        out
    }

    pub(super) fn forget_pod(&mut self, uid: &str) {
        self.pod_paths.remove(uid);
        if let Some(p) = self.pods.remove(uid) {
            for c in p.containers {
                self.containers.remove(&c);
            }
        }
        self.cgroups.retain(|_, c| c.pod_uid != uid);
        self.pod_order.retain(|u| u != uid);
    }
}
