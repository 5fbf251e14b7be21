//! What the engine knows about pods, containers and processes, and its limits.

use std::collections::VecDeque;

use foldhash::HashMap;

use serde::{Deserialize, Serialize};

use super::unhealthy::ProbeMessages;
use crate::cgroup_path::Qos;
use crate::lifecycle::{LifecycleEvent, Sender};
use crate::Comm;

const SEC: u64 = 1_000_000_000;

/// Which cgroup hierarchy attributes processes. `Auto`: cgroup v2 as soon as a pod cgroup shows
/// up there; v1 events are held back and used only when no v2 pod cgroup appears (pure v1 node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    #[default]
    Auto,
    V2,
    V1,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_pods: usize,
    pub max_containers: usize,
    pub max_processes: usize,
    pub max_cgroups: usize,
    /// Exec sessions (probes, kubectl exec) running at once.
    pub max_exec_sessions: usize,
    /// Derived events kept per pod for its timeline (`Engine::timeline`). 0 keeps none: for a
    /// caller that keeps its own history of what `apply` returns (the agent), the engine's copy
    /// would only double the memory per pod.
    pub max_events_per_pod: usize,
    /// Kernel events held in the reorder buffer at most.
    pub max_buffered_events: usize,
    /// Removed pods (and their containers) are kept this long: late events still resolve and
    /// their timelines are still served.
    pub removed_pod_retention_ns: u64,
    /// Exited processes are remembered this long (a late fork of an exited pid is not revived).
    pub exited_process_retention_ns: u64,
    /// Signal facts (who sent what to whom) wait this long for the exit they explain.
    pub signal_retention_ns: u64,
    /// Kernel events are applied in timestamp order within this window (events of different
    /// CPUs reach the ring buffer slightly out of order). 0 applies each event at once.
    pub reorder_window_ns: u64,
    /// In `CgroupMode::Auto`, how long v1 cgroup events wait for a v2 one before the engine
    /// decides the node has no cgroup v2.
    pub v1_fallback_delay_ns: u64,
    /// A command run this many times in one container is taken for an exec probe...
    pub probe_recurrence: u32,
    /// ... when each run follows the previous within this long.
    pub probe_recurrence_window_ns: u64,
    /// Node name put on timelines.
    pub node_name: Option<String>,
    pub cgroup_mode: CgroupMode,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_pods: 10_000,
            max_containers: 50_000,
            max_processes: 200_000,
            max_cgroups: 60_000,
            max_exec_sessions: 10_000,
            max_events_per_pod: 2_000,
            max_buffered_events: 65_536,
            removed_pod_retention_ns: 10 * 60 * SEC,
            exited_process_retention_ns: 30 * SEC,
            signal_retention_ns: 10 * 60 * SEC,
            reorder_window_ns: 5_000_000,
            v1_fallback_delay_ns: SEC,
            probe_recurrence: 2,
            probe_recurrence_window_ns: 10 * 60 * SEC,
            node_name: None,
            cgroup_mode: CgroupMode::Auto,
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

/// An exec probe of a pod spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecProbe {
    /// `liveness`, `readiness`, `startup`.
    pub probe_type: String,
    pub argv: Vec<String>,
    pub timeout_s: Option<f64>,
}

/// A probe of a pod spec that the kubelet performs over the network (tcpSocket, httpGet,
/// grpc), its port resolved (a named port through the container's ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetProbe {
    pub container: String,
    /// `liveness`, `readiness`, `startup`.
    pub probe_type: String,
    pub kind: crate::lifecycle::ProbeKind,
    pub port: u16,
}

/// Network probes kept of one pod spec (three per container; the rest is not matched).
pub const MAX_NET_PROBES: usize = 64;

/// Names and facts from the runtime (OCI bundle annotations, CRI) or the API server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerMeta {
    pub pod_uid: Option<String>,
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    pub container_name: Option<String>,
    pub kind: Option<ContainerKind>,
    pub grace_period_s: Option<f64>,
    /// Exec probes of this container.
    pub probes: Vec<ExecProbe>,
    /// The kubelet's restart count of this container, when the runtime tells it.
    pub attempt: Option<u32>,
    /// The container's preStop hook (CRI annotation, pod spec).
    pub prestop: Option<crate::prestop::PreStop>,
}

