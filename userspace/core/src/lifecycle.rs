//! Derived lifecycle events: the timeline vocabulary of docs/ARCHITECTURE.md, field names as served.

use serde::{Deserialize, Serialize};

pub use crate::engine::ContainerKind;
pub use crate::prestop::HandlerKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Derived from kernel events as they happened.
    Kernel,
    /// Found at agent start (the agent was not running when it happened).
    Bootstrap,
    /// About the agent itself.
    Agent,
    /// Told by the Kubernetes API server (the optional pod watch), not seen in the kernel.
    Api,
}

/// Why a container's init ended (`ContainerExited.reason`, the exits metric's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitReason {
    Completed,
    Error,
    #[serde(rename = "OOMKilled")]
    OomKilled,
    Signaled,
    Unknown,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "Completed",
            Self::Error => "Error",
            Self::OomKilled => "OOMKilled",
            Self::Signaled => "Signaled",
            Self::Unknown => "Unknown",
        }
    }
}

/// Who or what ended a container (`ContainerExited.killed_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KilledBy {
    /// The runtime's stop (SIGTERM, or SIGKILL asked for at once).
    RuntimeStop,
    /// The runtime's SIGKILL after the grace period.
    GraceOverrun,
    OomKiller,
    Kernel,
    /// The process signalled itself.
    #[serde(rename = "self")]
    Itself,
    /// Another process of the node.
    Process,
}

impl KilledBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RuntimeStop => "runtime_stop",
            Self::GraceOverrun => "grace_overrun",
            Self::OomKiller => "oom_killer",
            Self::Kernel => "kernel",
            Self::Itself => "self",
            Self::Process => "process",
        }
    }
}

/// The memory limit an OOM kill hit (`OOMKill.limit_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    Container,
    Pod,
    Node,
    Unknown,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Pod => "pod",
            Self::Node => "node",
            Self::Unknown => "unknown",
        }
    }
}

/// Address family of a socket (`ListenerOpened.family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub fn of(addr: &std::net::IpAddr) -> Self {
        match addr {
            std::net::IpAddr::V4(_) => Self::Ipv4,
            std::net::IpAddr::V6(_) => Self::Ipv6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
        }
    }
}

/// Where the pod stood when it refused connections (`ConnectionsRefused.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnPhase {
    /// No container of the pod listened on the port yet.
    Starting,
    /// A container listened on it before (it closed or crashed since).
    Running,
    /// The pod or one of its containers was asked to stop.
    Terminating,
}

impl ConnPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Terminating => "terminating",
        }
    }
}

/// How a probe is performed (`probe_kind` of ProbeFailed / ProbeSucceeded, the probe metrics'
/// label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// A command run in the container (an exec session).
    Exec,
    /// A TCP connection of the kubelet: a tcpSocket probe, or any connection-level probe when
    /// no spec tells more (the kernel sees the connection, not the HTTP or gRPC on it).
    Tcp,
    /// An httpGet probe by the pod spec.
    Http,
    /// A grpc probe by the pod spec.
    Grpc,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// Why a probe failed (`ProbeFailed.reason`, the probe failures metric's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFailReason {
    /// An exec probe exited non-zero.
    ExitCode,
    /// An exec probe killed at its timeout, or a connection that never completed its handshake
    /// (the kubelet gave up on it).
    Timeout,
    /// The pod's address answered the SYN with a reset: nothing listened on the port.
    ConnectionRefused,
    /// The connection was established, then reset by the pod.
    Reset,
}

impl ProbeFailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExitCode => "exit_code",
            Self::Timeout => "timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::Reset => "reset",
        }
    }
}

/// What ended the instance before a restart (`ContainerRestarted.cause`, the restarts metric's
/// label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartCause {
    Oom,
    /// The runtime's stop after failed probes of the container (a liveness probe by the spec,
    /// or a recurring exec failing when no spec is known).
    LivenessProbe,
    /// Killed by a crash signal (SIGSEGV, SIGABRT, ...).
    Crash,
    /// Exited with a non-zero code on its own.
    ErrorExit,
    GraceOverrun,
    RuntimeStop,
}

impl RestartCause {
    pub const ALL: [Self; 6] = [
        Self::Oom,
        Self::LivenessProbe,
        Self::Crash,
        Self::ErrorExit,
        Self::GraceOverrun,
        Self::RuntimeStop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oom => "oom",
            Self::LivenessProbe => "liveness_probe",
            Self::Crash => "crash",
            Self::ErrorExit => "error_exit",
            Self::GraceOverrun => "grace_overrun",
            Self::RuntimeStop => "runtime_stop",
        }
    }
}

// Text renderers and metric labels print them as on the wire.
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(
    ExitReason,
    KilledBy,
    LimitScope,
    ContainerKind,
    IpFamily,
    ConnPhase,
    HandlerKind,
    RestartCause
);

/// Pids an OOMKill lists in `killed_with`; the rest are counted in `killed_with_more`.
pub const MAX_KILLED_WITH: usize = 16;

