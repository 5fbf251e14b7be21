//! Maps, the load-time configuration, the in-kernel filter and the ring-buffer helpers.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
    },
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use podlife_common::{
    Counter, EventKind, Header, ProbeConfig, ABI_VERSION, COUNTER_SLOTS, MODE_NO_FILTER,
};

/// Filled in by the agent before load (`EbpfLoader::set_global`).
#[no_mangle]
static PROBE_CONFIG: ProbeConfig = ProbeConfig::unset();

/// Read one field of `PROBE_CONFIG` through a volatile load, so the compiler cannot fold the
/// compile-time default into the program.
macro_rules! config {
    ($($field:tt)+) => {
        {
            #[allow(unused_unsafe)]
            let value = unsafe { core::ptr::read_volatile(&$crate::emit::probe_config().$($field)+) };
            value
        }
    };
}
pub(crate) use config;

#[inline(always)]
pub fn probe_config() -> &'static ProbeConfig {
    &PROBE_CONFIG
}

/// Size is set by the agent at load time (`--ringbuf-bytes`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Process trees followed: runtime shims (from their exec on) and all their descendants.
#[map]
pub static TRACKED_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(65536, 0);

/// Pod and container cgroups (v2 ids), added at mkdir of a kubepods path, removed at rmdir.
#[map]
pub static TRACKED_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(16384, 0);

/// Pod addresses (IPv6, IPv4 mapped), filled by the agent: resets they send are reported.
#[map]
pub static POD_ADDRS: HashMap<[u8; 16], u8> =
    HashMap::with_max_entries(podlife_common::MAX_POD_ADDRS, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Submit without waking the reader: it drains on a short timer, which costs a storm far less.
pub const NO_WAKEUP: u64 = 1; // BPF_RB_NO_WAKEUP
/// Wake the reader at once (rare, urgent events such as an OOM kill).
pub const FORCE_WAKEUP: u64 = 2; // BPF_RB_FORCE_WAKEUP

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// Whether events of the current task are reported: a followed process tree or a pod cgroup.
#[inline(always)]
pub fn interesting(tgid: u32) -> bool {
    if tgid == config!(self_tgid) {
        return false;
    }
    if config!(mode) & MODE_NO_FILTER != 0 {
        return true;
    }
    if is_tracked_tgid(tgid) {
        return true;
    }
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    unsafe { TRACKED_CGROUPS.get(cgroup) }.is_some()
}

#[inline(always)]
pub fn is_tracked_tgid(tgid: u32) -> bool {
    unsafe { TRACKED_TGIDS.get(tgid) }.is_some()
}

#[inline(always)]
pub fn track_tgid(tgid: u32, why: u8) {
    if TRACKED_TGIDS.insert(tgid, why, 0).is_err() {
        count(Counter::TrackedTgidsFull);
    }
}

/// Fill the common header of a reserved record.
#[inline(always)]
pub fn fill_header(header: *mut Header, kind: EventKind) {
    let pid_tgid = bpf_get_current_pid_tgid();
    unsafe {
        (*header).kind = kind as u32;
        (*header).version = ABI_VERSION;
        (*header).ts_ns = bpf_ktime_get_ns();
        (*header).tgid = (pid_tgid >> 32) as u32;
        (*header).tid = pid_tgid as u32;
        (*header).cgroup_id = bpf_get_current_cgroup_id();
        (*header).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
}

/// Copy a record built elsewhere (variable length) into the ring buffer, counting the loss when
/// it is full.
#[inline(always)]
pub fn output(bytes: &[u8]) {
    if EVENTS.output::<[u8]>(bytes, NO_WAKEUP).is_err() {
        count(Counter::RingbufLost);
    }
}

/// Reserve a record, counting the loss when the ring buffer is full.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count(Counter::RingbufLost);
    }
    entry
}

/// Read a tracepoint field at a load-time offset; `None` when the kernel lacks the field.
#[inline(always)]
pub fn field<T>(ctx: &aya_ebpf::programs::TracePointContext, offset: u16) -> Option<T> {
    if offset == podlife_common::ABSENT {
        return None;
    }
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

/// Pointer to the bytes of a `__data_loc` field (location word: offset in the low 16 bits).
#[inline(always)]
pub fn data_loc(ctx: &aya_ebpf::programs::TracePointContext, offset: u16) -> Option<*const u8> {
    use aya_ebpf::EbpfContext as _;
    let loc: u32 = field(ctx, offset)?;
    Some(unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) })
}
