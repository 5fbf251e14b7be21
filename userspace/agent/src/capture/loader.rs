//! Loads the embedded eBPF object with load-time offsets, attaches every tracepoint it can,
//! and hands out the ring buffer and the tracking maps. A tracepoint the kernel lacks degrades
//! its feature only.

use std::net::IpAddr;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use podlife_common::decode::{decode, DecodeError, Record};
use podlife_common::{Counter, KubeletSock, ProbeConfig, MODE_NO_FILTER};
use thiserror::Error;
use tracing::{info, warn};

use super::{btf::Btf, tracefs};

/// (program, tracepoint category, tracepoint name, feature).
pub const PROGRAMS: &[(&str, &str, &str, &str)] = &[
    ("sched_process_exec", "sched", "sched_process_exec", "exec"),
    ("sched_process_exit", "sched", "sched_process_exit", "exit"),
    ("task_newtask", "task", "task_newtask", "fork"),
    ("sys_enter_execve", "syscalls", "sys_enter_execve", "argv"),
    (
        "sys_enter_execveat",
        "syscalls",
        "sys_enter_execveat",
        "argv",
    ),
    ("signal_generate", "signal", "signal_generate", "signals"),
    (
        "signal_deliver",
        "signal",
        "signal_deliver",
        "signal_handlers",
    ),
    ("sys_enter_setns", "syscalls", "sys_enter_setns", "setns"),
    ("sys_exit_setns", "syscalls", "sys_exit_setns", "setns"),
    (
        "sys_enter_unshare",
        "syscalls",
        "sys_enter_unshare",
        "unshare",
    ),
    ("cgroup_mkdir", "cgroup", "cgroup_mkdir", "cgroups"),
    ("cgroup_rmdir", "cgroup", "cgroup_rmdir", "cgroups"),
    (
        "cgroup_attach_task",
        "cgroup",
        "cgroup_attach_task",
        "cgroups",
    ),
    ("mark_victim", "oom", "mark_victim", "oom"),
    (
        "inet_sock_set_state",
        "sock",
        "inet_sock_set_state",
        "listeners",
    ),
    ("tcp_send_reset", "tcp", "tcp_send_reset", "resets"),
    (
        "tcp_receive_reset",
        "tcp",
        "tcp_receive_reset",
        "probe_resets",
    ),
];

/// Tracepoint fields only newer kernels have: (feature, tracepoint, field, what is lost
/// without it). The programs work without them, in a reduced form that must be visible.
pub const FIELD_FEATURES: &[(&str, &str, &str, &str)] = &[
    (
        "exit_group",
        "sched/sched_process_exit",
        "group_dead",
        "the thread-group leader's exit stands for the process's exit (a leader that exits \
         before its other threads ends the process early)",
    ),
    (
        "oom_memory",
        "oom/mark_victim",
        "anon_rss",
        "OOM kills are reported without the victim's memory, comm and oom_score_adj",
    ),
    (
        "refused_connections",
        "tcp/tcp_send_reset",
        "reason",
        "connections refused by pods are not reported (before 6.10 the tracepoint has no reset \
         reason and does not fire for resets without a socket)",
    ),
];

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error("loading the eBPF object failed ({source}); podlife needs root or CAP_BPF+CAP_PERFMON and a kernel >= 5.8 with BTF")]
    Load {
        #[source]
        source: aya::EbpfError,
    },
    #[error("eBPF map {name} is missing or of the wrong type: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "no tracepoint could be attached (first error: {first}); check privileges and tracefs"
    )]
    NothingAttached { first: String },
}

/// Whether a capture feature is live on this kernel, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub enabled: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub ringbuf_bytes: u32,
    /// Report every process on the node, not only pods (`podlife record --all`, debugging).
    pub no_filter: bool,
    pub self_tgid: u32,
    /// comm of the kubelet: its connections to pod addresses are probes (empty: not followed).
    pub kubelet_comm: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ringbuf_bytes: 8 << 20,
            no_filter: false,
            self_tgid: std::process::id(),
            kubelet_comm: "kubelet".into(),
        }
    }
}

