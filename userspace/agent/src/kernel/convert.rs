//! Ring-buffer records (the eBPF ABI) to the engine's owned `KernelEvent`s.

use podlife_common::decode::{trim_nul, Record};
use podlife_common::*;
use podlife_core::{ExitStatus, KernelEvent, KernelEventKind, SignalHandler, SignalResult};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(trim_nul(bytes)).into_owned()
}

/// Split the NUL-separated argv buffer into its arguments.
fn argv(e: &ExecEvent) -> Vec<String> {
    let used = (e.argv_len as usize).min(ARGV_LEN);
    e.argv[..used]
        .split(|&b| b == 0)
        .take(e.argc as usize)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn event(h: &Header, kind: KernelEventKind) -> KernelEvent {
    KernelEvent {
        ts_ns: h.ts_ns,
        tgid: h.tgid,
        tid: h.tid,
        cgroup_id: h.cgroup_id,
        comm: text(&h.comm),
        kind,
    }
}

fn opt(present: u32, bit: u32, v: u64) -> Option<u64> {
    (present & bit != 0).then_some(v)
}

pub fn to_kernel_event(r: &Record) -> KernelEvent {
    match r {
        Record::Exec(e) => event(
            &e.header,
            KernelEventKind::Exec {
                filename: text(&e.filename),
                argv: argv(e),
                argv_truncated: e.flags & (EXEC_ARGV_TRUNCATED | EXEC_ARGV_MISSING) != 0,
                old_tid: e.old_tid,
            },
        ),
        Record::Exit(e) => event(
            &e.header,
            KernelEventKind::Exit {
                status: (e.exit_code_valid != 0).then(|| ExitStatus::from_wait_status(e.exit_code)),
            },
        ),
        Record::Fork(e) => event(
            &e.header,
            KernelEventKind::Fork {
                child_tgid: e.child_pid,
                clone_flags: e.clone_flags,
            },
        ),
        Record::SignalGenerate(e) => event(
            &e.header,
            KernelEventKind::SignalGenerate {
                sig: e.sig,
                target_pid: e.target_pid,
                target_comm: text(&e.target_comm),
                code: e.code,
                group: e.group != 0,
                result: SignalResult::from_raw(e.result),
            },
        ),
        Record::SignalDeliver(e) => event(
            &e.header,
            KernelEventKind::SignalDeliver {
                sig: e.sig,
                code: e.code,
                handler: SignalHandler::from_raw(e.sa_handler),
            },
        ),
        Record::Setns(e) => event(
            &e.header,
            KernelEventKind::Setns {
                nstype: e.flags,
                fd: e.fd,
                ret: e.ret,
            },
        ),
        Record::Unshare(e) => event(&e.header, KernelEventKind::Unshare { flags: e.flags }),
        Record::CgroupMkdir(e) => event(
            &e.header,
            KernelEventKind::CgroupMkdir {
                root: e.root,
                id: e.id,
                level: e.level,
                path: text(&e.path),
            },
        ),
        Record::CgroupRmdir(e) => event(
            &e.header,
            KernelEventKind::CgroupRmdir {
                root: e.root,
                id: e.id,
                level: e.level,
                path: text(&e.path),
            },
        ),
        Record::CgroupAttach(e) => event(
            &e.header,
            KernelEventKind::CgroupAttach {
                root: e.root,
                id: e.id,
                level: e.level,
                path: text(&e.path),
                pid: e.pid,
            },
        ),
        Record::OomVictim(e) => event(
            &e.header,
            KernelEventKind::OomVictim {
                pid: e.pid,
                victim_comm: (e.present & OOM_HAS_COMM != 0).then(|| text(&e.victim_comm)),
                total_vm_kb: opt(e.present, OOM_HAS_TOTAL_VM, e.total_vm_kb),
                anon_rss_kb: opt(e.present, OOM_HAS_ANON_RSS, e.anon_rss_kb),
                file_rss_kb: opt(e.present, OOM_HAS_FILE_RSS, e.file_rss_kb),
                shmem_rss_kb: opt(e.present, OOM_HAS_SHMEM_RSS, e.shmem_rss_kb),
                pgtables_kb: opt(e.present, OOM_HAS_PGTABLES, e.pgtables_kb),
                oom_score_adj: (e.present & OOM_HAS_SCORE_ADJ != 0).then_some(e.oom_score_adj),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podlife_common::decode::{as_bytes, decode};

    #[test]
    fn exec_argv_is_split_and_bounded() {
        let mut e = ExecEvent {
            header: Header {
                kind: EventKind::Exec as u32,
                version: ABI_VERSION,
                ts_ns: 5,
                tgid: 10,
                tid: 10,
                cgroup_id: 3,
                comm: *b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            },
            old_tid: 10,
            flags: 0,
            argc: 3,
            argv_len: 22,
            filename: [0; PATH_LEN],
            argv: [0; ARGV_LEN],
        };
        e.argv[..22].copy_from_slice(b"sh\0-c\0echo hi; exit 3\0");
        e.filename[..7].copy_from_slice(b"/bin/sh");
        let ev = to_kernel_event(&decode(as_bytes(&e)).unwrap());
        assert_eq!(ev.comm, "sh");
        match ev.kind {
            KernelEventKind::Exec {
                filename,
                argv,
                argv_truncated,
                ..
            } => {
                assert_eq!(filename, "/bin/sh");
                assert_eq!(argv, vec!["sh", "-c", "echo hi; exit 3"]);
                assert!(!argv_truncated);
            }
            other => panic!("not an exec: {other:?}"),
        }
    }
}
