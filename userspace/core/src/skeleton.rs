//! A first, minimal correlation engine (walking skeleton): pods from cgroup mkdir/rmdir,
//! container starts from the init's exec inside the container cgroup, exits of the init.
//! The complete rule set replaces it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cgroup_path::{self, Qos};
use crate::kernel_event::{KernelEvent, KernelEventKind};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_pods: usize,
    pub max_processes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_pods: 10_000,
            max_processes: 200_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerKind {
    Sandbox,
    Init,
    App,
    Sidecar,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerMeta {
    pub pod_uid: Option<String>,
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    pub container_name: Option<String>,
    pub kind: Option<ContainerKind>,
    pub grace_period_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapProcess {
    pub tgid: u32,
    pub ppid: u32,
    pub cgroup_id: u64,
    pub comm: String,
    pub argv: Vec<String>,
    pub start_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Kernel,
    Bootstrap,
    Agent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    pub ts_ns: u64,
    pub pod_uid: String,
    pub container_id: Option<String>,
    pub container: Option<String>,
    pub source: Source,
    #[serde(flatten)]
    pub kind: LifecycleKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LifecycleKind {
    PodAdmitted,
    SandboxStarted {
        pid: u32,
    },
    ContainerStarted {
        pid: u32,
        argv: Vec<String>,
    },
    ContainerExited {
        pid: u32,
        exit_code: Option<i32>,
        signal: Option<String>,
        reason: String,
        killed_by: Option<String>,
    },
    PodRemoved,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    pub name: Option<String>,
    pub id: String,
    pub kind: Option<ContainerKind>,
    pub restarts: u32,
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodSummary {
    pub uid: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub qos: Option<Qos>,
    pub state: &'static str,
    pub containers: Vec<ContainerSummary>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    pub pods: usize,
    pub processes: usize,
}

struct Container {
    pod_uid: String,
    meta: ContainerMeta,
    init_pid: Option<u32>,
    exited: bool,
}

struct Pod {
    qos: Option<Qos>,
    meta: PodMeta,
    removed: bool,
    containers: Vec<String>,
}

pub struct Engine {
    cfg: EngineConfig,
    pods: HashMap<String, Pod>,
    pod_order: Vec<String>,
    containers: HashMap<String, Container>,
    cgroups: HashMap<u64, (String, Option<String>)>,
    /// tgid → container id, for processes seen in a container.
    procs: HashMap<u32, String>,
}

/// runc's own re-execs inside the container cgroup are not the entrypoint.
fn is_runtime_exec(filename: &str) -> bool {
    filename == "/proc/self/exe"
        || filename.starts_with("/dev/fd/")
        || filename.starts_with("/memfd:")
}

fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES
        .get(sig as usize)
        .map_or_else(|| format!("SIG{sig}"), |s| s.to_string())
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            cfg,
            pods: HashMap::new(),
            pod_order: Vec::new(),
            containers: HashMap::new(),
            cgroups: HashMap::new(),
            procs: HashMap::new(),
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

    fn ensure_pod(&mut self, uid: &str, qos: Qos) -> bool {
        if self.pods.contains_key(uid) {
            return false;
        }
        self.pods.insert(
            uid.to_string(),
            Pod {
                qos: Some(qos),
                meta: PodMeta::default(),
                removed: false,
                containers: Vec::new(),
            },
        );
        self.pod_order.push(uid.to_string());
        if self.pod_order.len() > self.cfg.max_pods {
            let old = self.pod_order.remove(0);
            if let Some(p) = self.pods.remove(&old) {
                for c in p.containers {
                    self.containers.remove(&c);
                }
            }
        }
        true
    }

    fn on_mkdir(&mut self, id: u64, path: &str, ts: u64) -> Vec<LifecycleEvent> {
        let Some(p) = cgroup_path::parse(path) else {
            return vec![];
        };
        let mut out = vec![];
        if self.ensure_pod(&p.pod_uid, p.qos) && p.container_id.is_none() {
            out.push(self.event(ts, &p.pod_uid, None, LifecycleKind::PodAdmitted));
        }
        if let Some(cid) = &p.container_id {
            if !self.containers.contains_key(cid) {
                self.containers.insert(
                    cid.clone(),
                    Container {
                        pod_uid: p.pod_uid.clone(),
                        meta: ContainerMeta::default(),
                        init_pid: None,
                        exited: false,
                    },
                );
                if let Some(pod) = self.pods.get_mut(&p.pod_uid) {
                    pod.containers.push(cid.clone());
                }
            }
        }
        self.cgroups.insert(id, (p.pod_uid, p.container_id));
        out
    }

    pub fn apply(&mut self, ev: &KernelEvent) -> Vec<LifecycleEvent> {
        match &ev.kind {
            KernelEventKind::CgroupMkdir {
                root: 0, id, path, ..
            } => self.on_mkdir(*id, path, ev.ts_ns),
            KernelEventKind::CgroupRmdir {
                root: 0, id, path, ..
            } => {
                self.cgroups.remove(id);
                match cgroup_path::parse(path) {
                    Some(p) if p.container_id.is_none() => match self.pods.get_mut(&p.pod_uid) {
                        Some(pod) if !pod.removed => {
                            pod.removed = true;
                            vec![self.event(ev.ts_ns, &p.pod_uid, None, LifecycleKind::PodRemoved)]
                        }
                        _ => vec![],
                    },
                    _ => vec![],
                }
            }
            KernelEventKind::Exec { filename, argv, .. } => {
                let Some((uid, Some(cid))) = self.cgroups.get(&ev.cgroup_id).cloned() else {
                    return vec![];
                };
                if self.procs.len() < self.cfg.max_processes {
                    self.procs.insert(ev.tgid, cid.clone());
                }
                let Some(c) = self.containers.get_mut(&cid) else {
                    return vec![];
                };
                if c.init_pid.is_some() || is_runtime_exec(filename) {
                    return vec![];
                }
                c.init_pid = Some(ev.tgid);
                let sandbox = c.meta.kind == Some(ContainerKind::Sandbox)
                    || filename.ends_with("/pause")
                    || ev.comm == "pause";
                let kind = if sandbox {
                    LifecycleKind::SandboxStarted { pid: ev.tgid }
                } else {
                    LifecycleKind::ContainerStarted {
                        pid: ev.tgid,
                        argv: argv.clone(),
                    }
                };
                vec![self.event(ev.ts_ns, &uid, Some(&cid), kind)]
            }
            KernelEventKind::Exit { status } => {
                let Some(cid) = self.procs.remove(&ev.tgid) else {
                    return vec![];
                };
                let Some(c) = self.containers.get_mut(&cid) else {
                    return vec![];
                };
                if c.init_pid != Some(ev.tgid) || c.exited {
                    return vec![];
                }
                c.exited = true;
                let uid = c.pod_uid.clone();
                let exit_code = status
                    .and_then(|s| s.code)
                    .or(status.and_then(|s| s.signal).map(|s| 128 + s));
                let signal = status.and_then(|s| s.signal);
                let reason = match (status.and_then(|s| s.code), signal) {
                    (Some(0), _) => "Completed",
                    (Some(_), _) => "Error",
                    (None, Some(_)) => "Signaled",
                    _ => "Unknown",
                };
                let kind = LifecycleKind::ContainerExited {
                    pid: ev.tgid,
                    exit_code,
                    signal: signal.map(signal_name),
                    reason: reason.into(),
                    killed_by: None,
                };
                vec![self.event(ev.ts_ns, &uid, Some(&cid), kind)]
            }
            _ => vec![],
        }
    }

    pub fn expire(&mut self, _now_ns: u64) -> Vec<LifecycleEvent> {
        vec![]
    }

    pub fn bootstrap_cgroup(&mut self, id: u64, path: &str, now_ns: u64) -> Vec<LifecycleEvent> {
        let mut out = self.on_mkdir(id, path, now_ns);
        for e in &mut out {
            e.source = Source::Bootstrap;
        }
        out
    }

    pub fn bootstrap_process(&mut self, p: BootstrapProcess) -> Vec<LifecycleEvent> {
        if let Some((_, Some(cid))) = self.cgroups.get(&p.cgroup_id).cloned() {
            self.procs.insert(p.tgid, cid);
        }
        vec![]
    }

    pub fn set_container_metadata(&mut self, container_id: &str, meta: ContainerMeta) {
        if let Some(c) = self.containers.get_mut(container_id) {
            if let Some(pod) = self.pods.get_mut(&c.pod_uid) {
                pod.meta.name = pod.meta.name.take().or(meta.pod_name.clone());
                pod.meta.namespace = pod.meta.namespace.take().or(meta.namespace.clone());
            }
            c.meta = meta;
        }
    }

    pub fn pod_meta(&self, uid: &str) -> Option<PodMeta> {
        self.pods.get(uid).map(|p| p.meta.clone())
    }

    pub fn pod_uids(&self) -> Vec<String> {
        self.pod_order.clone()
    }

    pub fn pod_summary(&self, uid: &str) -> Option<PodSummary> {
        let p = self.pods.get(uid)?;
        let containers = p
            .containers
            .iter()
            .filter_map(|id| self.containers.get(id).map(|c| (id, c)))
            .map(|(id, c)| ContainerSummary {
                name: c.meta.container_name.clone(),
                id: id.clone(),
                kind: c.meta.kind,
                restarts: 0,
                state: if c.exited {
                    "Exited"
                } else if c.init_pid.is_some() {
                    "Running"
                } else {
                    "Created"
                },
            })
            .collect();
        Some(PodSummary {
            uid: uid.to_string(),
            namespace: p.meta.namespace.clone(),
            name: p.meta.name.clone(),
            qos: p.qos,
            state: if p.removed { "Removed" } else { "Running" },
            containers,
        })
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            pods: self.pods.len(),
            processes: self.procs.len(),
        }
    }
}
