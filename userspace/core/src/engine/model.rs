//! What the engine knows about pods, containers and processes.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::cgroup_path::Qos;
use crate::lifecycle::Sender;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_pods: usize,
    pub max_containers: usize,
    pub max_processes: usize,
    pub max_cgroups: usize,
    /// Removed pods and their containers are kept this long (late events still resolve).
    pub removed_retention_ns: u64,
    /// Signal facts (who sent what to whom) are kept this long waiting for the exit.
    pub signal_retention_ns: u64,
    /// A command that runs this many times in one container is taken for a probe.
    pub probe_recurrence: u32,
    /// Derived events kept per pod for its timeline.
    pub max_events_per_pod: usize,
    /// Node name put on timelines.
    pub node_name: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_pods: 10_000,
            max_containers: 50_000,
            max_processes: 200_000,
            max_cgroups: 60_000,
            removed_retention_ns: 10 * 60 * 1_000_000_000,
            signal_retention_ns: 10 * 60 * 1_000_000_000,
            probe_recurrence: 2,
            max_events_per_pod: 2_000,
            node_name: None,
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

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Init => "init",
            Self::App => "app",
            Self::Sidecar => "sidecar",
        }
    }
}

/// Names and facts from the runtime (OCI bundle annotations, CRI) or the API server.
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
    pub grace_period_s: Option<f64>,
    /// Exec probes of the pod spec: (container name, probe type, argv).
    pub exec_probes: Vec<(String, String, Vec<String>)>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Pending,
    Running,
    Terminating,
    Stopped,
    Removed,
}

impl PodState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Terminating => "Terminating",
            Self::Stopped => "Stopped",
            Self::Removed => "Removed",
        }
    }
}

pub struct Pod {
    pub qos: Option<Qos>,
    pub meta: PodMeta,
    pub state: PodState,
    pub removed_ns: Option<u64>,
    /// Container ids in creation order.
    pub containers: Vec<String>,
    /// The pod's sandbox container, once known.
    pub sandbox_id: Option<String>,
    /// Last exit per restart key (name, else argv): (exit ts, attempt, backoffs so far).
    pub last_exit: HashMap<String, (u64, u32, Vec<f64>)>,
    /// Derived events of this pod, in derivation order.
    pub events: VecDeque<super::LifecycleEvent>,
}

/// The runtime asked the container to stop.
#[derive(Debug, Clone)]
pub struct StopRequest {
    pub ts: u64,
    pub sig: i32,
}

pub struct Container {
    pub pod_uid: String,
    pub meta: ContainerMeta,
    pub created_ns: u64,
    /// Namespace evidence: a process of this container created IPC/UTS namespaces.
    pub creates_namespaces: bool,
    /// ... or joined another container's.
    pub joins_namespaces: bool,
    pub init_pid: Option<u32>,
    pub argv: Vec<String>,
    pub started_ns: Option<u64>,
    pub exited_ns: Option<u64>,
    pub stop: Option<StopRequest>,
    pub attempt: u32,
    /// Recurring exec commands: argv → (runs, consecutive failures).
    pub exec_counts: HashMap<Vec<String>, (u32, u32)>,
}

impl Container {
    pub fn is_sandbox(&self) -> bool {
        self.meta.kind == Some(ContainerKind::Sandbox)
    }

    pub fn state(&self) -> &'static str {
        if self.exited_ns.is_some() {
            "Exited"
        } else if self.init_pid.is_some() {
            "Running"
        } else {
            "Created"
        }
    }
}

/// What we remember of a fatal signal sent to a process, until it exits.
#[derive(Debug, Clone)]
pub struct Kill {
    pub ts: u64,
    pub sig: i32,
    pub sender: Sender,
    /// si_code SI_KERNEL.
    pub by_kernel: bool,
}

pub struct Proc {
    pub container_id: Option<String>,
    pub parent: u32,
    pub comm: String,
    pub argv: Vec<String>,
    /// This process (or the runtime child that forked it) joined a container's mount
    /// namespace with setns: it is an exec session (probe, kubectl exec), not the init.
    pub joined_mnt: bool,
    pub exec_started_ns: Option<u64>,
    pub oom: bool,
    pub kill: Option<Kill>,
}

impl Proc {
    pub fn new(parent: u32, comm: &str) -> Self {
        Self {
            container_id: None,
            parent,
            comm: comm.to_string(),
            argv: Vec::new(),
            joined_mnt: false,
            exec_started_ns: None,
            oom: false,
            kill: None,
        }
    }
}

/// A cgroup directory of a pod or a container (cgroup v2 id).
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub pod_uid: String,
    pub container_id: Option<String>,
    pub removed_ns: Option<u64>,
}

/// Counts of state dropped to stay within bounds, by map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Evictions {
    pub pods: u64,
    pub containers: u64,
    pub processes: u64,
    pub cgroups: u64,
    pub events: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AttributionFailures {
    /// Events of a cgroup id the engine never saw created.
    pub unknown_cgroup: u64,
    /// Exits/signals of processes never seen.
    pub unknown_process: u64,
    /// OOM victims that could not be tied to a container.
    pub oom_unattributed: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    pub pods: usize,
    pub containers: usize,
    pub processes: usize,
    pub cgroups: usize,
    pub evictions: Evictions,
    pub attribution_failures: AttributionFailures,
}

/// Insertion order of a map's keys, for oldest-first eviction.
#[derive(Default)]
pub struct Order<K> {
    pub keys: VecDeque<K>,
}
