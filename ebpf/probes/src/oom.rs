//! OOM kills: oom:mark_victim, reported whatever the cgroup (node OOMs matter too) and at once.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::tracepoint, programs::TracePointContext,
};
use podlife_common::*;

use crate::emit::{config, current_ids, data_loc, field, fill_header, reserve, FORCE_WAKEUP};

/// oom:mark_victim (pid, comm __data_loc, total_vm, anon_rss, file_rss, shmem_rss, uid,
/// pgtables, oom_score_adj — all but pid since 6.x)
#[tracepoint]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
    let _ = try_mark_victim(&ctx);
    0
}

#[inline(always)]
fn kb(ctx: &TracePointContext, off: u16, bit: u32, present: &mut u32) -> u64 {
    match field::<u64>(ctx, off) {
        Some(v) => {
            *present |= bit;
            v
        }
        None => 0,
    }
}

fn try_mark_victim(ctx: &TracePointContext) -> Option<()> {
    let (tgid, _) = current_ids();
    if tgid == config!(self_tgid) {
        return None;
    }
    let pid = field::<i32>(ctx, config!(tp.oom_pid))? as u32;
    let mut entry = reserve::<OomEvent>()?;
    let e = entry.as_mut_ptr();
    let mut present = 0u32;
    unsafe {
        fill_header(&mut (*e).header, EventKind::OomVictim);
        (*e).pid = pid;
        (*e).total_vm_kb = kb(
            ctx,
            config!(tp.oom_total_vm),
            OOM_HAS_TOTAL_VM,
            &mut present,
        );
        (*e).anon_rss_kb = kb(
            ctx,
            config!(tp.oom_anon_rss),
            OOM_HAS_ANON_RSS,
            &mut present,
        );
        (*e).file_rss_kb = kb(
            ctx,
            config!(tp.oom_file_rss),
            OOM_HAS_FILE_RSS,
            &mut present,
        );
        (*e).shmem_rss_kb = kb(
            ctx,
            config!(tp.oom_shmem_rss),
            OOM_HAS_SHMEM_RSS,
            &mut present,
        );
        (*e).pgtables_kb = kb(
            ctx,
            config!(tp.oom_pgtables),
            OOM_HAS_PGTABLES,
            &mut present,
        );
        (*e).uid = match field::<u32>(ctx, config!(tp.oom_uid)) {
            Some(v) => {
                present |= OOM_HAS_UID;
                v
            }
            None => 0,
        };
        (*e).oom_score_adj = match field::<i16>(ctx, config!(tp.oom_score_adj)) {
            Some(v) => {
                present |= OOM_HAS_SCORE_ADJ;
                v as i32
            }
            None => 0,
        };
        (*e).victim_comm = [0; COMM_LEN];
        if let Some(p) = data_loc(ctx, config!(tp.oom_comm_loc)) {
            if bpf_probe_read_kernel_str(
                (*e).victim_comm.as_mut_ptr().cast(),
                COMM_LEN as u32,
                p.cast(),
            ) > 0
            {
                present |= OOM_HAS_COMM;
            }
        }
        (*e).present = present;
    }
    entry.submit(FORCE_WAKEUP);
    Some(())
}
