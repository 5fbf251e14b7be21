//! Bounds-checked decoding of ring-buffer records (userspace only).

use alloc::boxed::Box;
use core::fmt;
use core::mem::size_of;

use crate::config::ProbeConfig;
use crate::event::*;

unsafe impl aya::Pod for ProbeConfig {}
unsafe impl aya::Pod for KubeletSock {}

/// One decoded record, copied out of the ring buffer.
// The large kinds are boxed (exec ~840 bytes with argv and filename, cgroup paths, OOM): inline,
// every record of a batch took their size, and a fork/exit storm spent a fifth of the agent's
// CPU moving ~850-byte slots that held 50-byte records (perf, `stress-ng --vfork`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Exec(Box<ExecEvent>),
    Exit(ExitEvent),
    Fork(ForkEvent),
    SignalGenerate(SignalEvent),
    SignalDeliver(SignalEvent),
    Setns(NsEvent),
    Unshare(NsEvent),
    CgroupMkdir(Box<CgroupEvent>),
    CgroupRmdir(Box<CgroupEvent>),
    CgroupAttach(Box<CgroupEvent>),
    OomVictim(Box<OomEvent>),
    SockState(SockEvent),
    TcpReset(ResetEvent),
    KubeletConn(KubeletConnEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record's kind needs.
    Short {
        kind: u32,
        need: usize,
        got: usize,
    },
    UnknownKind {
        kind: u32,
    },
    /// The record was written by eBPF programs of another ABI version.
    Version {
        got: u32,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { kind, need, got } => {
                write!(f, "record of kind {kind} is {got} bytes, needs {need}")
            }
            Self::UnknownKind { kind } => write!(f, "unknown event kind {kind}"),
            Self::Version { got } => write!(
                f,
                "record has ABI version {got}, this agent understands {ABI_VERSION}: \
                 the eBPF object and the agent come from different builds"
            ),
        }
    }
}

/// Types that may be built from any bytes of the right length: all-integer `repr(C)` structs.
///
/// # Safety
/// Implementors must be `repr(C)`, made only of integers and arrays of integers, with every
/// bit pattern valid.
pub unsafe trait Plain: Copy {}
unsafe impl Plain for Header {}
unsafe impl Plain for ExecEvent {}
unsafe impl Plain for ExitEvent {}
unsafe impl Plain for ForkEvent {}
unsafe impl Plain for SignalEvent {}
unsafe impl Plain for NsEvent {}
unsafe impl Plain for CgroupEvent {}
unsafe impl Plain for OomEvent {}
unsafe impl Plain for SockEvent {}
unsafe impl Plain for ResetEvent {}
unsafe impl Plain for KubeletConnEvent {}

/// At least `need` bytes, or the error that says how many were missing.
fn at_least(kind: u32, bytes: &[u8], need: usize) -> Result<(), DecodeError> {
    if bytes.len() < need {
        return Err(DecodeError::Short {
            kind,
            need,
            got: bytes.len(),
        });
    }
    Ok(())
}

fn read<T: Plain>(kind: u32, bytes: &[u8]) -> Result<T, DecodeError> {
    at_least(kind, bytes, size_of::<T>())?;
    // SAFETY: length checked above; `Plain` types accept any bit pattern; unaligned read.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// An exec record: variable-length, at least its head; the part of `data` not sent reads as zeros.
fn read_exec(kind: u32, bytes: &[u8]) -> Result<Box<ExecEvent>, DecodeError> {
    at_least(kind, bytes, EXEC_HEAD_LEN)?;
    // Built in place on the heap: no 840-byte value on the stack to copy there.
    let mut e = Box::<ExecEvent>::new_zeroed();
    let n = bytes.len().min(size_of::<ExecEvent>());
    // SAFETY: all-zero is a valid `ExecEvent` (`Plain`); at most its size is copied over it.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), e.as_mut_ptr().cast::<u8>(), n);
        Ok(e.assume_init())
    }
}

/// [`read`] into a box, for the large kinds.
fn read_boxed<T: Plain>(kind: u32, bytes: &[u8]) -> Result<Box<T>, DecodeError> {
    let need = size_of::<T>();
    at_least(kind, bytes, need)?;
    let mut e = Box::<T>::new_uninit();
    // SAFETY: length checked above; `Plain` types accept any bit pattern; every byte is written.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), e.as_mut_ptr().cast::<u8>(), need);
        Ok(e.assume_init())
    }
}

