//! Ring-buffer records from arbitrary bytes: `decode` returns a record or a typed error, never
//! panics; a decoded record is exactly the bytes it came from; the conversion to the engine's
//! `KernelEvent` never panics and survives the JSON lines `podlife record` writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podlife::capture::convert::to_kernel_event;
use podlife_common::decode::{as_bytes, decode, DecodeError, Record};
use podlife_common::{Header, ABI_VERSION};
use podlife_core::{KernelEvent, KernelEventKind};

/// The bytes of the struct inside a record.
fn record_bytes(r: &Record) -> &[u8] {
    match r {
        Record::Exec(e) => as_bytes(&**e),
        Record::Exit(e) => as_bytes(e),
        Record::Fork(e) => as_bytes(e),
        Record::SignalGenerate(e) | Record::SignalDeliver(e) => as_bytes(e),
        Record::Setns(e) | Record::Unshare(e) => as_bytes(e),
        Record::CgroupMkdir(e) | Record::CgroupRmdir(e) | Record::CgroupAttach(e) => as_bytes(&**e),
        Record::OomVictim(e) => as_bytes(&**e),
        Record::SockState(e) => as_bytes(e),
        Record::TcpReset(e) => as_bytes(e),
        Record::KubeletConn(e) => as_bytes(e),
    }
}

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(r) => {
            let raw = record_bytes(&r);
            // The record is a copy of the prefix it was read from, byte for byte (explicit
            // padding); a short exec record (variable-length) reads as zeros past its end.
            let n = raw.len().min(data.len());
            assert_eq!(&raw[..n], &data[..n]);
            assert!(raw[n..].iter().all(|&b| b == 0));
            assert_eq!(r.header().version, ABI_VERSION);
            let ev = to_kernel_event(&r);
            assert_eq!(ev.ts_ns, r.header().ts_ns);
            if let KernelEventKind::Exec { argv, .. } = &ev.kind {
                let Record::Exec(e) = &r else {
                    panic!("exec event from {r:?}")
                };
                assert!(argv.len() <= e.argc as usize);
                assert!(e.argv().len() + e.filename().len() <= e.data.len());
            }
            let line = serde_json::to_string(&ev).expect("KernelEvent serializes");
            let back: KernelEvent = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{line} does not read back: {e}"));
            assert_eq!(back, ev, "{line}");
        }
        Err(DecodeError::Short { need, got, .. }) => {
            assert_eq!(got, data.len());
            assert!(need > got);
        }
        Err(DecodeError::Version { got }) => {
            assert!(data.len() >= std::mem::size_of::<Header>());
            assert_ne!(got, ABI_VERSION);
        }
        Err(DecodeError::UnknownKind { kind }) => {
            assert_eq!(kind.to_ne_bytes(), data[..4]);
        }
    }
});
