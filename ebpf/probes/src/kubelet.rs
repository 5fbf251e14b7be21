//! Connections the kubelet makes to pod addresses: tcpSocket, httpGet and grpc probes and
//! httpGet hooks. Recognised at the connect (CLOSE→SYN_SENT, the kubelet's own context),
//! followed by socket address through the later transitions (often softirq) and reported once,
//! at CLOSE, with how they ended. Every other socket stops before any map write.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_ktime_get_ns, generated::bpf_probe_read_kernel},
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
    EbpfContext as _,
};
use podlife_common::{
    Counter, EventKind, KubeletConnEvent, KubeletSock, ABSENT, CONN_CLOSED, CONN_REFUSED,
    CONN_RESET, CONN_TIMEOUT, MAX_KUBELET_SOCKS, TCP_ESTABLISHED, TCP_SYN_SENT,
};

use crate::emit::{config, count, current_ids, field, fill_header, reserve, NO_WAKEUP, POD_ADDRS};

/// Followed kubelet connections by socket address. A plain hash, not an LRU: a full map is
/// then a counted failure (`KubeletSocksFull`) instead of a silent eviction, and every TCP
/// socket ends in a CLOSE transition, which removes its entry.
#[map]
static KUBELET_SOCKS: HashMap<u64, KubeletSock> = HashMap::with_max_entries(MAX_KUBELET_SOCKS, 0);

const BPF_NOEXIST: u64 = 1;

/// Whether current's comm is the configured kubelet comm (all NUL: feature off).
#[inline(always)]
fn is_kubelet() -> bool {
    let want: [u8; 16] = config!(kubelet_comm);
    if want[0] == 0 {
        return false;
    }
    let Ok(comm) = bpf_get_current_comm() else {
        return false;
    };
    let mut i = 0;
    while i < 16 {
        if want[i] != comm[i] {
            return false;
        }
        if want[i] == 0 {
            return true;
        }
        i += 1;
    }
    true
}

/// CLOSE→SYN_SENT: a connect, in the connecting process's context.
#[inline(always)]
pub fn on_connect(ctx: &TracePointContext, family: u16) -> Option<()> {
    if !is_kubelet() {
        return None;
    }
    // The v6 field holds IPv4 addresses mapped (`::ffff:a.b.c.d`), the form of POD_ADDRS.
    let offset = config!(tp.sk_daddr_v6);
    if offset == ABSENT {
        return None;
    }
    let mut daddr = [0u8; 16];
    let ret = unsafe {
        bpf_probe_read_kernel(
            daddr.as_mut_ptr().cast(),
            16,
            (ctx.as_ptr() as *const u8).add(offset as usize).cast(),
        )
    };
    if ret != 0 {
        return None;
    }
    unsafe { POD_ADDRS.get(daddr) }?;
    let skaddr: u64 = field(ctx, config!(tp.sk_skaddr))?;
    let (tgid, _) = current_ids();
    let sock = KubeletSock {
        start_ns: unsafe { bpf_ktime_get_ns() },
        established_ns: 0,
        tgid,
        family,
        dport: field(ctx, config!(tp.sk_dport)).unwrap_or(0),
        reset: 0,
        _pad: [0; 7],
        daddr,
    };
    if KUBELET_SOCKS.insert(skaddr, sock, BPF_NOEXIST).is_err() {
        count(Counter::KubeletSocksFull);
    }
    Some(())
}

/// A later transition of a socket that may be a followed one: SYN_SENT→ESTABLISHED or
/// anything→CLOSE (listeners excepted). One lookup for the node's other sockets, no write.
#[inline(always)]
pub fn on_transition(ctx: &TracePointContext, old: i32, new: i32) -> Option<()> {
    let skaddr: u64 = field(ctx, config!(tp.sk_skaddr))?;
    let sock = KUBELET_SOCKS.get_ptr_mut(skaddr)?;
    if new == TCP_ESTABLISHED {
        unsafe { (*sock).established_ns = bpf_ktime_get_ns() };
        return Some(());
    }
    let s = unsafe { *sock };
    let _ = KUBELET_SOCKS.remove(skaddr);
    // A reset counts while the connection was open both ways: once the kubelet has closed its
    // side (FIN_WAIT*) it has its answer, and data arriving then makes the kernel abort the
    // socket through the same reset path (tcp_reset) without any reset on the wire.
    let reset = s.reset != 0;
    let outcome = if old == TCP_SYN_SENT {
        if reset {
            CONN_REFUSED
        } else {
            CONN_TIMEOUT
        }
    } else if reset && old == TCP_ESTABLISHED {
        CONN_RESET
    } else {
        CONN_CLOSED
    };
    let mut entry = reserve::<KubeletConnEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::KubeletConn);
        (*e).skaddr = skaddr;
        (*e).start_ns = s.start_ns;
        (*e).established_ns = s.established_ns;
        (*e).kubelet_tgid = s.tgid;
        (*e).outcome = outcome;
        (*e).family = s.family;
        (*e).dport = s.dport;
        (*e).sport = field(ctx, config!(tp.sk_sport)).unwrap_or(0);
        (*e)._pad = 0;
        (*e).daddr = s.daddr;
    }
    entry.submit(NO_WAKEUP);
    Some(())
}

/// tcp:tcp_receive_reset (skaddr, ...): a reset came in on a socket, just before the CLOSE it
/// causes. Marks followed sockets only; the rest is one lookup.
#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let _ = try_receive_reset(&ctx);
    0
}

fn try_receive_reset(ctx: &TracePointContext) -> Option<()> {
    let skaddr: u64 = field(ctx, config!(tp.rrst_skaddr))?;
    let sock = KUBELET_SOCKS.get_ptr_mut(skaddr)?;
    unsafe { (*sock).reset = 1 };
    Some(())
}