/// The controller of a pod (its ownerReference with `controller: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub grace_period_s: Option<f64>,
    /// Exec probes of the pod spec: (container name, probe type, argv).
    pub exec_probes: Vec<(String, String, Vec<String>)>,
    /// tcpSocket / httpGet / grpc probes of the pod spec, at most [`MAX_NET_PROBES`].
    pub net_probes: Vec<NetProbe>,
    pub owner: Option<Owner>,
    /// Kind of each container of the pod spec by name (init, sidecar, app).
    pub container_kinds: Vec<(String, ContainerKind)>,
}

impl PodMeta {
    /// The kind the pod spec gives a container name.
    pub fn kind_of(&self, container: &str) -> Option<ContainerKind> {
        self.container_kinds
            .iter()
            .find_map(|(n, k)| (n == container).then_some(*k))
    }
}

/// A process found in /proc at agent start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapProcess {
    pub tgid: u32,
    pub ppid: u32,
    pub cgroup_id: u64,
    pub comm: String,
    pub argv: Vec<String>,
    /// Start time on the monotonic clock.
    pub start_ns: u64,
}

/// A pod's state as served (`state` of /pods and timelines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Restart bookkeeping of one container identity (name, else argv) in a pod.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    /// Exit of the last instance, until the next instance starts.
    pub last_exit_ns: Option<u64>,
    pub attempt: u32,
    /// Back-off delays seen so far (last few).
    pub backoffs: Vec<f64>,
    /// What ended the last instance.
    pub last_cause: Option<crate::lifecycle::RestartCause>,
}

pub struct Pod {
    pub qos: Option<Qos>,
    pub meta: PodMeta,
    pub state: PodState,
    pub admitted_ns: u64,
    pub removed_ns: Option<u64>,
    /// Container ids in creation order.
    pub containers: Vec<String>,
    /// The pod's current sandbox container, once known.
    pub sandbox_id: Option<String>,
    pub restarts: HashMap<String, RestartState>,
    /// When the API server said the pod is being deleted (DeletionRequested derived once).
    pub deletion_ns: Option<u64>,
    /// Probe messages of the kubelet that name no container of the pod (engine/unhealthy.rs).
    pub probe_messages: ProbeMessages,
    /// Derived events of this pod, in derivation order.
    pub events: VecDeque<LifecycleEvent>,
}

/// The runtime asked the container to stop.
#[derive(Debug, Clone)]
pub struct StopRequest {
    pub ts: u64,
    pub sig: i32,
}

/// Runs of one command in a container (probe recognition).
#[derive(Debug, Clone, Default)]
pub struct ExecStats {
    pub runs: u32,
    pub consecutive_failures: u32,
    pub last_ns: u64,
    /// A run of it succeeded as a probe (kept when a pause restarts the count).
    pub ever_ok: bool,
}

pub struct Container {
    pub pod_uid: String,
    pub meta: ContainerMeta,
    pub created_ns: u64,
    pub cgroup_removed_ns: Option<u64>,
    /// The container's own cgroup as the kernel named it (cgroupfs `<pod>/<id>`, systemd
    /// `<pod>.slice/cri-containerd-<id>.scope`): where its memory counters are.
    pub cgroup_path: Option<String>,
    /// Namespace evidence: the runtime child created IPC/UTS/NET namespaces (a sandbox) ...
    pub creates_namespaces: bool,
    /// ... or joined another container's (an app or init container).
    pub joins_namespaces: bool,
    pub created_emitted: bool,
    pub init_pid: Option<u32>,
    pub argv: Vec<String>,
    pub started_ns: Option<u64>,
    pub exited_ns: Option<u64>,
    pub exit_code: Option<i32>,
    pub stop: Option<StopRequest>,
    pub attempt: u32,
    pub exec_counts: HashMap<Vec<String>, ExecStats>,
    /// Sockets of the container: listeners open now, startup timing.
    pub net: NetState,
}