/// Decode one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header: Header = read(0, bytes)?;
    if header.version != ABI_VERSION {
        return Err(DecodeError::Version {
            got: header.version,
        });
    }
    let k = header.kind;
    let kind = EventKind::from_u32(k).ok_or(DecodeError::UnknownKind { kind: k })?;
    Ok(match kind {
        EventKind::Exec => Record::Exec(read_exec(k, bytes)?),
        EventKind::Exit => Record::Exit(read(k, bytes)?),
        EventKind::Fork => Record::Fork(read(k, bytes)?),
        EventKind::SignalGenerate => Record::SignalGenerate(read(k, bytes)?),
        EventKind::SignalDeliver => Record::SignalDeliver(read(k, bytes)?),
        EventKind::Setns => Record::Setns(read(k, bytes)?),
        EventKind::Unshare => Record::Unshare(read(k, bytes)?),
        EventKind::CgroupMkdir => Record::CgroupMkdir(read_boxed(k, bytes)?),
        EventKind::CgroupRmdir => Record::CgroupRmdir(read_boxed(k, bytes)?),
        EventKind::CgroupAttach => Record::CgroupAttach(read_boxed(k, bytes)?),
        EventKind::OomVictim => Record::OomVictim(read_boxed(k, bytes)?),
        EventKind::SockState => Record::SockState(read(k, bytes)?),
        EventKind::TcpReset => Record::TcpReset(read(k, bytes)?),
        EventKind::KubeletConn => Record::KubeletConn(read(k, bytes)?),
    })
}

/// The bytes an exec record is sent with (its head, argv and filename), as the probe sends them.
pub fn exec_bytes(e: &ExecEvent) -> &[u8] {
    let used = EXEC_HEAD_LEN + e.argv().len() + e.filename().len();
    &as_bytes(e)[..used]
}

