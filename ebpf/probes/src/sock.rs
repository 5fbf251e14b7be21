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

/// (oldstate, newstate): one read when the two fields are adjacent, as on every kernel since
/// 4.16 (two 32-bit ints; little-endian, like every target these programs are built for).
#[inline(always)]
fn states(ctx: &TracePointContext) -> Option<(i32, i32)> {
    let old_at = config!(tp.sk_oldstate);
    let new_at = config!(tp.sk_newstate);
    if old_at != ABSENT && new_at == old_at.wrapping_add(4) {
        let both: u64 = field(ctx, old_at)?;
        return Some((both as u32 as i32, (both >> 32) as u32 as i32));
    }
    Some((field(ctx, old_at)?, field(ctx, new_at)?))
}

fn try_set_state(ctx: &TracePointContext) -> Option<()> {
    // This runs for every transition of every socket on the node (~8 per connection): the
    // states come first, in one read, and most transitions stop there.
    let (old, new) = states(ctx)?;
    let connect = old == TCP_CLOSE && new == TCP_SYN_SENT;
    let followed =
        (old == TCP_SYN_SENT && new == TCP_ESTABLISHED) || (new == TCP_CLOSE && old != TCP_LISTEN);
    // A listener's birth and death.
    let listen = (old == TCP_CLOSE && new == TCP_LISTEN) || (old == TCP_LISTEN && new == TCP_CLOSE);
    if !(connect || followed || listen) {
        return None;
    }
    let protocol: u16 = field(ctx, config!(tp.sk_protocol))?;
    if protocol != IPPROTO_TCP {
        return None;
    }
    if connect {
        return kubelet::on_connect(ctx, field(ctx, config!(tp.sk_family))?);
    }
    if followed {
        return kubelet::on_transition(ctx, old, new);
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
