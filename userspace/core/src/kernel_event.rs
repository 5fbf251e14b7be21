//! Kernel events as the engine sees them: decoded, owned, independent of the eBPF ABI.
//!
//! The agent converts ring-buffer records (podlife-common) into these. They serialize to JSON
//! lines, so `podlife record` captures of real scenarios replay through the engine in tests.

use serde::{Deserialize, Serialize};

use crate::Comm;

/// One event from the kernel. `ts_ns` is CLOCK_MONOTONIC in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEvent {
    pub ts_ns: u64,
    /// Process (thread group) id of current, in the initial pid namespace.
    pub tgid: u32,
    /// Thread id of current.
    pub tid: u32,
    /// cgroup v2 id of current (inode of its unified-hierarchy directory); 1 = root.
    pub cgroup_id: u64,
    /// comm of current at the time of the event.
    pub comm: Comm,
    #[serde(flatten)]
    pub kind: KernelEventKind,
}

/// How a process ended, decoded from the kernel's wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code when the process exited normally.
    pub code: Option<i32>,
    /// Terminating signal when it was killed.
    pub signal: Option<i32>,
    pub core_dumped: bool,
}

impl ExitStatus {
    /// Decode a raw wait status (`task_struct.exit_code`).
    pub fn from_wait_status(raw: u32) -> Self {
        let sig = (raw & 0x7f) as i32;
        if sig == 0 {
            Self {
                code: Some(((raw >> 8) & 0xff) as i32),
                signal: None,
                core_dumped: false,
            }
        } else {
            Self {
                code: None,
                signal: Some(sig),
                core_dumped: raw & 0x80 != 0,
            }
        }
    }
}

/// `TRACE_SIGNAL_*` results of signal:signal_generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalResult {
    Delivered,
    Ignored,
    AlreadyPending,
    OverflowFail,
    LoseInfo,
    Other(i32),
}

impl SignalResult {
    pub fn from_raw(v: i32) -> Self {
        match v {
            0 => Self::Delivered,
            1 => Self::Ignored,
            2 => Self::AlreadyPending,
            3 => Self::OverflowFail,
            4 => Self::LoseInfo,
            o => Self::Other(o),
        }
    }
}

/// The target's disposition when a signal is delivered (signal:signal_deliver).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalHandler {
    Default,
    Ignore,
    /// A user handler at this address.
    Handler(u64),
}

impl SignalHandler {
    pub fn from_raw(v: u64) -> Self {
        match v {
            0 => Self::Default,
            1 => Self::Ignore,
            a => Self::Handler(a),
        }
    }
}

/// TCP socket states (`TCP_*` of the kernel's tcp_states.h) that the rules name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    Established,
    SynSent,
    Close,
    Listen,
    Other(i32),
}

impl TcpState {
    pub fn from_raw(v: i32) -> Self {
        match v {
            1 => Self::Established,
            2 => Self::SynSent,
            7 => Self::Close,
            10 => Self::Listen,
            o => Self::Other(o),
        }
    }
}

/// si_code of a signal sent by the kernel itself (SI_KERNEL).
pub const SI_KERNEL: i32 = 0x80;
/// si_code of kill(2) (SI_USER).
pub const SI_USER: i32 = 0;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KernelEventKind {
    /// sched:sched_process_exec. argv from sys_enter_execve; may be truncated or missing.
    Exec {
        filename: String,
        argv: Vec<String>,
        argv_truncated: bool,
        /// Thread id before exec (differs from tgid when a non-leader thread called execve).
        old_tid: u32,
    },
    /// sched:sched_process_exit of the last thread of the process (group_dead).
    Exit {
        /// None when the kernel's layout did not allow reading the exit code.
        status: Option<ExitStatus>,
    },
    /// task:task_newtask of a new process (threads are not reported); current is the parent.
    Fork { child_tgid: u32, clone_flags: u64 },
    /// signal:signal_generate: current is the sender.
    SignalGenerate {
        sig: i32,
        /// Target task's pid (the thread group leader for process-directed signals).
        target_pid: u32,
        target_comm: Comm,
        /// si_code (SI_USER 0, SI_KERNEL 0x80, ...).
        code: i32,
        group: bool,
        result: SignalResult,
    },
    /// signal:signal_deliver: current is the target.
    SignalDeliver {
        sig: i32,
        code: i32,
        handler: SignalHandler,
    },
    /// setns(2) with its result; `nstype` is the CLONE_NEW* argument (0 = any).
    Setns { nstype: u64, fd: i32, ret: i32 },
    /// unshare(2) at entry; `flags` are CLONE_NEW* bits.
    Unshare { flags: u64 },
    /// cgroup:cgroup_mkdir. `root` 0 is cgroup v2; `path` is relative to the hierarchy root.
    CgroupMkdir {
        root: i32,
        id: u64,
        level: i32,
        path: String,
    },
    /// cgroup:cgroup_rmdir.
    CgroupRmdir {
        root: i32,
        id: u64,
        level: i32,
        path: String,
    },
    /// cgroup:cgroup_attach_task: `pid` was moved into cgroup `id`.
    CgroupAttach {
        root: i32,
        id: u64,
        level: i32,
        path: String,
        pid: u32,
    },
    /// oom:mark_victim. The victim's details are boxed: OOM kills are rare, and inline they
    /// made every kernel event (and every slot of the reorder window) half again as large.
    OomVictim {
        pid: u32,
        #[serde(flatten)]
        info: Box<OomVictimInfo>,
    },
    /// sock:inet_sock_set_state of a TCP socket. Listener transitions run in the listening
    /// process's context; a connection's later transitions may run in softirq (any current).
    TcpState {
        /// Kernel address of the socket: follows one socket across its transitions.
        sk: u64,
        old: TcpState,
        new: TcpState,
        saddr: std::net::IpAddr,
        sport: u16,
        daddr: std::net::IpAddr,
        dport: u16,
    },
    /// tcp:tcp_send_reset with reason NO_SOCKET from a pod address: `saddr:sport` refused a
    /// connection from `daddr:dport` (nothing listened). Current is meaningless (softirq).
    TcpReset {
        saddr: std::net::IpAddr,
        sport: u16,
        daddr: std::net::IpAddr,
        dport: u16,
    },
    /// A TCP connection of the kubelet (by comm, at its connect) to a pod address, reported
    /// when its socket closed. `ts_ns` is the close; current is whoever ran it.
    KubeletConn {
        sk: u64,
        /// The pod's address and port.
        addr: std::net::IpAddr,
        port: u16,
        /// The kubelet's port.
        sport: u16,
        outcome: ConnOutcome,
        /// Monotonic ns of the connect and, if it connected, of the handshake's end.
        start_ns: u64,
        established_ns: Option<u64>,
    },
}

