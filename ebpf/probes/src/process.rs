//! Process lifecycle: exec (with argv), exit (with the real exit status), fork.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_user,
        generated::{bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use core::mem::size_of;

use podlife_common::{
    EventKind, ExecEvent, ExitEvent, ForkEvent, ARGV_LEN, ARGV_MAX_ARGS, ARG_LEN,
    EXEC_ARGV_MISSING, EXEC_ARGV_TRUNCATED, EXEC_HEAD_LEN, PATH_LEN, RUNTIME_COMMS,
    TRACK_INHERITED, TRACK_RUNTIME,
};

use crate::emit::{
    config, current_ids, data_loc, field, fill_header, interesting, output, reserve, track_tgid,
    NO_WAKEUP, TRACKED_TGIDS,
};

const CLONE_THREAD: u64 = 0x0001_0000;

/// argv captured at sys_enter_execve, waiting for sched_process_exec of the same thread.
#[repr(C)]
pub struct Argv {
    flags: u32,
    argc: u32,
    len: u32,
    _pad: u32,
    data: [u8; ARGV_LEN],
}

#[map]
static ARGV_SCRATCH: PerCpuArray<Argv> = PerCpuArray::with_max_entries(1, 0);

/// Keyed by the thread id that called execve. LRU: a failed execve leaves nothing behind forever.
#[map]
static EXEC_ARGS: LruHashMap<u32, Argv> = LruHashMap::with_max_entries(4096, 0);

/// syscalls:sys_enter_execve (__syscall_nr, filename, argv, envp)
#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let _ = try_capture_argv(&ctx, config!(tp.execve_argv));
    0
}

/// syscalls:sys_enter_execveat (__syscall_nr, fd, filename, argv, envp, flags)
#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let _ = try_capture_argv(&ctx, config!(tp.execveat_argv));
    0
}

fn try_capture_argv(ctx: &TracePointContext, argv_offset: u16) -> Option<()> {
    let (tgid, tid) = current_ids();
    if !interesting(tgid) {
        return None;
    }
    let argv: *const *const u8 = field(ctx, argv_offset)?;
    let buf = ARGV_SCRATCH.get_ptr_mut(0)?;
    let buf = unsafe { &mut *buf };
    buf.flags = 0;
    buf.argc = 0;
    let mut off: usize = 0;
    let mut done = false;
    for i in 0..ARGV_MAX_ARGS {
        let arg: *const u8 = match unsafe { bpf_probe_read_user(argv.add(i)) } {
            Ok(p) => p,
            Err(_) => {
                done = true;
                break;
            }
        };
        if arg.is_null() {
            done = true;
            break;
        }
        if off > ARGV_LEN - ARG_LEN {
            break;
        }
        let dst = unsafe { buf.data.as_mut_ptr().add(off) };
        let n = unsafe { bpf_probe_read_user_str(dst.cast(), ARG_LEN as u32, arg.cast()) };
        if n <= 0 {
            done = true;
            break;
        }
        if n as usize >= ARG_LEN {
            buf.flags |= EXEC_ARGV_TRUNCATED;
        }
        off += n as usize & (ARG_LEN * 2 - 1);
        buf.argc += 1;
    }
    if !done {
        buf.flags |= EXEC_ARGV_TRUNCATED;
    }
    buf.len = off as u32;
    let _ = EXEC_ARGS.insert(tid, buf, 0);
    Some(())
}

/// sched:sched_process_exec (filename __data_loc, pid, old_pid)
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

#[inline(always)]
fn is_runtime_comm(comm: &[u8; 16]) -> bool {
    let mut r = 0;
    while r < RUNTIME_COMMS.len() {
        let prefix = RUNTIME_COMMS[r];
        let mut i = 0;
        let mut all = true;
        while i < prefix.len() && i < 16 {
            if comm[i] != prefix[i] {
                all = false;
                break;
            }
            i += 1;
        }
        if all {
            return true;
        }
        r += 1;
    }
    false
}

/// An exec record being built: the record's bytes, then slack so that the masked offsets the
/// verifier can bound (`& (2 * ARGV_LEN - 1)`) always stay inside the buffer.
#[repr(C)]
pub struct ExecScratch {
    event: ExecEvent,
    _slack: [u8; ARGV_LEN],
}

#[map]
static EXEC_SCRATCH: PerCpuArray<ExecScratch> = PerCpuArray::with_max_entries(1, 0);

