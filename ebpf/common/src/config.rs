//! Load-time configuration handed to the eBPF programs as one global (`PROBE_CONFIG`).
//!
//! No tracepoint layout or kernel struct offset is compiled in: the agent reads field offsets
//! from tracefs `format` files and struct offsets from BTF, and fills this in before loading.

/// Offset value meaning "this field does not exist on the running kernel".
pub const ABSENT: u16 = u16::MAX;

/// Byte offsets of tracepoint fields within the raw tracepoint record.
/// `__data_loc` fields point at the 32-bit location word (offset in the low 16 bits).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointOffsets {
    // sched:sched_process_exec
    pub exec_filename_loc: u16,
    pub exec_old_pid: u16,
    // sched:sched_process_exit
    pub exit_group_dead: u16,
    // task:task_newtask
    pub newtask_pid: u16,
    pub newtask_clone_flags: u16,
    // signal:signal_generate
    pub gen_sig: u16,
    pub gen_errno: u16,
    pub gen_code: u16,
    pub gen_comm: u16,
    pub gen_pid: u16,
    pub gen_group: u16,
    pub gen_result: u16,
    // signal:signal_deliver
    pub del_sig: u16,
    pub del_errno: u16,
    pub del_code: u16,
    pub del_sa_handler: u16,
    pub del_sa_flags: u16,
    // cgroup:cgroup_mkdir / cgroup_rmdir (same class)
    pub cg_root: u16,
    pub cg_level: u16,
    pub cg_id: u16,
    pub cg_path_loc: u16,
    // cgroup:cgroup_attach_task
    pub att_root: u16,
    pub att_level: u16,
    pub att_id: u16,
    pub att_pid: u16,
    pub att_path_loc: u16,
    // oom:mark_victim
    pub oom_pid: u16,
    pub oom_comm_loc: u16,
    pub oom_total_vm: u16,
    pub oom_anon_rss: u16,
    pub oom_file_rss: u16,
    pub oom_shmem_rss: u16,
    pub oom_uid: u16,
    pub oom_pgtables: u16,
    pub oom_score_adj: u16,
    // syscalls:sys_enter_execve / sys_enter_execveat
    pub execve_argv: u16,
    pub execveat_argv: u16,
    // syscalls:sys_enter_setns / sys_exit_setns / sys_enter_unshare
    pub setns_fd: u16,
    pub setns_nstype: u16,
    pub setns_ret: u16,
    pub unshare_flags: u16,
    // sock:inet_sock_set_state
    pub sk_skaddr: u16,
    pub sk_oldstate: u16,
    pub sk_newstate: u16,
    pub sk_sport: u16,
    pub sk_dport: u16,
    pub sk_family: u16,
    pub sk_protocol: u16,
    pub sk_saddr: u16,
    pub sk_daddr: u16,
    pub sk_saddr_v6: u16,
    pub sk_daddr_v6: u16,
    // tcp:tcp_send_reset
    pub rst_reason: u16,
    pub rst_saddr: u16,
    pub rst_daddr: u16,
    // tcp:tcp_receive_reset
    pub rrst_skaddr: u16,
}

impl TracepointOffsets {
    pub const fn all_absent() -> Self {
        Self {
            exec_filename_loc: ABSENT,
            exec_old_pid: ABSENT,
            exit_group_dead: ABSENT,
            newtask_pid: ABSENT,
            newtask_clone_flags: ABSENT,
            gen_sig: ABSENT,
            gen_errno: ABSENT,
            gen_code: ABSENT,
            gen_comm: ABSENT,
            gen_pid: ABSENT,
            gen_group: ABSENT,
            gen_result: ABSENT,
            del_sig: ABSENT,
            del_errno: ABSENT,
            del_code: ABSENT,
            del_sa_handler: ABSENT,
            del_sa_flags: ABSENT,
            cg_root: ABSENT,
            cg_level: ABSENT,
            cg_id: ABSENT,
            cg_path_loc: ABSENT,
            att_root: ABSENT,
            att_level: ABSENT,
            att_id: ABSENT,
            att_pid: ABSENT,
            att_path_loc: ABSENT,
            oom_pid: ABSENT,
            oom_comm_loc: ABSENT,
            oom_total_vm: ABSENT,
            oom_anon_rss: ABSENT,
            oom_file_rss: ABSENT,
            oom_shmem_rss: ABSENT,
            oom_uid: ABSENT,
            oom_pgtables: ABSENT,
            oom_score_adj: ABSENT,
            execve_argv: ABSENT,
            execveat_argv: ABSENT,
            setns_fd: ABSENT,
            setns_nstype: ABSENT,
            setns_ret: ABSENT,
            unshare_flags: ABSENT,
            sk_skaddr: ABSENT,
            sk_oldstate: ABSENT,
            sk_newstate: ABSENT,
            sk_sport: ABSENT,
            sk_dport: ABSENT,
            sk_family: ABSENT,
            sk_protocol: ABSENT,
            sk_saddr: ABSENT,
            sk_daddr: ABSENT,
            sk_saddr_v6: ABSENT,
            sk_daddr_v6: ABSENT,
            rst_reason: ABSENT,
            rst_saddr: ABSENT,
            rst_daddr: ABSENT,
            rrst_skaddr: ABSENT,
        }
    }
}

/// Capture everything, not only tracked tgids and cgroups (debugging and `podlife record --all`).
pub const MODE_NO_FILTER: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The agent's own tgid: never reported.
    pub self_tgid: u32,
    /// `MODE_*` bits.
    pub mode: u32,
    /// Offset of `task_struct.exit_code` from BTF, or `u32::MAX` if unknown.
    pub task_exit_code: u32,
    /// Hierarchy id whose cgroup events are reported: 0 = cgroup v2 (unified); on a node
    /// without cgroup v2, the memory controller's v1 hierarchy id.
    pub cgroup_root: u32,
    pub tp: TracepointOffsets,
    /// comm of the kubelet (NUL padded): its connections to pod addresses are probes.
    /// All NUL: not followed.
    pub kubelet_comm: [u8; 16],
}

impl ProbeConfig {
    pub const fn unset() -> Self {
        Self {
            self_tgid: 0,
            mode: 0,
            task_exit_code: u32::MAX,
            cgroup_root: 0,
            tp: TracepointOffsets::all_absent(),
            kubelet_comm: [0; 16],
        }
    }
}

/// Entries of the `POD_ADDRS` map (pod IPs: the agent adds them at sandbox start).
pub const MAX_POD_ADDRS: u32 = 4096;

/// Entries of the `KUBELET_SOCKS` map: kubelet connections to pod addresses under way.
pub const MAX_KUBELET_SOCKS: u32 = 1024;

/// Values of the `TRACKED_TGIDS` map: why a process tree is followed.
pub const TRACK_RUNTIME: u8 = 1;
pub const TRACK_INHERITED: u8 = 2;
pub const TRACK_BOOTSTRAP: u8 = 3;
pub const TRACK_TEST: u8 = 4;

/// comm prefixes of container runtime shims whose process trees are followed from exec on.
pub const RUNTIME_COMMS: [&[u8]; 2] = [b"containerd-shim", b"conmon"];

/// Substring of a cgroup path that marks a Kubernetes pod hierarchy.
pub const KUBEPODS: &[u8] = b"kubepods";
