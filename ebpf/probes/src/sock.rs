//! TCP socket states: listeners of pod processes opening and closing, and the transitions of
//! kubelet connections to pod addresses (`kubelet.rs`).

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext,
    EbpfContext as _,
};
use podlife_common::{
    EventKind, SockEvent, ABSENT, AF_INET, IPPROTO_TCP, TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN,
    TCP_SYN_SENT,
};

use crate::emit::{config, current_ids, field, fill_header, interesting, reserve, NO_WAKEUP};
use crate::kubelet;

/// sock:inet_sock_set_state (skaddr, oldstate, newstate, sport, dport, family, protocol,
/// saddr[4], daddr[4], saddr_v6[16], daddr_v6[16]; since 4.16).
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_set_state(&ctx);
    0
}

/// Copy `len` bytes of the record at `offset` into `dst` (no-op when the field is absent).
#[inline(always)]
fn copy_field(ctx: &TracePointContext, offset: u16, dst: *mut u8, len: u32) {
    if offset == ABSENT {
        return;
    }
    unsafe {
        bpf_probe_read_kernel(
            dst.cast(),
            len,
            (ctx.as_ptr() as *const u8).add(offset as usize).cast(),
        );
    }
}

fn try_set_state(ctx: &TracePointContext) -> Option<()> {
    let protocol: u16 = field(ctx, config!(tp.sk_protocol))?;
    if protocol != IPPROTO_TCP {
        return None;
    }
    let old: i32 = field(ctx, config!(tp.sk_oldstate))?;
    let new: i32 = field(ctx, config!(tp.sk_newstate))?;
    if old == TCP_CLOSE && new == TCP_SYN_SENT {
        return kubelet::on_connect(ctx, field(ctx, config!(tp.sk_family))?);
    }
    if (old == TCP_SYN_SENT && new == TCP_ESTABLISHED) || (new == TCP_CLOSE && old != TCP_LISTEN) {
        return kubelet::on_transition(ctx, old, new);
    }
    // Only a listener's birth and death; every other transition of every connection on the
    // node stops here, before any map lookup (kubelet connections are handled above).
    let listen = (old == TCP_CLOSE && new == TCP_LISTEN) || (old == TCP_LISTEN && new == TCP_CLOSE);
    if !listen {
        return None;
    }
    // Both run in the listening process's context (listen(2), close(2) or its exit): its
    // cgroup names the container.
    let (tgid, _) = current_ids();
    if !interesting(tgid) {
        return None;
    }
    let family: u16 = field(ctx, config!(tp.sk_family))?;
    let mut entry = reserve::<SockEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::SockState);
        (*e).skaddr = field(ctx, config!(tp.sk_skaddr)).unwrap_or(0);
        (*e).oldstate = old;
        (*e).newstate = new;
        (*e).sport = field(ctx, config!(tp.sk_sport)).unwrap_or(0);
        (*e).dport = field(ctx, config!(tp.sk_dport)).unwrap_or(0);
        (*e).family = family;
        (*e).protocol = protocol;
        (*e).saddr = [0; 16];
        (*e).daddr = [0; 16];
        let saddr = (*e).saddr.as_mut_ptr();
        let daddr = (*e).daddr.as_mut_ptr();
        if family == AF_INET {
            copy_field(ctx, config!(tp.sk_saddr), saddr, 4);
            copy_field(ctx, config!(tp.sk_daddr), daddr, 4);
        } else {
            copy_field(ctx, config!(tp.sk_saddr_v6), saddr, 16);
            copy_field(ctx, config!(tp.sk_daddr_v6), daddr, 16);
        }
    }
    entry.submit(NO_WAKEUP);
    Some(())
}