/// A listening socket of a container.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Kernel address of the socket: its close carries the same.
    pub sk: u64,
    pub port: u16,
    pub opened_ns: u64,
}

/// What the container's sockets did (engine/network.rs).
#[derive(Debug, Clone, Default)]
pub struct NetState {
    /// Open listeners, bounded by [`MAX_LISTENERS`]; the oldest is forgotten at the bound.
    pub listeners: Vec<Listener>,
    /// Time of the container's first listen.
    pub first_listen_ns: Option<u64>,
    /// Ports it ever listened on (bounded by [`MAX_LISTENERS`]): a refused connection to one
    /// of them is the container's.
    pub ports: Vec<u16>,
    /// Time of the first successful kubelet probe of the container (engine/net_probe.rs).
    pub first_probe_ok_ns: Option<u64>,
    /// The container's http preStop hook (engine/prestop.rs); boxed: most containers have none.
    pub hook: Option<Box<HttpHook>>,
    /// The kubelet's messages for its failed probes (engine/unhealthy.rs).
    pub probe_messages: ProbeMessages,
}

/// What is known of a container's http preStop hook.
#[derive(Debug, Clone, Copy)]
pub enum HttpHook {
    /// The last kubelet connection to the hook's port while the stop is not known: the hook
    /// if the stop signal follows it.
    Candidate(HookConn),
    /// Told.
    Told,
}

/// A kubelet connection to a container's http hook port.
#[derive(Debug, Clone, Copy)]
pub struct HookConn {
    pub start_ns: u64,
    pub end_ns: u64,
    pub outcome: crate::kernel_event::ConnOutcome,
}

/// Listeners kept per container: a server listens on a few ports; past this, a close is
/// reported without `open_s`.
pub const MAX_LISTENERS: usize = 32;

impl Container {
    pub fn is_sandbox(&self) -> bool {
        self.meta.kind == Some(ContainerKind::Sandbox)
    }

    pub fn running(&self) -> bool {
        self.init_pid.is_some() && self.exited_ns.is_none()
    }

    pub fn state(&self) -> ContainerState {
        if self.exited_ns.is_some() {
            ContainerState::Exited
        } else if self.init_pid.is_some() {
            ContainerState::Running
        } else {
            ContainerState::Created
        }
    }
}

/// A container's state as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Running => "Running",
            Self::Exited => "Exited",
        }
    }
}

/// A fatal-looking signal sent to a process, kept until it exits.
#[derive(Debug, Clone)]
pub struct Kill {
    pub ts: u64,
    pub sig: i32,
    pub sender: Sender,
    pub code: i32,
    /// The sender is a container runtime or shim outside the target's container.
    pub from_runtime: bool,
}

/// Where a process stands with respect to exec sessions (probes, kubectl exec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionRole {
    #[default]
    None,
    /// Joined a container's mount namespace from outside (runc exec's children), or was placed
    /// into a running container's cgroup: its first real exec starts a session.
    Candidate,
    /// Ran the session's command: its exit ends the session.
    Leader,
    /// Forked by a session's command.
    Member,
}

/// What the agent read of the OOM-ing memory cgroup at an OOM kill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomMemcg {
    /// memory.oom.group set on the way from the victim's memory cgroup to the OOM-ing one.
    pub group_kill: bool,
    pub usage_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
}

pub struct Proc {
    /// Shared with the cgroup table: no allocation per process.
    pub container_id: Option<ContainerId>,
    pub parent: u32,
    pub comm: Comm,
    /// CLONE_NEW* bits of namespaces joined with setns (inherited by children).
    pub joined_ns: u64,
    pub role: SessionRole,
    pub oom: bool,
    /// Another process of the pod whose allocation triggered the OOM that killed this one
    /// (boxed: rare, and every process pays for the field).
    pub oom_trigger: Option<Box<Sender>>,
    pub kill: Option<Kill>,
    /// Known only from a signal or OOM naming it (no fork, exec or attach seen yet).
    pub placeholder: bool,
    pub seen_ns: u64,
    /// Insertion stamp for oldest-first eviction.
    pub seq: u64,
}