/// A comm as the kernel holds it: at most 15 bytes, NUL padded.
pub fn comm_bytes(comm: &str) -> [u8; 16] {
    let mut out = [0; 16];
    let b = comm.as_bytes();
    let n = b.len().min(podlife_common::KUBELET_COMM_MAX);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// Loaded and attached programs with the maps userspace needs.
pub struct Capture {
    /// Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
    pub ring: Option<RingBuf<MapData>>,
    tracked_tgids: BpfHashMap<MapData, u32, u8>,
    tracked_cgroups: BpfHashMap<MapData, u64, u8>,
    pod_addrs: BpfHashMap<MapData, [u8; 16], u8>,
    kubelet_socks: BpfHashMap<MapData, u64, KubeletSock>,
    counters: PerCpuArray<MapData, u64>,
    pub features: Vec<Feature>,
}

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/podlife"));

/// Raise RLIMIT_MEMLOCK for kernels < 5.11; harmless to fail where memcg accounting is used.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        info!("could not raise RLIMIT_MEMLOCK (no CAP_SYS_RESOURCE); fine on kernels >= 5.11");
    }
}

/// The task_struct.exit_code offset from BTF, or why it is unknown.
fn exit_code_offset() -> Result<u32, String> {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let btf = Btf::parse(&data).map_err(|e| e.to_string())?;
    btf.member_offset("task_struct", "exit_code")
        .map_err(|e| e.to_string())
}

impl Capture {
    pub fn load(opts: &LoadOptions, cgroup_root: u32) -> Result<Self, LoadError> {
        raise_memlock();
        let tracefs_dir = tracefs::find_tracefs()?;
        let tps: Vec<(&str, &str)> = PROGRAMS.iter().map(|p| (p.1, p.2)).collect();
        let formats = tracefs::read_formats(&tracefs_dir, &tps);
        let mut features = Vec::new();
        let task_exit_code = match exit_code_offset() {
            Ok(off) => {
                features.push(feature("exit_code", None));
                off
            }
            Err(why) => {
                warn!("exit codes unavailable: {why}; exits will be reported without a status");
                features.push(feature("exit_code", Some(why)));
                u32::MAX
            }
        };
        let config = ProbeConfig {
            self_tgid: opts.self_tgid,
            mode: if opts.no_filter { MODE_NO_FILTER } else { 0 },
            task_exit_code,
            cgroup_root,
            tp: tracefs::offsets(&formats),
            kubelet_comm: comm_bytes(&opts.kubelet_comm),
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("PROBE_CONFIG", &config, true)
            .map_max_entries("EVENTS", opts.ringbuf_bytes)
            .load(OBJECT)
            .map_err(|source| LoadError::Load { source })?;
        let mut first_error = None;
        let mut attached = 0;
        for &(prog, cat, name, feat) in PROGRAMS {
            let result = attach(
                &mut ebpf,
                prog,
                cat,
                name,
                formats.contains_key(&format!("{cat}/{name}")),
            );
            match result {
                Ok(()) => attached += 1,
                Err(why) => {
                    warn!(
                        feature = feat,
                        "tracepoint {cat}:{name} not attached: {why}; {feat} events are degraded"
                    );
                    first_error.get_or_insert_with(|| why.clone());
                    features.push(feature(feat, Some(format!("{cat}:{name}: {why}"))));
                    continue;
                }
            }
            if !features.iter().any(|f| f.name == feat) {
                features.push(feature(feat, None));
            }
        }
        // A missing tracepoint already degraded its feature above.
        for &(feat, tp, field, lost) in FIELD_FEATURES {
            let Some(format) = formats.get(tp) else {
                continue;
            };
            if format.fields.contains_key(field) {
                features.push(feature(feat, None));
            } else {
                let why = format!("{tp} has no field {field} on this kernel");
                warn!(feature = feat, "{why}: {lost}; {feat} is degraded");
                features.push(feature(feat, Some(why)));
            }
        }
        if attached == 0 {
            return Err(LoadError::NothingAttached {
                first: first_error.unwrap_or_default(),
            });
        }
        info!(attached, total = PROGRAMS.len(), "tracepoints attached");
        let ring =
            RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(|source| LoadError::Map {
                name: "EVENTS",
                source,
            })?;
        let tracked_tgids =
            BpfHashMap::try_from(take(&mut ebpf, "TRACKED_TGIDS")?).map_err(|source| {
                LoadError::Map {
                    name: "TRACKED_TGIDS",
                    source,
                }
            })?;
        let tracked_cgroups =
            BpfHashMap::try_from(take(&mut ebpf, "TRACKED_CGROUPS")?).map_err(|source| {
                LoadError::Map {
                    name: "TRACKED_CGROUPS",
                    source,
                }
            })?;
        let pod_addrs = BpfHashMap::try_from(take(&mut ebpf, "POD_ADDRS")?).map_err(|source| {
            LoadError::Map {
                name: "POD_ADDRS",
                source,
            }
        })?;
        let kubelet_socks =
            BpfHashMap::try_from(take(&mut ebpf, "KUBELET_SOCKS")?).map_err(|source| {
                LoadError::Map {
                    name: "KUBELET_SOCKS",
                    source,
                }
            })?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, "COUNTERS")?).map_err(|source| {
            LoadError::Map {
                name: "COUNTERS",
                source,
            }
        })?;
        Ok(Self {
            _ebpf: ebpf,
            ring: Some(ring),
            tracked_tgids,
            tracked_cgroups,
            pod_addrs,
            kubelet_socks,
            counters,
            features,
        })
    }

    /// Follow a process tree from now on (bootstrap of running shims, tests).
    pub fn track_tgid(&mut self, tgid: u32, why: u8) -> Result<(), aya::maps::MapError> {
        self.tracked_tgids.insert(tgid, why, 0)
    }

    /// Report events of processes in this cgroup (v2 id).
    pub fn track_cgroup(&mut self, id: u64) -> Result<(), aya::maps::MapError> {
        self.tracked_cgroups.insert(id, 1, 0)
    }

    /// Report refused connections to this pod address (bounded: `MAX_POD_ADDRS`).
    pub fn add_pod_address(&mut self, addr: IpAddr) -> Result<(), aya::maps::MapError> {
        self.pod_addrs.insert(addr_key(addr), 1, 0)
    }

    /// The pod is gone: its address may go to another pod.
    pub fn remove_pod_address(&mut self, addr: IpAddr) -> Result<(), aya::maps::MapError> {
        self.pod_addrs.remove(&addr_key(addr))
    }

    /// Kubelet connections to pod addresses under way (between their connect and close).
    pub fn kubelet_socks_followed(&self) -> usize {
        self.kubelet_socks.keys().count()
    }

    pub fn tracked_tgid_count(&self) -> usize {
        self.tracked_tgids.keys().count()
    }

    /// Read every record available now, in ring order. Returns how many were read.
    pub fn drain(&mut self, mut f: impl FnMut(Result<Record, DecodeError>)) -> usize {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        drain_ring(ring, usize::MAX, &mut f)
    }

    /// A kernel-side counter summed over CPUs.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters
            .get(&(c as u32), 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }
}

