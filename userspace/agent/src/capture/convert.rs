//! Ring-buffer records (the eBPF ABI) to the engine's owned `KernelEvent`s.

use podlife_common::decode::{trim_nul, Record};
use podlife_common::*;
use podlife_core::{
    Comm, ConnOutcome, ExitStatus, KernelEvent, KernelEventKind, SignalHandler, SignalResult,
    TcpState,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(trim_nul(bytes)).into_owned()
}

/// Split the NUL-separated argv buffer into its arguments.
fn argv(e: &ExecEvent) -> Vec<String> {
    e.argv()
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
        comm: Comm::from_kernel(&h.comm),
        kind,
    }
}

fn opt(present: u32, bit: u32, v: u64) -> Option<u64> {
    (present & bit != 0).then_some(v)
}

/// An address of a socket record: 4 bytes for AF_INET, 16 otherwise (network byte order).
fn ip(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

pub fn to_kernel_event(r: &Record) -> KernelEvent {
    match r {
        Record::Exec(e) => event(
            &e.header,
            KernelEventKind::Exec {
                filename: text(e.filename()),
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
                target_comm: Comm::from_kernel(&e.target_comm),
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
                info: Box::new(podlife_core::OomVictimInfo {
                    victim_comm: (e.present & OOM_HAS_COMM != 0)
                        .then(|| Comm::from_kernel(&e.victim_comm)),
                    total_vm_kb: opt(e.present, OOM_HAS_TOTAL_VM, e.total_vm_kb),
                    anon_rss_kb: opt(e.present, OOM_HAS_ANON_RSS, e.anon_rss_kb),
                    file_rss_kb: opt(e.present, OOM_HAS_FILE_RSS, e.file_rss_kb),
                    shmem_rss_kb: opt(e.present, OOM_HAS_SHMEM_RSS, e.shmem_rss_kb),
                    pgtables_kb: opt(e.present, OOM_HAS_PGTABLES, e.pgtables_kb),
                    oom_score_adj: (e.present & OOM_HAS_SCORE_ADJ != 0).then_some(e.oom_score_adj),
                }),
            },
        ),
        Record::SockState(e) => event(
            &e.header,
            KernelEventKind::TcpState {
                sk: e.skaddr,
                old: TcpState::from_raw(e.oldstate),
                new: TcpState::from_raw(e.newstate),
                saddr: ip(e.family, &e.saddr),
                sport: e.sport,
                daddr: ip(e.family, &e.daddr),
                dport: e.dport,
            },
        ),
        Record::TcpReset(e) => event(
            &e.header,
            KernelEventKind::TcpReset {
                saddr: IpAddr::V6(Ipv6Addr::from(e.saddr)).to_canonical(),
                sport: e.sport,
                daddr: IpAddr::V6(Ipv6Addr::from(e.daddr)).to_canonical(),
                dport: e.dport,
            },
        ),
        Record::KubeletConn(e) => event(
            &e.header,
            KernelEventKind::KubeletConn {
                sk: e.skaddr,
                addr: IpAddr::V6(Ipv6Addr::from(e.daddr)).to_canonical(),
                port: e.dport,
                sport: e.sport,
                outcome: match e.outcome {
                    CONN_REFUSED => ConnOutcome::Refused,
                    CONN_TIMEOUT => ConnOutcome::Timeout,
                    CONN_RESET => ConnOutcome::Reset,
                    _ => ConnOutcome::Closed,
                },
                start_ns: e.start_ns,
                established_ns: (e.established_ns != 0).then_some(e.established_ns),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podlife_common::decode::{as_bytes, decode, exec_bytes};

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
            filename_len: 8,
            _pad: 0,
            data: [0; ARGV_LEN + PATH_LEN],
        };
        e.data[..30].copy_from_slice(b"sh\0-c\0echo hi; exit 3\0/bin/sh\0");
        let ev = to_kernel_event(&decode(exec_bytes(&e)).unwrap());
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

    fn header(kind: EventKind) -> Header {
        Header {
            kind: kind as u32,
            version: ABI_VERSION,
            ts_ns: 123_456_789,
            tgid: 42,
            tid: 43,
            cgroup_id: 9999,
            comm: *b"runc:[2:INIT]\0\0\0",
        }
    }

    /// The event as the engine gets it from a record: header fields, then the kind.
    fn convert<T: podlife_common::decode::Plain>(
        record: &T,
    ) -> (u64, u32, u32, u64, Comm, KernelEventKind) {
        let e = to_kernel_event(&decode(as_bytes(record)).unwrap());
        (e.ts_ns, e.tgid, e.tid, e.cgroup_id, e.comm, e.kind)
    }

    fn with_header(kind: KernelEventKind) -> (u64, u32, u32, u64, Comm, KernelEventKind) {
        (123_456_789, 42, 43, 9999, "runc:[2:INIT]".into(), kind)
    }

    #[test]
    fn every_kind_converts_every_field() {
        let exit = ExitEvent {
            header: header(EventKind::Exit),
            exit_code: 0x8b, // killed by SIGSEGV, core dumped
            exit_code_valid: 1,
        };
        let status = ExitStatus {
            code: None,
            signal: Some(11),
            core_dumped: true,
        };
        assert_eq!(
            convert(&exit),
            with_header(KernelEventKind::Exit {
                status: Some(status)
            })
        );
        let fork = ForkEvent {
            header: header(EventKind::Fork),
            child_pid: 7,
            _pad: 0,
            clone_flags: 0x2001_1000,
        };
        assert_eq!(
            convert(&fork),
            with_header(KernelEventKind::Fork {
                child_tgid: 7,
                clone_flags: 0x2001_1000
            })
        );
        let mut target_comm = [0; COMM_LEN];
        target_comm[..5].copy_from_slice(b"pause");
        let mut s = SignalEvent {
            header: header(EventKind::SignalGenerate),
            sig: 15,
            errno: 0,
            code: 0x80,
            target_pid: 9,
            group: 1,
            result: 1,
            sa_handler: 0x7f00_dead_beef,
            sa_flags: 0,
            target_comm,
        };
        assert_eq!(
            convert(&s),
            with_header(KernelEventKind::SignalGenerate {
                sig: 15,
                target_pid: 9,
                target_comm: "pause".into(),
                code: 0x80,
                group: true,
                result: SignalResult::Ignored,
            })
        );
        s.header = header(EventKind::SignalDeliver);
        assert_eq!(
            convert(&s),
            with_header(KernelEventKind::SignalDeliver {
                sig: 15,
                code: 0x80,
                handler: SignalHandler::Handler(0x7f00_dead_beef),
            })
        );
        let mut n = NsEvent {
            header: header(EventKind::Setns),
            flags: 0x0800_0000,
            fd: 3,
            ret: -22,
        };
        assert_eq!(
            convert(&n),
            with_header(KernelEventKind::Setns {
                nstype: 0x0800_0000,
                fd: 3,
                ret: -22
            })
        );
        n.header = header(EventKind::Unshare);
        assert_eq!(
            convert(&n),
            with_header(KernelEventKind::Unshare { flags: 0x0800_0000 })
        );
        let mut path = [0; PATH_LEN];
        let p = "/kubepods/burstable/pod8f3c2a1e";
        path[..p.len()].copy_from_slice(p.as_bytes());
        let mut c = CgroupEvent {
            header: header(EventKind::CgroupMkdir),
            root: 4,
            level: 3,
            id: 77,
            pid: 1234,
            path_len: p.len() as u32,
            path,
        };
        assert_eq!(
            convert(&c),
            with_header(KernelEventKind::CgroupMkdir {
                root: 4,
                id: 77,
                level: 3,
                path: p.into()
            })
        );
        c.header = header(EventKind::CgroupRmdir);
        assert_eq!(
            convert(&c),
            with_header(KernelEventKind::CgroupRmdir {
                root: 4,
                id: 77,
                level: 3,
                path: p.into()
            })
        );
        c.header = header(EventKind::CgroupAttach);
        assert_eq!(
            convert(&c),
            with_header(KernelEventKind::CgroupAttach {
                root: 4,
                id: 77,
                level: 3,
                path: p.into(),
                pid: 1234
            })
        );
        let mut o = OomEvent {
            header: header(EventKind::OomVictim),
            pid: 5,
            uid: 0,
            total_vm_kb: 11,
            anon_rss_kb: 12,
            file_rss_kb: 13,
            shmem_rss_kb: 14,
            pgtables_kb: 15,
            oom_score_adj: -998,
            present: OOM_HAS_TOTAL_VM
                | OOM_HAS_ANON_RSS
                | OOM_HAS_FILE_RSS
                | OOM_HAS_SHMEM_RSS
                | OOM_HAS_PGTABLES
                | OOM_HAS_SCORE_ADJ
                | OOM_HAS_COMM,
            victim_comm: target_comm,
        };
        assert_eq!(
            convert(&o),
            with_header(KernelEventKind::OomVictim {
                pid: 5,
                info: Box::new(podlife_core::OomVictimInfo {
                    victim_comm: Some("pause".into()),
                    total_vm_kb: Some(11),
                    anon_rss_kb: Some(12),
                    file_rss_kb: Some(13),
                    shmem_rss_kb: Some(14),
                    pgtables_kb: Some(15),
                    oom_score_adj: Some(-998),
                }),
            })
        );
        // Fields the running kernel does not give are absent, not 0.
        o.present = OOM_HAS_ANON_RSS;
        assert_eq!(
            convert(&o),
            with_header(KernelEventKind::OomVictim {
                pid: 5,
                info: Box::new(podlife_core::OomVictimInfo {
                    victim_comm: None,
                    total_vm_kb: None,
                    anon_rss_kb: Some(12),
                    file_rss_kb: None,
                    shmem_rss_kb: None,
                    pgtables_kb: None,
                    oom_score_adj: None,
                }),
            })
        );
        let mut saddr = [0; 16];
        saddr[..4].copy_from_slice(&[10, 88, 0, 7]);
        let mut k = SockEvent {
            header: header(EventKind::SockState),
            skaddr: 0xffff_8880_0000_0040,
            oldstate: TCP_CLOSE,
            newstate: TCP_LISTEN,
            sport: 8080,
            dport: 0,
            family: AF_INET,
            protocol: IPPROTO_TCP,
            saddr,
            daddr: [0; 16],
        };
        assert_eq!(
            convert(&k),
            with_header(KernelEventKind::TcpState {
                sk: 0xffff_8880_0000_0040,
                old: TcpState::Close,
                new: TcpState::Listen,
                saddr: "10.88.0.7".parse().unwrap(),
                sport: 8080,
                daddr: "0.0.0.0".parse().unwrap(),
                dport: 0,
            })
        );
        // IPv6 takes all 16 bytes; an unnamed state keeps its number.
        k.family = AF_INET6;
        k.saddr = [0; 16];
        k.saddr[15] = 1;
        k.newstate = 12;
        assert_eq!(
            convert(&k),
            with_header(KernelEventKind::TcpState {
                sk: 0xffff_8880_0000_0040,
                old: TcpState::Close,
                new: TcpState::Other(12),
                saddr: "::1".parse().unwrap(),
                sport: 8080,
                daddr: "::".parse().unwrap(),
                dport: 0,
            })
        );
        // Reset addresses come IPv4-mapped for IPv4: served as IPv4.
        let mapped = |a: &str| a.parse::<Ipv6Addr>().unwrap().octets();
        let r = ResetEvent {
            header: header(EventKind::TcpReset),
            family: AF_INET,
            sport: 8080,
            dport: 40_000,
            _pad: 0,
            reason: RESET_NO_SOCKET,
            saddr: mapped("::ffff:10.231.5.2"),
            daddr: mapped("fd00::1"),
        };
        assert_eq!(
            convert(&r),
            with_header(KernelEventKind::TcpReset {
                saddr: "10.231.5.2".parse().unwrap(),
                sport: 8080,
                daddr: "fd00::1".parse().unwrap(),
                dport: 40_000,
            })
        );
    }
}