/// A process as a signal sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub pid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    pub ts_ns: u64,
    pub pod_uid: String,
    pub container_id: Option<String>,
    /// Container name when known (runtime metadata).
    pub container: Option<String>,
    pub source: Source,
    #[serde(flatten)]
    pub kind: LifecycleKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LifecycleKind {
    /// The API server accepted the pod's deletion (its deletionTimestamp minus the deletion
    /// grace period): what sets the kubelet off to stop the containers.
    DeletionRequested {
        grace_period_s: Option<f64>,
    },
    PodAdmitted,
    SandboxStarted {
        pid: u32,
    },
    ContainerCreated {
        kind: Option<ContainerKind>,
    },
    ContainerStarted {
        pid: u32,
        argv: Vec<String>,
        kind: Option<ContainerKind>,
    },
    ExecStarted {
        pid: u32,
        argv: Vec<String>,
    },
    ExecFinished {
        pid: u32,
        argv: Vec<String>,
        exit_code: Option<i32>,
        signal: Option<String>,
        duration_ms: f64,
        timed_out: bool,
        /// Probe type when known from the pod spec, "exec_probe" when inferred from a recurring
        /// command, null for a one-off exec.
        probe: Option<String>,
    },
    /// A failed probe: an exec probe (argv, exit code) or a kubelet connection to the pod
    /// (port, reason). `probe` is the spec's liveness/readiness/startup (exec: "exec_probe" for
    /// a recurring command without a spec); null when no spec names it.
    ProbeFailed {
        argv: Vec<String>,
        exit_code: Option<i32>,
        timed_out: bool,
        probe: Option<String>,
        consecutive_failures: u32,
        probe_kind: ProbeKind,
        port: Option<u16>,
        reason: ProbeFailReason,
    },
    /// A probe of the pod (the kubelet's connection, or an exec probe's command) succeeded for
    /// the first time since the container started (`first`), or for the first time after
    /// failures (`after_failures` of them); never one event per healthy probe.
    ProbeSucceeded {
        probe_kind: ProbeKind,
        port: Option<u16>,
        probe: Option<String>,
        first: bool,
        after_failures: u32,
    },
    /// The kubelet's own message for a failed probe of the container, from its `Unhealthy`
    /// Event on the API server (`--kube-api`, source `api`): what the kernel cannot see, such
    /// as an HTTP status. Once per new message of a container; `count` is the Event's count
    /// when it was read, `probe` the type from the message's prefix (null when it has none).
    ProbeUnhealthy {
        probe: Option<String>,
        message: String,
        count: u32,
    },
    StopRequested {
        signal: String,
        sender: Sender,
        pid: u32,
    },
    StopSignalIgnored {
        signal: String,
        pid: u32,
    },
    GracePeriodOverrun {
        observed_grace_s: f64,
        configured_grace_s: Option<f64>,
    },
    #[serde(rename = "OOMKill")]
    OomKill {
        pid: u32,
        comm: Option<String>,
        victim_is_init: bool,
        limit_scope: LimitScope,
        anon_rss_bytes: Option<u64>,
        file_rss_bytes: Option<u64>,
        shmem_rss_bytes: Option<u64>,
        total_vm_bytes: Option<u64>,
        oom_score_adj: Option<i32>,
        /// memory.oom.group of the OOM-ing memory cgroup (cgroup v2; false on v1): the kernel
        /// kills every process of the group, one OOMKill each.
        group_kill: bool,
        /// On the first victim of a group kill: the other victims (at most
        /// [`MAX_KILLED_WITH`] pids, in kill order) marked within the engine's reorder window.
        killed_with: Vec<u32>,
        /// Victims of the same group kill beyond `killed_with`.
        killed_with_more: u32,
        /// On the other victims of a group kill: the pid of the first one.
        group_first_victim: Option<u32>,
        /// The task whose allocation triggered the OOM, when the kernel shows it and it is a
        /// process of the same pod (never a kernel thread or another pod's process).
        trigger: Option<Sender>,
        /// Usage of the OOM-ing memory cgroup at the kill: its peak (memory.peak on v2,
        /// memory.max_usage_in_bytes on v1) read at the kill; null for a node OOM or unknown.
        usage_bytes: Option<u64>,
        /// Limit of the OOM-ing memory cgroup (memory.max / memory.limit_in_bytes); null for
        /// a node OOM or unknown.
        limit_bytes: Option<u64>,
    },
    ProcessCrashed {
        pid: u32,
        comm: String,
        signal: String,
        core_dumped: bool,
        is_init: bool,
    },
    // Network lifecycle: listeners of the container's processes (sock:inet_sock_set_state).
    ListenerOpened {
        pid: u32,
        comm: String,
        port: u16,
        address: std::net::IpAddr,
        family: IpFamily,
    },
    ListenerClosed {
        pid: u32,
        comm: String,
        port: u16,
        /// How long it listened; null when it opened before the agent saw it.
        open_s: Option<f64>,
        /// Seconds after the container's StopRequested; null when it was not stopping.
        after_stop_s: Option<f64>,
    },
    /// Connections to a pod address refused (nothing listened on the port) within one second;
    /// `container` is the one that listened on the port, if any did.
    ConnectionsRefused {
        port: u16,
        count: u32,
        first: String,
        last: String,
        phase: ConnPhase,
    },
    ContainerExited {
        pid: u32,
        exit_code: Option<i32>,
        signal: Option<String>,
        reason: ExitReason,
        killed_by: Option<KilledBy>,
        sender: Option<Sender>,
        /// Time from the stop request to the exit, when the runtime stopped it.
        termination_s: Option<f64>,
    },
    ContainerRestarted {
        attempt: u32,
        backoff_s: f64,
        crash_loop: bool,
        /// What ended the instance before; null when nothing explains it (a completion, an
        /// exit before the agent saw it).
        cause: Option<RestartCause>,
    },
    /// The kubelet started the container's preStop hook: an exec session matching the
    /// handler of the container config (exec), the kubelet's connection to the hook's port
    /// just before the stop signal (http), or the deletion of a pod whose hook is a sleep.
    PreStopStarted {
        handler: HandlerKind,
        argv: Option<Vec<String>>,
        port: Option<u16>,
        path: Option<String>,
        pid: Option<u32>,
    },
    /// The hook ended: `grace_used` is its share of the grace period (null when the grace is
    /// unknown); `killed_at_grace` when it was still running as the grace ran out.
    PreStopFinished {
        handler: HandlerKind,
        exit_code: Option<i32>,
        duration_ms: f64,
        grace_used: Option<f64>,
        killed_at_grace: bool,
        /// How the kubelet's connection of an http hook ended (`refused`: nothing listened,
        /// the hook failed); null for exec and sleep hooks.
        connection: Option<crate::kernel_event::ConnOutcome>,
    },
    SandboxStopped {
        pid: u32,
        exit_code: Option<i32>,
        signal: Option<String>,
    },
    PodRemoved,
    AgentStarted,
    /// The agent was down from `down_from` to `down_until` (RFC 3339, from the store's
    /// heartbeat): the pod's timeline may miss events of that time.
    AgentGap {
        down_from: String,
        down_until: String,
        down_s: f64,
    },
    /// The kernel's ring buffer lost `lost` records between `first` and `last` (RFC 3339)
    /// while the pod was live: its timeline may miss events.
    EventsLost {
        lost: u64,
        first: String,
        last: String,
    },
}

