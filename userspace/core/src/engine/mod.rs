//! The correlation engine: a synchronous state machine from kernel events to pod lifecycle
//! events. `apply` for each kernel event, `expire` on a timer; time only from the events and
//! the caller (no clock of its own), so tests replay recorded sequences without sleeping.

mod cgroups;

pub mod model;
mod process;
mod queries;
mod restore;
mod signals;

use std::collections::{HashMap, VecDeque};

pub use crate::lifecycle::*;
pub use model::*;
pub use queries::{ContainerSummary, PodSummary};

use crate::kernel_event::{KernelEvent, KernelEventKind};

pub struct Engine {
    cfg: EngineConfig,
    pods: HashMap<String, Pod>,
    pod_order: VecDeque<String>,
    containers: HashMap<String, Container>,
    container_order: VecDeque<String>,
    cgroups: HashMap<u64, Cgroup>,
    cgroup_order: VecDeque<u64>,
    procs: HashMap<u32, Proc>,
    /// Pod uid → its cgroup path as the kernel reported it (any driver's layout).
    cgroup_paths: HashMap<String, String>,
    /// Metadata of containers not created yet.
    pending_meta: HashMap<String, ContainerMeta>,
    /// Scope of recent OOM kills by victim pid, told by the agent from cgroupfs counters.
    oom_scope_hints: HashMap<u32, String>,
    evictions: Evictions,
    failures: AttributionFailures,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            cfg,
            pods: HashMap::new(),
            pod_order: VecDeque::new(),
            containers: HashMap::new(),
            container_order: VecDeque::new(),
            cgroups: HashMap::new(),
            cgroup_order: VecDeque::new(),
            procs: HashMap::new(),
            cgroup_paths: HashMap::new(),
            pending_meta: HashMap::new(),
            oom_scope_hints: HashMap::new(),
            evictions: Evictions::default(),
            failures: AttributionFailures::default(),
        }
    }

    /// Derive lifecycle events from one kernel event.
    pub fn apply(&mut self, ev: &KernelEvent) -> Vec<LifecycleEvent> {
        let out = self.derive(ev);
        self.record(&out);
        out
    }

    /// Process everything held back for reordering (nothing yet: events apply at once).
    pub fn flush(&mut self) -> Vec<LifecycleEvent> {
        Vec::new()
    }

    /// Keep derived events on their pod's timeline (bounded per pod).
    fn record(&mut self, out: &[LifecycleEvent]) {
        let max = self.cfg.max_events_per_pod;
        for e in out {
            if let Some(p) = self.pods.get_mut(&e.pod_uid) {
                if p.events.len() >= max {
                    p.events.pop_front();
                    self.evictions.events += 1;
                }
                p.events.push_back(e.clone());
            }
        }
    }

    fn derive(&mut self, ev: &KernelEvent) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        match &ev.kind {
            KernelEventKind::CgroupMkdir { root, id, path, .. } if *root == 0 => {
                self.on_mkdir(ev.ts_ns, *id, path, Source::Kernel, &mut out)
            }
            KernelEventKind::CgroupRmdir { root, id, path, .. } if *root == 0 => {
                self.on_rmdir(ev.ts_ns, *id, path, &mut out)
            }
            KernelEventKind::CgroupAttach {
                root,
                id,
                path,
                pid,
                ..
            } if *root == 0 => self.on_attach(ev.ts_ns, *id, path, *pid),
            KernelEventKind::Fork { child_tgid, .. } => self.on_fork(ev, *child_tgid),
            KernelEventKind::Exec { filename, argv, .. } => {
                self.on_exec(ev, filename, argv, &mut out)
            }
            KernelEventKind::Exit { status } => self.on_exit(ev, *status, &mut out),
            KernelEventKind::Setns { nstype, ret, .. } => self.on_setns(ev, *nstype, *ret),
            KernelEventKind::Unshare { flags } => self.on_unshare(ev, *flags),
            KernelEventKind::SignalGenerate {
                sig,
                target_pid,
                code,
                result,
                ..
            } => self.on_signal(ev, *sig, *target_pid, *code, *result, &mut out),
            KernelEventKind::OomVictim { .. } => self.on_oom(ev, &mut out),
            _ => {}
        }
        out
    }

    /// Drop what is past retention: removed pods and their containers and cgroups.
    pub fn expire(&mut self, now_ns: u64) -> Vec<LifecycleEvent> {
        let keep = self.cfg.removed_retention_ns;
        let old: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| {
                p.removed_ns
                    .is_some_and(|t| now_ns.saturating_sub(t) > keep)
            })
            .map(|(u, _)| u.clone())
            .collect();
        for uid in old {
            self.forget_pod(&uid);
        }
        self.cgroups.retain(|_, c| {
            c.removed_ns
                .is_none_or(|t| now_ns.saturating_sub(t) <= keep)
        });
        let signal_keep = self.cfg.signal_retention_ns;
        for p in self.procs.values_mut() {
            if p.kill
                .as_ref()
                .is_some_and(|k| now_ns.saturating_sub(k.ts) > signal_keep)
            {
                p.kill = None;
            }
        }
        Vec::new()
    }

    fn forget_pod(&mut self, uid: &str) {
        self.cgroup_paths.remove(uid);
        if let Some(p) = self.pods.remove(uid) {
            for c in p.containers {
                self.containers.remove(&c);
            }
        }
        self.pod_order.retain(|u| u != uid);
    }

    /// The agent read cgroupfs counters at an OOM kill and tells which limit fired.
    pub fn set_oom_scope_hint(&mut self, victim_pid: u32, scope: &str) {
        if self.oom_scope_hints.len() > 1024 {
            self.oom_scope_hints.clear();
        }
        self.oom_scope_hints.insert(victim_pid, scope.to_string());
    }

    pub fn set_container_metadata(&mut self, container_id: &str, meta: ContainerMeta) {
        let Some(c) = self.containers.get_mut(container_id) else {
            // Known before its cgroup: kept until the container appears (bounded).
            if self.pending_meta.len() < 1024 {
                self.pending_meta.insert(container_id.to_string(), meta);
            }
            return;
        };
        if let Some(pod) = self.pods.get_mut(&c.pod_uid) {
            if pod.meta.name.is_none() {
                pod.meta.name.clone_from(&meta.pod_name);
            }
            if pod.meta.namespace.is_none() {
                pod.meta.namespace.clone_from(&meta.namespace);
            }
        }
        c.meta = meta;
    }

    pub fn set_pod_metadata(&mut self, uid: &str, meta: PodMeta) {
        if let Some(p) = self.pods.get_mut(uid) {
            p.meta = meta;
        }
    }

    fn event(
        &self,
        ts_ns: u64,
        pod_uid: &str,
        container_id: Option<&str>,
        kind: LifecycleKind,
    ) -> LifecycleEvent {
        let container = container_id
            .and_then(|id| self.containers.get(id))
            .and_then(|c| c.meta.container_name.clone());
        LifecycleEvent {
            ts_ns,
            pod_uid: pod_uid.to_string(),
            container_id: container_id.map(str::to_string),
            container,
            source: Source::Kernel,
            kind,
        }
    }

    fn proc_mut(&mut self, tgid: u32, comm: &str) -> &mut Proc {
        if !self.procs.contains_key(&tgid) && self.procs.len() >= self.cfg.max_processes {
            self.evict_process();
        }
        self.procs.entry(tgid).or_insert_with(|| Proc::new(0, comm))
    }

    /// Processes are evicted oldest pid first among those without a container, else any.
    fn evict_process(&mut self) {
        let victim = self
            .procs
            .iter()
            .filter(|(_, p)| p.container_id.is_none())
            .map(|(k, _)| *k)
            .min()
            .or_else(|| self.procs.keys().min().copied());
        if let Some(v) = victim {
            self.procs.remove(&v);
            self.evictions.processes += 1;
        }
    }
}