/// What oom:mark_victim says of its victim. Memory in kB; None where the kernel does not provide
/// the field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomVictimInfo {
    /// The victim's comm (the event's own `comm` is the task that ran the OOM killer).
    pub victim_comm: Option<Comm>,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
}

/// How a kubelet connection to a pod ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnOutcome {
    /// A reset answered the SYN: nothing listened on the port.
    Refused,
    /// Closed before connecting, without a reset: the kubelet's timeout (or SYNs ran out).
    Timeout,
    /// Connected and closed.
    Closed,
    /// Connected, then ended by a reset from the pod.
    Reset,
}

impl ConnOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Reset => "reset",
        }
    }
}

/// CLONE_* and CLONE_NEW* bits used by the rules.
pub mod clone {
    pub const CLONE_THREAD: u64 = 0x0001_0000;
    pub const CLONE_NEWNS: u64 = 0x0002_0000;
    pub const CLONE_NEWCGROUP: u64 = 0x0200_0000;
    pub const CLONE_NEWUTS: u64 = 0x0400_0000;
    pub const CLONE_NEWIPC: u64 = 0x0800_0000;
    pub const CLONE_NEWUSER: u64 = 0x1000_0000;
    pub const CLONE_NEWPID: u64 = 0x2000_0000;
    pub const CLONE_NEWNET: u64 = 0x4000_0000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decoding() {
        assert_eq!(
            ExitStatus::from_wait_status(0x300),
            ExitStatus {
                code: Some(3),
                signal: None,
                core_dumped: false
            }
        );
        assert_eq!(ExitStatus::from_wait_status(0x9).signal, Some(9));
        let segv_core = ExitStatus::from_wait_status(0x8b);
        assert_eq!(segv_core.signal, Some(11));
        assert!(segv_core.core_dumped);
    }

    #[test]
    fn json_lines_round_trip() {
        let ev = KernelEvent {
            ts_ns: 1,
            tgid: 2,
            tid: 2,
            cgroup_id: 77,
            comm: "sh".into(),
            kind: KernelEventKind::Exit {
                status: Some(ExitStatus::from_wait_status(0x300)),
            },
        };
        let line = serde_json::to_string(&ev).unwrap();
        assert!(line.contains("\"event\":\"exit\""), "{line}");
        let back: KernelEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn an_oom_victim_keeps_its_flat_json_form_and_stays_small() {
        // The form `podlife record` wrote before the details were boxed.
        let line = r#"{"ts_ns":5,"tgid":7,"tid":7,"cgroup_id":481,"comm":"memhog","event":"oom_victim","pid":7,"victim_comm":"memhog","total_vm_kb":null,"anon_rss_kb":32384,"oom_score_adj":1000}"#;
        let ev: KernelEvent = serde_json::from_str(line).unwrap();
        let KernelEventKind::OomVictim { pid, info } = &ev.kind else {
            panic!("{ev:?}");
        };
        assert_eq!(*pid, 7);
        assert_eq!(info.victim_comm.as_deref(), Some("memhog"));
        assert_eq!((info.anon_rss_kb, info.total_vm_kb), (Some(32384), None));
        assert_eq!((info.file_rss_kb, info.oom_score_adj), (None, Some(1000)));
        let again = serde_json::to_string(&ev).unwrap();
        assert!(
            again.contains(r#""pid":7,"victim_comm":"memhog","#),
            "{again}"
        );
        assert_eq!(serde_json::from_str::<KernelEvent>(&again).unwrap(), ev);
        // Every event passes through the reorder window by value.
        assert!(std::mem::size_of::<KernelEvent>() <= 112);
    }
}
