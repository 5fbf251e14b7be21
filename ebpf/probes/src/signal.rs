//! Signals: who sent what to whom, what the kernel did with it, and the target's handler.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext,
};
use podlife_common::{EventKind, SignalEvent, COMM_LEN};

use crate::emit::{
    config, current_ids, field, fill_header, interesting, is_tracked_tgid, reserve, NO_WAKEUP,
};

const SIGKILL: i32 = 9;
const SIGCHLD: i32 = 17;
const SIGURG: i32 = 23;

/// signal:signal_generate (sig, errno, code, comm, pid, group, result); current is the sender.
#[tracepoint]
pub fn signal_generate(ctx: TracePointContext) -> u32 {
    let _ = try_generate(&ctx);
    0
}

fn try_generate(ctx: &TracePointContext) -> Option<()> {
    let sig: i32 = field(ctx, config!(tp.gen_sig))?;
    // SIGCHLD and SIGURG (Go preemption) are constant noise with no lifecycle meaning.
    if sig == SIGCHLD || sig == SIGURG {
        return None;
    }
    let target = field::<i32>(ctx, config!(tp.gen_pid))? as u32;
    let (tgid, _) = current_ids();
    if !interesting(tgid) && !is_tracked_tgid(target) {
        return None;
    }
    let mut entry = reserve::<SignalEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::SignalGenerate);
        (*e).sig = sig;
        (*e).errno = field(ctx, config!(tp.gen_errno)).unwrap_or(0);
        (*e).code = field(ctx, config!(tp.gen_code)).unwrap_or(0);
        (*e).target_pid = target;
        (*e).group = field(ctx, config!(tp.gen_group)).unwrap_or(0);
        (*e).result = field(ctx, config!(tp.gen_result)).unwrap_or(-1);
        (*e).sa_handler = 0;
        (*e).sa_flags = 0;
        (*e).target_comm = [0; COMM_LEN];
        let off = config!(tp.gen_comm);
        if off != podlife_common::ABSENT {
            use aya_ebpf::EbpfContext as _;
            bpf_probe_read_kernel(
                (*e).target_comm.as_mut_ptr().cast(),
                COMM_LEN as u32,
                (ctx.as_ptr() as *const u8).add(off as usize).cast(),
            );
        }
    }
    entry.submit(NO_WAKEUP);
    Some(())
}

/// signal:signal_deliver (sig, errno, code, sa_handler, sa_flags); current is the target.
#[tracepoint]
pub fn signal_deliver(ctx: TracePointContext) -> u32 {
    let _ = try_deliver(&ctx);
    0
}

fn try_deliver(ctx: &TracePointContext) -> Option<()> {
    let sig: i32 = field(ctx, config!(tp.del_sig))?;
    // SIGKILL has no handler to report; its per-thread deliveries are group-exit zaps.
    if sig == SIGKILL || sig == SIGCHLD || sig == SIGURG {
        return None;
    }
    let (tgid, _) = current_ids();
    if !interesting(tgid) {
        return None;
    }
    let mut entry = reserve::<SignalEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::SignalDeliver);
        (*e).sig = sig;
        (*e).errno = field(ctx, config!(tp.del_errno)).unwrap_or(0);
        (*e).code = field(ctx, config!(tp.del_code)).unwrap_or(0);
        (*e).target_pid = tgid;
        (*e).group = 0;
        (*e).result = 0;
        (*e).sa_handler = field(ctx, config!(tp.del_sa_handler)).unwrap_or(0);
        (*e).sa_flags = field(ctx, config!(tp.del_sa_flags)).unwrap_or(0);
        (*e).target_comm = [0; COMM_LEN];
    }
    entry.submit(NO_WAKEUP);
    Some(())
}
