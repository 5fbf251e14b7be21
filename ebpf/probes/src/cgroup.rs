//! cgroup directories of pods and containers: mkdir, rmdir, attach. Only kubepods paths of one
//! hierarchy (cgroup v2 where it exists) are reported.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::tracepoint, programs::TracePointContext,
};
use podlife_common::{CgroupEvent, Counter, EventKind, KUBEPODS, PATH_LEN, TRACK_INHERITED};

use crate::emit::{
    config, count, data_loc, field, fill_header, reserve, track_tgid, FORCE_WAKEUP, NO_WAKEUP,
    TRACKED_CGROUPS,
};

struct Layout {
    root: u16,
    level: u16,
    id: u16,
    path_loc: u16,
    pid: u16,
}

/// Whether `path[..len]` contains "kubepods".
#[inline(always)]
fn has_kubepods(path: &[u8; PATH_LEN], len: usize) -> bool {
    let n = KUBEPODS.len();
    let mut i = 0;
    while i + n <= PATH_LEN {
        if i + n > len {
            return false;
        }
        if path[i] == b'k' {
            let mut j = 1;
            while j < n && path[i + j] == KUBEPODS[j] {
                j += 1;
            }
            if j == n {
                return true;
            }
        }
        i += 1;
    }
    false
}

#[derive(PartialEq)]
enum Op {
    Mkdir,
    Rmdir,
    Attach,
}

fn try_cgroup(ctx: &TracePointContext, op: Op, l: Layout) -> Option<()> {
    let root: i32 = field(ctx, l.root)?;
    if root != config!(cgroup_root) as i32 {
        return None;
    }
    let id: u64 = field(ctx, l.id)?;
    let tracked = unsafe { TRACKED_CGROUPS.get(id) }.is_some();
    if op != Op::Mkdir && !tracked {
        return None;
    }
    let pid = if l.pid == podlife_common::ABSENT {
        0
    } else {
        field::<i32>(ctx, l.pid).unwrap_or(0) as u32
    };
    // A task moved into a pod cgroup by a host process (not a followed runtime tree) must still be
    // followed, so that signals sent to it from the host are seen. Entries of threads are removed
    // at thread exit (process.rs).
    if op == Op::Attach && pid > 0 {
        track_tgid(pid, TRACK_INHERITED);
    }
    let mut entry = reserve::<CgroupEvent>()?;
    let e = entry.as_mut_ptr();
    let len = unsafe {
        match data_loc(ctx, l.path_loc) {
            Some(p) => {
                bpf_probe_read_kernel_str((*e).path.as_mut_ptr().cast(), PATH_LEN as u32, p.cast())
            }
            None => -1,
        }
    };
    if len <= 0 {
        entry.discard(0);
        return None;
    }
    let len = (len as usize).min(PATH_LEN);
    if op == Op::Mkdir {
        if !has_kubepods(unsafe { &(*e).path }, len) {
            entry.discard(0);
            return None;
        }
        if TRACKED_CGROUPS.insert(id, 1, 0).is_err() {
            count(podlife_common::Counter::TrackedCgroupsFull);
        }
    }
    if len == PATH_LEN {
        count(Counter::PathTruncated);
    }
    if op == Op::Rmdir {
        let _ = TRACKED_CGROUPS.remove(id);
    }
    let kind = match op {
        Op::Mkdir => EventKind::CgroupMkdir,
        Op::Rmdir => EventKind::CgroupRmdir,
        Op::Attach => EventKind::CgroupAttach,
    };
    unsafe {
        fill_header(&mut (*e).header, kind);
        (*e).root = root;
        (*e).level = field(ctx, l.level).unwrap_or(-1);
        (*e).id = id;
        (*e).pid = pid;
        (*e).path_len = (len - 1) as u32;
    }
    // A pod or container cgroup appearing or going is a lifecycle step users wait for: wake the
    // reader at once. They are rare (a few per pod), unlike attaches, which ride the timer.
    entry.submit(if op == Op::Attach {
        NO_WAKEUP
    } else {
        FORCE_WAKEUP
    });
    Some(())
}

fn dir_layout() -> Layout {
    Layout {
        root: config!(tp.cg_root),
        level: config!(tp.cg_level),
        id: config!(tp.cg_id),
        path_loc: config!(tp.cg_path_loc),
        pid: podlife_common::ABSENT,
    }
}

/// cgroup:cgroup_mkdir (root, level, id, path __data_loc)
#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    let _ = try_cgroup(&ctx, Op::Mkdir, dir_layout());
    0
}

/// cgroup:cgroup_rmdir (root, level, id, path __data_loc)
#[tracepoint]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    let _ = try_cgroup(&ctx, Op::Rmdir, dir_layout());
    0
}

/// cgroup:cgroup_attach_task (dst_root, dst_level, dst_id, pid, dst_path __data_loc, comm __data_loc)
#[tracepoint]
pub fn cgroup_attach_task(ctx: TracePointContext) -> u32 {
    let layout = Layout {
        root: config!(tp.att_root),
        level: config!(tp.att_level),
        id: config!(tp.att_id),
        path_loc: config!(tp.att_path_loc),
        pid: config!(tp.att_pid),
    };
    let _ = try_cgroup(&ctx, Op::Attach, layout);
    0
}
