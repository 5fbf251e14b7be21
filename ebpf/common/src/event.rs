//! Ring-buffer record layouts.

/// Bytes of a task's comm, as in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Bytes kept of a cgroup path or an exec filename.
pub const PATH_LEN: usize = 256;
/// Bytes kept of argv (NUL-separated arguments).
pub const ARGV_LEN: usize = 512;
/// Most arguments read from argv; the rest only sets [`EXEC_ARGV_TRUNCATED`].
pub const ARGV_MAX_ARGS: usize = 16;
/// Bytes read of one argument at most.
pub const ARG_LEN: usize = 128;

/// argv did not fit: more arguments or longer arguments than captured.
pub const EXEC_ARGV_TRUNCATED: u32 = 1;
/// argv could not be captured at all (no sys_enter_execve record for this exec).
pub const EXEC_ARGV_MISSING: u32 = 2;

/// Fixed numbers of the event kinds. Gaps are allowed; never renumber.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Exit = 2,
    Fork = 3,
    SignalGenerate = 4,
    SignalDeliver = 5,
    Setns = 6,
    Unshare = 7,
    CgroupMkdir = 8,
    CgroupRmdir = 9,
    CgroupAttach = 10,
    OomVictim = 11,
    SockState = 12,
    TcpReset = 13,
    KubeletConn = 14,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Exit,
            3 => Self::Fork,
            4 => Self::SignalGenerate,
            5 => Self::SignalDeliver,
            6 => Self::Setns,
            7 => Self::Unshare,
            8 => Self::CgroupMkdir,
            9 => Self::CgroupRmdir,
            10 => Self::CgroupAttach,
            11 => Self::OomVictim,
            12 => Self::SockState,
            13 => Self::TcpReset,
            14 => Self::KubeletConn,
            _ => return None,
        })
    }
}

/// First bytes of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    /// ABI version of the record ([`ABI_VERSION`]), so a mismatched agent fails loudly.
    pub version: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, nanoseconds.
    pub ts_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    /// cgroup v2 id (inode of the unified-hierarchy directory) of the current task.
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// 2: exec records are variable-length (argv and filename packed in `data`).
pub const ABI_VERSION: u32 = 2;

/// sched:sched_process_exec, with argv captured at syscalls:sys_enter_execve(at).
///
/// Variable-length: the record carries `EXEC_HEAD_LEN + argv_len + filename_len` bytes, the rest
/// of `data` is not sent (decoding fills it with zeros).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub header: Header,
    /// Thread id before exec (a non-leader thread that called execve).
    pub old_tid: u32,
    /// `EXEC_ARGV_*` bits.
    pub flags: u32,
    /// Number of arguments present in argv.
    pub argc: u32,
    /// Bytes of argv at the start of `data` (each argument NUL-terminated), at most [`ARGV_LEN`].
    pub argv_len: u32,
    /// Bytes of the exec filename right after argv in `data` (its NUL included), at most
    /// [`PATH_LEN`].
    pub filename_len: u32,
    pub _pad: u32,
    pub data: [u8; ARGV_LEN + PATH_LEN],
}

/// Bytes of an exec record before `data`: the shortest exec record.
pub const EXEC_HEAD_LEN: usize = core::mem::size_of::<ExecEvent>() - ARGV_LEN - PATH_LEN;

impl ExecEvent {
    /// The argv bytes, bounded whatever the lengths say.
    pub fn argv(&self) -> &[u8] {
        let n = (self.argv_len as usize).min(ARGV_LEN);
        &self.data[..n]
    }

    /// The filename bytes (up to its NUL), bounded whatever the lengths say.
    pub fn filename(&self) -> &[u8] {
        let start = (self.argv_len as usize).min(ARGV_LEN);
        let end = start + (self.filename_len as usize).min(PATH_LEN);
        &self.data[start..end]
    }
}

