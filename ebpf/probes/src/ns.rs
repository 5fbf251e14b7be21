//! Namespace joins (setns, with the result) and creations (unshare).

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use podlife_common::{EventKind, NsEvent};

use crate::emit::{config, current_ids, field, fill_header, interesting, reserve, NO_WAKEUP};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SetnsArgs {
    nstype: u64,
    fd: i32,
    _pad: u32,
}

/// setns arguments between sys_enter and sys_exit, keyed by thread id.
#[map]
static SETNS_ARGS: LruHashMap<u32, SetnsArgs> = LruHashMap::with_max_entries(4096, 0);

/// syscalls:sys_enter_setns (__syscall_nr, fd, nstype)
#[tracepoint]
pub fn sys_enter_setns(ctx: TracePointContext) -> u32 {
    let _ = try_enter_setns(&ctx);
    0
}

fn try_enter_setns(ctx: &TracePointContext) -> Option<()> {
    let (tgid, tid) = current_ids();
    if !interesting(tgid) {
        return None;
    }
    let args = SetnsArgs {
        fd: field::<u64>(ctx, config!(tp.setns_fd))? as i32,
        nstype: field::<u64>(ctx, config!(tp.setns_nstype)).unwrap_or(0) & 0xffff_ffff,
        _pad: 0,
    };
    SETNS_ARGS.insert(tid, args, 0).ok()
}

/// syscalls:sys_exit_setns (__syscall_nr, ret)
#[tracepoint]
pub fn sys_exit_setns(ctx: TracePointContext) -> u32 {
    let _ = try_exit_setns(&ctx);
    0
}

fn try_exit_setns(ctx: &TracePointContext) -> Option<()> {
    let (_, tid) = current_ids();
    let args = unsafe { *SETNS_ARGS.get(tid)? };
    let _ = SETNS_ARGS.remove(tid);
    let ret = field::<i64>(ctx, config!(tp.setns_ret)).unwrap_or(0);
    let mut entry = reserve::<NsEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::Setns);
        (*e).flags = args.nstype;
        (*e).fd = args.fd;
        (*e).ret = ret as i32;
    }
    entry.submit(NO_WAKEUP);
    Some(())
}

/// syscalls:sys_enter_unshare (__syscall_nr, unshare_flags)
#[tracepoint]
pub fn sys_enter_unshare(ctx: TracePointContext) -> u32 {
    let _ = try_unshare(&ctx);
    0
}

fn try_unshare(ctx: &TracePointContext) -> Option<()> {
    let (tgid, _) = current_ids();
    if !interesting(tgid) {
        return None;
    }
    let flags: u64 = field(ctx, config!(tp.unshare_flags))?;
    let mut entry = reserve::<NsEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::Unshare);
        (*e).flags = flags;
        (*e).fd = -1;
        (*e).ret = 0;
    }
    entry.submit(NO_WAKEUP);
    Some(())
}