impl Proc {
    pub fn new(comm: &str, seen_ns: u64, seq: u64) -> Self {
        Self {
            container_id: None,
            parent: 0,
            comm: Comm::new(comm),
            joined_ns: 0,
            role: SessionRole::None,
            oom: false,
            oom_trigger: None,
            kill: None,
            placeholder: false,
            seen_ns,
            seq,
        }
    }
}

/// A container id as processes and cgroups hold it: one allocation shared by all of them.
pub type ContainerId = std::sync::Arc<str>;

/// A running exec session.
#[derive(Debug, Clone)]
pub struct ExecSession {
    pub container_id: String,
    pub started_ns: u64,
    pub argv: Vec<String>,
    pub seq: u64,
    /// The session is the container's exec preStop hook.
    pub prestop: bool,
}

/// A pod or container cgroup directory (cgroup v2 id, or a v1 id on a pure v1 node).
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub pod_uid: String,
    pub container_id: Option<ContainerId>,
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
    pub exec_sessions: u64,
    pub pending: u64,
    pub buffered_events: u64,
    /// Probe state of pod ports dropped at its bound (net_probe.rs).
    pub probe_states: u64,
    /// New kubelet probe messages of a container beyond the ones it remembers (unhealthy.rs).
    pub probe_messages: u64,
}

/// Events the engine could not tie to a pod, by the stage that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AttributionFailures {
    /// Events from a cgroup id the engine never saw created.
    pub unknown_cgroup: u64,
    /// Signals and OOM kills naming processes never seen.
    pub unknown_process: u64,
    /// OOM victims that could not be tied to a container.
    pub oom_unattributed: u64,
    /// cgroup events under kubepods whose path the grammar does not know.
    pub unparsed_path: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    pub pods: usize,
    pub containers: usize,
    pub processes: usize,
    pub cgroups: usize,
    pub exec_sessions: usize,
    pub buffered_events: usize,
    pub cgroup_mode: CgroupMode,
    pub evictions: Evictions,
    pub attribution_failures: AttributionFailures,
    pub probe_runs: ProbeRuns,
}

/// Probe runs since the engine started, by kind and result: every exec probe session and
/// every kubelet connection to a pod, healthy ones included (they derive no event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProbeRuns {
    /// [kind][result]: kinds in [`PROBE_KINDS`] order, results in [`PROBE_RESULTS`] order.
    counts: [[u64; 5]; 4],
}

/// Kinds counted by [`ProbeRuns`].
pub const PROBE_KINDS: [crate::lifecycle::ProbeKind; 4] = {
    use crate::lifecycle::ProbeKind::*;
    [Exec, Tcp, Http, Grpc]
};

/// Results counted by [`ProbeRuns`]: success, then each failure reason.
pub const PROBE_RESULTS: [&str; 5] = [
    "success",
    "exit_code",
    "timeout",
    "connection_refused",
    "reset",
];

impl ProbeRuns {
    pub fn add(
        &mut self,
        kind: crate::lifecycle::ProbeKind,
        failed: Option<crate::lifecycle::ProbeFailReason>,
    ) {
        use crate::lifecycle::ProbeFailReason as R;
        let k = PROBE_KINDS.iter().position(|x| *x == kind).unwrap_or(0);
        let r = match failed {
            None => 0,
            Some(R::ExitCode) => 1,
            Some(R::Timeout) => 2,
            Some(R::ConnectionRefused) => 3,
            Some(R::Reset) => 4,
        };
        self.counts[k][r] += 1;
    }

    /// (kind, result, runs) of every pair, zeros included.
    pub fn iter(
        &self,
    ) -> impl Iterator<Item = (crate::lifecycle::ProbeKind, &'static str, u64)> + '_ {
        PROBE_KINDS.iter().enumerate().flat_map(move |(k, kind)| {
            PROBE_RESULTS
                .iter()
                .enumerate()
                .map(move |(r, result)| (*kind, *result, self.counts[k][r]))
        })
    }
}