/// Read the records available now from a ring buffer, at most `max` (also used by the reader
/// thread, which owns the ring after `Capture::ring` is taken).
pub fn drain_ring(
    ring: &mut RingBuf<MapData>,
    max: usize,
    f: &mut impl FnMut(Result<Record, DecodeError>),
) -> usize {
    let mut n = 0;
    while n < max {
        let Some(item) = ring.next() else { break };
        f(decode(&item));
        n += 1;
    }
    n
}

/// The key of an address in `POD_ADDRS`: IPv6 bytes, IPv4 mapped (as the program builds it).
fn addr_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn feature(name: &'static str, reason: Option<String>) -> Feature {
    Feature {
        name,
        enabled: reason.is_none(),
        reason,
    }
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, LoadError> {
    ebpf.take_map(name).ok_or(LoadError::Map {
        name,
        source: aya::maps::MapError::InvalidName { name: name.into() },
    })
}

fn attach(ebpf: &mut Ebpf, prog: &str, cat: &str, name: &str, exists: bool) -> Result<(), String> {
    if !exists {
        return Err("tracepoint not present in tracefs".into());
    }
    let program: &mut TracePoint = ebpf
        .program_mut(prog)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    program.load().map_err(|e| format!("{e:#}"))?;
    program.attach(cat, name).map_err(|e| e.to_string())?;
    Ok(())
}