impl LifecycleKind {
    /// The command line the event carries (redacted before it is kept).
    pub fn argv_mut(&mut self) -> Option<&mut Vec<String>> {
        match self {
            Self::ContainerStarted { argv, .. }
            | Self::ExecStarted { argv, .. }
            | Self::ExecFinished { argv, .. }
            | Self::ProbeFailed { argv, .. }
            | Self::PreStopStarted {
                argv: Some(argv), ..
            } => Some(argv),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::DeletionRequested { .. } => "DeletionRequested",
            Self::PodAdmitted => "PodAdmitted",
            Self::SandboxStarted { .. } => "SandboxStarted",
            Self::ContainerCreated { .. } => "ContainerCreated",
            Self::ContainerStarted { .. } => "ContainerStarted",
            Self::ExecStarted { .. } => "ExecStarted",
            Self::ExecFinished { .. } => "ExecFinished",
            Self::ProbeFailed { .. } => "ProbeFailed",
            Self::ProbeSucceeded { .. } => "ProbeSucceeded",
            Self::ProbeUnhealthy { .. } => "ProbeUnhealthy",
            Self::StopRequested { .. } => "StopRequested",
            Self::StopSignalIgnored { .. } => "StopSignalIgnored",
            Self::GracePeriodOverrun { .. } => "GracePeriodOverrun",
            Self::OomKill { .. } => "OOMKill",
            Self::ProcessCrashed { .. } => "ProcessCrashed",
            Self::ListenerOpened { .. } => "ListenerOpened",
            Self::ListenerClosed { .. } => "ListenerClosed",
            Self::ConnectionsRefused { .. } => "ConnectionsRefused",
            Self::ContainerExited { .. } => "ContainerExited",
            Self::ContainerRestarted { .. } => "ContainerRestarted",
            Self::PreStopStarted { .. } => "PreStopStarted",
            Self::PreStopFinished { .. } => "PreStopFinished",
            Self::SandboxStopped { .. } => "SandboxStopped",
            Self::PodRemoved => "PodRemoved",
            Self::AgentStarted => "AgentStarted",
            Self::AgentGap { .. } => "AgentGap",
            Self::EventsLost { .. } => "EventsLost",
        }
    }
}

/// Signal names for the API ("SIGTERM"); unknown numbers as "SIG<n>".
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 32] = [
        "SIG0",
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
    usize::try_from(sig)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("SIG{sig}"), |s| (*s).to_string())
}

/// Signals whose default action dumps core: a process killed by one of these crashed.
pub fn is_crash_signal(sig: i32) -> bool {
    matches!(sig, 4 | 6 | 7 | 8 | 11 | 31)
}
