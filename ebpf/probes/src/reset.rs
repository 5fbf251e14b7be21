//! Refused connections: resets a pod address sends because nothing listens on the port.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext,
    EbpfContext as _,
};
use podlife_common::{EventKind, ResetEvent, ABSENT, AF_INET, AF_INET6, RESET_NO_SOCKET};

use crate::emit::{config, field, fill_header, reserve, NO_WAKEUP, POD_ADDRS};

/// Bytes of a tracepoint `sockaddr` field (room for a `sockaddr_in6`).
const SOCKADDR_LEN: usize = 28;

/// tcp:tcp_send_reset (skbaddr, skaddr, state, reason, saddr[28], daddr[28]: `sockaddr_in` /
/// `sockaddr_in6`; reason and the addresses of socket-less resets since 6.10). Runs in softirq
/// or the sender's context: current says nothing about the pod, the address does.
#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let _ = try_reset(&ctx);
    0
}

/// (family, port in host order, address as 16 bytes: IPv4 mapped into IPv6) of a sockaddr.
#[inline(always)]
fn sockaddr(ctx: &TracePointContext, offset: u16) -> Option<(u16, u16, [u8; 16])> {
    if offset == ABSENT {
        return None;
    }
    let mut raw = [0u8; SOCKADDR_LEN];
    let ret = unsafe {
        bpf_probe_read_kernel(
            raw.as_mut_ptr().cast(),
            SOCKADDR_LEN as u32,
            (ctx.as_ptr() as *const u8).add(offset as usize).cast(),
        )
    };
    if ret != 0 {
        return None;
    }
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let mut addr = [0u8; 16];
    if family == AF_INET {
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12] = raw[4];
        addr[13] = raw[5];
        addr[14] = raw[6];
        addr[15] = raw[7];
    } else if family == AF_INET6 {
        let mut i = 0;
        while i < 16 {
            addr[i] = raw[8 + i];
            i += 1;
        }
    } else {
        return None;
    }
    Some((family, port, addr))
}

fn try_reset(ctx: &TracePointContext) -> Option<()> {
    // Only "no socket": a SYN (or any segment) to a port nobody listens on.
    let reason: u32 = field(ctx, config!(tp.rst_reason))?;
    if reason != RESET_NO_SOCKET {
        return None;
    }
    // The reset's source is the refusing side: a pod address, or not reported.
    let (family, sport, saddr) = sockaddr(ctx, config!(tp.rst_saddr))?;
    unsafe { POD_ADDRS.get(saddr) }?;
    let (_, dport, daddr) = sockaddr(ctx, config!(tp.rst_daddr))?;
    let mut entry = reserve::<ResetEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::TcpReset);
        (*e).family = family;
        (*e).sport = sport;
        (*e).dport = dport;
        (*e)._pad = 0;
        (*e).reason = reason;
        (*e).saddr = saddr;
        (*e).daddr = daddr;
    }
    entry.submit(NO_WAKEUP);
    Some(())
}