/// Bytes of a record (for tests and `podlife record` round trips).
pub fn as_bytes<T: Plain>(value: &T) -> &[u8] {
    // SAFETY: `Plain` types are plain integers with explicit padding fields.
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The text before the first NUL of a fixed-size kernel string, lossily as UTF-8 is left to the
/// caller; this only trims.
pub fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

impl Record {
    pub fn header(&self) -> &Header {
        match self {
            Record::Exec(e) => &e.header,
            Record::Exit(e) => &e.header,
            Record::Fork(e) => &e.header,
            Record::SignalGenerate(e) | Record::SignalDeliver(e) => &e.header,
            Record::Setns(e) | Record::Unshare(e) => &e.header,
            Record::CgroupMkdir(e) | Record::CgroupRmdir(e) | Record::CgroupAttach(e) => &e.header,
            Record::OomVictim(e) => &e.header,
            Record::SockState(e) => &e.header,
            Record::TcpReset(e) => &e.header,
            Record::KubeletConn(e) => &e.header,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EventKind) -> Header {
        Header {
            kind: kind as u32,
            version: ABI_VERSION,
            ts_ns: 123_456_789,
            tgid: 42,
            tid: 43,
            cgroup_id: 9999,
            comm: *b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    #[test]
    fn exec_round_trip() {
        let mut e = ExecEvent {
            header: header(EventKind::Exec),
            old_tid: 43,
            flags: EXEC_ARGV_TRUNCATED,
            argc: 2,
            argv_len: 8,
            filename_len: 8,
            _pad: 0,
            data: [0; ARGV_LEN + PATH_LEN],
        };
        e.data[..16].copy_from_slice(b"sh\0-c\0x\0/bin/sh\0");
        // Sent with only the bytes used; the full struct decodes the same.
        let sent = exec_bytes(&e);
        assert_eq!(sent.len(), EXEC_HEAD_LEN + 16);
        assert_eq!(decode(sent), Ok(Record::Exec(Box::new(e))));
        assert_eq!(decode(as_bytes(&e)), Ok(Record::Exec(Box::new(e))));
        assert_eq!(e.argv(), b"sh\0-c\0x\0");
        assert_eq!(e.filename(), b"/bin/sh\0");
        assert!(matches!(
            decode(&sent[..EXEC_HEAD_LEN - 1]),
            Err(DecodeError::Short { need, .. }) if need == EXEC_HEAD_LEN
        ));
    }

    #[test]
    fn exec_lengths_out_of_range_stay_bounded() {
        let mut e = ExecEvent {
            header: header(EventKind::Exec),
            old_tid: 43,
            flags: 0,
            argc: 1,
            argv_len: u32::MAX,
            filename_len: u32::MAX,
            _pad: 0,
            data: [b'a'; ARGV_LEN + PATH_LEN],
        };
        assert_eq!(e.argv().len(), ARGV_LEN);
        assert_eq!(e.filename().len(), PATH_LEN);
        e.argv_len = 3;
        assert_eq!(e.filename().len(), PATH_LEN);
    }

    #[test]
    fn every_kind_round_trips() {
        let exit = ExitEvent {
            header: header(EventKind::Exit),
            exit_code: 0x300,
            exit_code_valid: 1,
        };
        assert_eq!(decode(as_bytes(&exit)), Ok(Record::Exit(exit)));
        let fork = ForkEvent {
            header: header(EventKind::Fork),
            child_pid: 7,
            _pad: 0,
            clone_flags: 0x11,
        };
        assert_eq!(decode(as_bytes(&fork)), Ok(Record::Fork(fork)));
        // Every field distinct and non-zero, so a field read from the wrong offset, a payload
        // left out or one variant taken for another gives a different record.
        let mut target_comm = [0; COMM_LEN];
        target_comm[..5].copy_from_slice(b"pause");
        let signal = |kind| SignalEvent {
            header: header(kind),
            sig: 15,
            errno: -3,
            code: 0x80,
            target_pid: 9,
            group: 1,
            result: 2,
            sa_handler: 0x7f00_dead_beef,
            sa_flags: 0x0400_0000,
            target_comm,
        };
        let s = signal(EventKind::SignalGenerate);
        assert_eq!(decode(as_bytes(&s)), Ok(Record::SignalGenerate(s)));
        let s = signal(EventKind::SignalDeliver);
        assert_eq!(decode(as_bytes(&s)), Ok(Record::SignalDeliver(s)));
        let ns = |kind| NsEvent {
            header: header(kind),
            flags: 0x0800_0000,
            fd: 3,
            ret: -22,
        };
        let n = ns(EventKind::Setns);
        assert_eq!(decode(as_bytes(&n)), Ok(Record::Setns(n)));
        let n = ns(EventKind::Unshare);
        assert_eq!(decode(as_bytes(&n)), Ok(Record::Unshare(n)));
        let mut path = [0; PATH_LEN];
        let p = b"/kubepods/burstable/pod8f3c2a1e";
        path[..p.len()].copy_from_slice(p);
        path[PATH_LEN - 1] = b'!'; // the last byte is carried too
        let cgroup = |kind| CgroupEvent {
            header: header(kind),
            root: 4,
            level: 3,
            id: 77,
            pid: 1234,
            path_len: p.len() as u32,
            path,
        };
        let c = cgroup(EventKind::CgroupMkdir);
        assert_eq!(decode(as_bytes(&c)), Ok(Record::CgroupMkdir(Box::new(c))));
        let c = cgroup(EventKind::CgroupRmdir);
        assert_eq!(decode(as_bytes(&c)), Ok(Record::CgroupRmdir(Box::new(c))));
        let c = cgroup(EventKind::CgroupAttach);
        assert_eq!(decode(as_bytes(&c)), Ok(Record::CgroupAttach(Box::new(c))));
        let o = OomEvent {
            header: header(EventKind::OomVictim),
            pid: 5,
            uid: 0,
            total_vm_kb: 1,
            anon_rss_kb: 2,
            file_rss_kb: 3,
            shmem_rss_kb: 4,
            pgtables_kb: 5,
            oom_score_adj: -998,
            present: OOM_HAS_ANON_RSS,
            victim_comm: target_comm,
        };
        assert_eq!(decode(as_bytes(&o)), Ok(Record::OomVictim(Box::new(o))));
        let mut saddr = [0; 16];
        saddr[..4].copy_from_slice(&[10, 88, 0, 7]);
        let mut daddr = [0; 16];
        daddr[15] = 1;
        let s = SockEvent {
            header: header(EventKind::SockState),
            skaddr: 0xffff_8880_1234_5678,
            oldstate: TCP_CLOSE,
            newstate: TCP_LISTEN,
            sport: 8080,
            dport: 443,
            family: AF_INET6,
            protocol: IPPROTO_TCP,
            saddr,
            daddr,
        };
        assert_eq!(decode(as_bytes(&s)), Ok(Record::SockState(s)));
        let r = ResetEvent {
            header: header(EventKind::TcpReset),
            family: AF_INET,
            sport: 8080,
            dport: 40_000,
            _pad: 0,
            reason: RESET_NO_SOCKET,
            saddr: daddr,
            daddr: saddr,
        };
        assert_eq!(decode(as_bytes(&r)), Ok(Record::TcpReset(r)));
        let k = KubeletConnEvent {
            header: header(EventKind::KubeletConn),
            skaddr: 0xffff_8880_8765_4321,
            start_ns: 11,
            established_ns: 12,
            kubelet_tgid: 900,
            outcome: CONN_RESET,
            family: AF_INET,
            dport: 8080,
            sport: 51_000,
            _pad: 0,
            daddr: saddr,
        };
        assert_eq!(decode(as_bytes(&k)), Ok(Record::KubeletConn(k)));
    }

    #[test]
    fn short_and_unknown_are_typed_errors() {
        let exit = ExitEvent {
            header: header(EventKind::Exit),
            exit_code: 0,
            exit_code_valid: 1,
        };
        let bytes = as_bytes(&exit);
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Short { kind: 2, .. })
        ));
        assert!(matches!(
            decode(&bytes[..3]),
            Err(DecodeError::Short { .. })
        ));
        let mut h = header(EventKind::Exit);
        h.kind = 999;
        assert_eq!(
            decode(as_bytes(&h)),
            Err(DecodeError::UnknownKind { kind: 999 })
        );
        h.version = 77;
        assert_eq!(decode(as_bytes(&h)), Err(DecodeError::Version { got: 77 }));
    }
}