/// sched:sched_process_exit of the last thread of a thread group.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: Header,
    /// `task_struct.exit_code`: wait status (`code << 8`, or the signal, `| 0x80` for a core dump).
    pub exit_code: u32,
    /// 1 when `exit_code` was read; 0 when the kernel's layout was unknown.
    pub exit_code_valid: u32,
}

/// task:task_newtask for a new process (threads are not reported). Current is the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub header: Header,
    pub child_pid: u32,
    pub _pad: u32,
    pub clone_flags: u64,
}

/// signal:signal_generate (current is the sender) or signal:signal_deliver (current is the target).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalEvent {
    pub header: Header,
    pub sig: i32,
    pub errno: i32,
    /// si_code: 0 SI_USER, 0x80 SI_KERNEL, negative for queued/tkill ...
    pub code: i32,
    /// generate: the target's pid (tid). deliver: unused.
    pub target_pid: u32,
    /// generate: 1 for a group (process) signal.
    pub group: i32,
    /// generate: `TRACE_SIGNAL_*` (0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 lose info).
    pub result: i32,
    /// deliver: the handler (0 SIG_DFL, 1 SIG_IGN, else an address).
    pub sa_handler: u64,
    pub sa_flags: u64,
    /// generate: the target's comm.
    pub target_comm: [u8; COMM_LEN],
}

/// syscalls:sys_exit_setns (with the arguments of its sys_enter) or sys_enter_unshare.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsEvent {
    pub header: Header,
    /// setns: nstype argument; unshare: the flags. CLONE_NEW* bits.
    pub flags: u64,
    /// setns: the fd; unshare: -1.
    pub fd: i32,
    /// setns: the syscall's return value; unshare: 0 (it is reported at entry).
    pub ret: i32,
}

/// cgroup:cgroup_mkdir / cgroup_rmdir / cgroup_attach_task.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupEvent {
    pub header: Header,
    /// Hierarchy id: 0 is cgroup v2 (the unified hierarchy).
    pub root: i32,
    pub level: i32,
    pub id: u64,
    /// attach: the moved task's pid; mkdir/rmdir: 0.
    pub pid: u32,
    pub path_len: u32,
    pub path: [u8; PATH_LEN],
}

/// oom:mark_victim. Memory fields are in kB as the tracepoint gives them; missing fields are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomEvent {
    pub header: Header,
    pub pid: u32,
    pub uid: u32,
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
    pub pgtables_kb: u64,
    pub oom_score_adj: i32,
    /// Bit per field the running kernel provides (`OOM_HAS_*`).
    pub present: u32,
    pub victim_comm: [u8; COMM_LEN],
}

pub const OOM_HAS_TOTAL_VM: u32 = 1;
pub const OOM_HAS_ANON_RSS: u32 = 2;
pub const OOM_HAS_FILE_RSS: u32 = 4;
pub const OOM_HAS_SHMEM_RSS: u32 = 8;
pub const OOM_HAS_PGTABLES: u32 = 16;
pub const OOM_HAS_SCORE_ADJ: u32 = 32;
pub const OOM_HAS_UID: u32 = 64;
pub const OOM_HAS_COMM: u32 = 128;

/// sock:inet_sock_set_state of a TCP socket. Reported transitions: CLOSE→LISTEN and
/// LISTEN→CLOSE of a listener in a tracked pod (current is the listening process).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockEvent {
    pub header: Header,
    /// The socket's kernel address: the same socket's later transitions carry it too.
    pub skaddr: u64,
    /// `TCP_*` states (tcp_states.h): 1 ESTABLISHED, 2 SYN_SENT, 7 CLOSE, 10 LISTEN ...
    pub oldstate: i32,
    pub newstate: i32,
    /// Ports in host byte order (the tracepoint converts them).
    pub sport: u16,
    pub dport: u16,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    pub protocol: u16,
    /// IPv4: the first 4 bytes; IPv6: all 16. Network byte order.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