fn try_exec(ctx: &TracePointContext) -> Option<()> {
    let (tgid, tid) = current_ids();
    if let Ok(comm) = bpf_get_current_comm() {
        if is_runtime_comm(&comm) {
            track_tgid(tgid, TRACK_RUNTIME);
        }
    }
    if !interesting(tgid) {
        return None;
    }
    let old_tid: u32 = field::<i32>(ctx, config!(tp.exec_old_pid))
        .map(|p| p as u32)
        .unwrap_or(tid);
    // Built in a per-CPU buffer and sent with only the bytes used (argv, then the filename):
    // a /bin/true exec is ~130 bytes instead of a fixed 840-byte reservation and 512-byte copy.
    let scratch = EXEC_SCRATCH.get_ptr_mut(0)?;
    let e = unsafe { &mut (*scratch).event };
    fill_header(&mut e.header, EventKind::Exec);
    e.old_tid = old_tid;
    e._pad = 0;
    let argv_len = match EXEC_ARGS.get_ptr(old_tid) {
        Some(args) => unsafe {
            e.flags = (*args).flags;
            e.argc = (*args).argc;
            let len = (*args).len as usize & (ARGV_LEN * 2 - 1);
            if len > ARGV_LEN
                || bpf_probe_read_kernel(
                    e.data.as_mut_ptr().cast(),
                    len as u32,
                    (*args).data.as_ptr().cast(),
                ) != 0
            {
                e.flags = EXEC_ARGV_MISSING;
                e.argc = 0;
                0
            } else {
                let _ = EXEC_ARGS.remove(old_tid);
                len
            }
        },
        None => {
            e.flags = EXEC_ARGV_MISSING;
            e.argc = 0;
            0
        }
    };
    e.argv_len = argv_len as u32;
    let name_len = match data_loc(ctx, config!(tp.exec_filename_loc)) {
        Some(name) => {
            let dst = unsafe { e.data.as_mut_ptr().add(argv_len & (ARGV_LEN * 2 - 1)) };
            let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), PATH_LEN as u32, name.cast()) };
            if n > 0 {
                n as usize & (PATH_LEN * 2 - 1)
            } else {
                0
            }
        }
        None => 0,
    };
    e.filename_len = name_len as u32;
    let used = (EXEC_HEAD_LEN + argv_len + name_len).min(size_of::<ExecEvent>());
    let bytes = unsafe { core::slice::from_raw_parts((e as *const ExecEvent).cast::<u8>(), used) };
    output(bytes);
    Some(())
}

/// sched:sched_process_exit (comm, pid, prio, group_dead since 6.x)
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &TracePointContext) -> Option<()> {
    let (tgid, tid) = current_ids();
    // Threads land in TRACKED_TGIDS only through cgroup attach; drop them as they go.
    if tid != tgid {
        let _ = TRACKED_TGIDS.remove(tid);
    }
    // Without group_dead (older kernels) the leader's exit stands for the process's.
    let group_dead = match field::<u8>(ctx, config!(tp.exit_group_dead)) {
        Some(v) => v != 0,
        None => tid == tgid,
    };
    if !group_dead || !interesting(tgid) {
        return None;
    }
    let _ = TRACKED_TGIDS.remove(tgid);
    let mut entry = reserve::<ExitEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::Exit);
        (*e).exit_code = 0;
        (*e).exit_code_valid = 0;
        let off = config!(task_exit_code);
        if off != u32::MAX {
            let task = bpf_get_current_task() as *const u8;
            let mut code: i32 = 0;
            if bpf_probe_read_kernel(
                (&mut code as *mut i32).cast(),
                4,
                task.add(off as usize).cast(),
            ) == 0
            {
                (*e).exit_code = code as u32;
                (*e).exit_code_valid = 1;
            }
        }
    }
    entry.submit(NO_WAKEUP);
    Some(())
}

/// task:task_newtask (pid, comm, clone_flags, oom_score_adj); current is the parent.
#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let _ = try_newtask(&ctx);
    0
}

fn try_newtask(ctx: &TracePointContext) -> Option<()> {
    let flags: u64 = field(ctx, config!(tp.newtask_clone_flags))?;
    if flags & CLONE_THREAD != 0 {
        return None;
    }
    let (tgid, _) = current_ids();
    if !interesting(tgid) {
        return None;
    }
    let child = field::<i32>(ctx, config!(tp.newtask_pid))? as u32;
    track_tgid(child, TRACK_INHERITED);
    let mut entry = reserve::<ForkEvent>()?;
    let e = entry.as_mut_ptr();
    unsafe {
        fill_header(&mut (*e).header, EventKind::Fork);
        (*e).child_pid = child;
        (*e)._pad = 0;
        (*e).clone_flags = flags;
    }
    entry.submit(NO_WAKEUP);
    Some(())
}