pub const TCP_ESTABLISHED: i32 = 1;
pub const TCP_SYN_SENT: i32 = 2;
pub const TCP_CLOSE: i32 = 7;
pub const TCP_LISTEN: i32 = 10;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;

/// tcp:tcp_send_reset of a reset sent because no socket took the segment (a SYN to a port
/// nobody listens on), from an address in `POD_ADDRS`. Current is whoever ran the softirq.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetEvent {
    pub header: Header,
    /// `AF_INET` or `AF_INET6` of the refused connection.
    pub family: u16,
    /// The refusing (pod) port and the client's port, host byte order.
    pub sport: u16,
    pub dport: u16,
    pub _pad: u16,
    /// `sk_rst_reason` (1 = NO_SOCKET).
    pub reason: u32,
    /// Refusing (pod) and client addresses as IPv6; IPv4 mapped (`::ffff:a.b.c.d`).
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// `SK_RST_REASON_NO_SOCKET`: nothing listened on the port (or the connection was unknown).
pub const RESET_NO_SOCKET: u32 = 1;

/// A TCP connection the kubelet made to an address in `POD_ADDRS` (a probe or an httpGet hook),
/// reported once, when the socket reaches CLOSE. Current is whoever ran that transition
/// (often softirq): the socket was recognised at its connect, in the kubelet's context.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KubeletConnEvent {
    pub header: Header,
    pub skaddr: u64,
    /// `bpf_ktime_get_ns()` of CLOSE→SYN_SENT (the connect).
    pub start_ns: u64,
    /// Of SYN_SENT→ESTABLISHED; 0 when the connection never got there.
    pub established_ns: u64,
    /// The kubelet's tgid at the connect.
    pub kubelet_tgid: u32,
    /// `CONN_*`: how the connection ended.
    pub outcome: u16,
    /// `AF_INET` or `AF_INET6` of the socket.
    pub family: u16,
    /// The pod's port and the kubelet's port, host byte order.
    pub dport: u16,
    pub sport: u16,
    pub _pad: u32,
    /// The pod's address as IPv6, IPv4 mapped (`::ffff:a.b.c.d`), as in `POD_ADDRS`.
    pub daddr: [u8; 16],
}

/// Value of the `KUBELET_SOCKS` map: one kubelet connection under way.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KubeletSock {
    pub start_ns: u64,
    pub established_ns: u64,
    pub tgid: u32,
    pub family: u16,
    pub dport: u16,
    /// A reset came in (tcp:tcp_receive_reset runs just before the CLOSE it causes).
    pub reset: u8,
    pub _pad: [u8; 7],
    pub daddr: [u8; 16],
}

/// SYN_SENT→CLOSE after a reset came in: nothing listened on the port.
pub const CONN_REFUSED: u16 = 1;
/// SYN_SENT→CLOSE without a reset: the kubelet gave up (its probe timeout) or SYNs ran out.
pub const CONN_TIMEOUT: u16 = 2;
/// Connected, then closed (a reset after the kubelet closed its side counts as closed).
pub const CONN_CLOSED: u16 = 3;
/// Connected, then ended by a reset while open both ways (ESTABLISHED→CLOSE).
pub const CONN_RESET: u16 = 4;

/// Bytes of a kubelet comm (the kernel keeps 15 and a NUL).
pub const KUBELET_COMM_MAX: usize = COMM_LEN - 1;

/// Indexes of the per-CPU counter array `COUNTERS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A ring-buffer reserve failed: the event is lost.
    RingbufLost = 0,
    /// The tracked-tgid map was full: a process tree is no longer followed.
    TrackedTgidsFull = 1,
    /// The tracked-cgroup map was full.
    TrackedCgroupsFull = 2,
    /// A cgroup path did not fit in [`PATH_LEN`] and was cut.
    PathTruncated = 3,
    /// The map of followed kubelet connections was full: a probe connection is not reported.
    KubeletSocksFull = 4,
}
pub const COUNTER_SLOTS: u32 = 8;
