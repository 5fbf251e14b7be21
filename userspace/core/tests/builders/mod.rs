//! Kernel event builders and a small pod for the rule tests (rules.rs, shutdown.rs): the
//! sequences the kernel capture sends, written by hand.
#![allow(dead_code)]

use podlife_core::kernel_event::clone::{CLONE_NEWIPC, CLONE_NEWUTS};
use podlife_core::*;

pub const UID: &str = "8f3c2a1e-1111-4a4a-9b9b-000000000001";
pub const POD: &str = "/kubepods/burstable/pod8f3c2a1e-1111-4a4a-9b9b-000000000001";
pub const SB: &str = "a7b3ac8946ae1bb3f99381926bdc71cd9f8d20799a08d7b18ee3e76b81b6a7aa";
pub const APP: &str = "65c022584ce537638b6196ff83bd510e4efe8745955507f332187254d09e7e10";
pub const MS: u64 = 1_000_000;

pub fn ev(ts: u64, tgid: u32, cg: u64, comm: &str, kind: KernelEventKind) -> KernelEvent {
    KernelEvent {
        ts_ns: ts,
        tgid,
        tid: tgid,
        cgroup_id: cg,
        comm: comm.into(),
        kind,
    }
}
pub fn mkdir(ts: u64, root: i32, id: u64, path: &str) -> KernelEvent {
    let kind = KernelEventKind::CgroupMkdir {
        root,
        id,
        level: 4,
        path: path.into(),
    };
    ev(ts, 50, 1, "runc", kind)
}
pub fn attach(ts: u64, root: i32, id: u64, path: &str, pid: u32) -> KernelEvent {
    let kind = KernelEventKind::CgroupAttach {
        root,
        id,
        level: 4,
        path: path.into(),
        pid,
    };
    ev(ts, 50, 1, "runc", kind)
}
pub fn exec(ts: u64, pid: u32, cg: u64, file: &str, argv: &[&str]) -> KernelEvent {
    let kind = KernelEventKind::Exec {
        filename: file.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        argv_truncated: false,
        old_tid: pid,
    };
    ev(ts, pid, cg, argv.first().copied().unwrap_or("x"), kind)
}
pub fn exit(ts: u64, pid: u32, cg: u64, raw: u32) -> KernelEvent {
    let kind = KernelEventKind::Exit {
        status: Some(ExitStatus::from_wait_status(raw)),
    };
    ev(ts, pid, cg, "x", kind)
}
pub fn fork(ts: u64, parent: u32, cg: u64, child: u32) -> KernelEvent {
    ev(
        ts,
        parent,
        cg,
        "p",
        KernelEventKind::Fork {
            child_tgid: child,
            clone_flags: 0,
        },
    )
}
pub fn signal(
    ts: u64,
    from: u32,
    cg: u64,
    comm: &str,
    to: u32,
    sig: i32,
    code: i32,
) -> KernelEvent {
    let kind = KernelEventKind::SignalGenerate {
        sig,
        target_pid: to,
        target_comm: "t".into(),
        code,
        group: true,
        result: SignalResult::Delivered,
    };
    ev(ts, from, cg, comm, kind)
}
pub fn ns(ts: u64, pid: u32, cg: u64, setns: bool, flags: u64) -> KernelEvent {
    let kind = if setns {
        KernelEventKind::Setns {
            nstype: flags,
            fd: 3,
            ret: 0,
        }
    } else {
        KernelEventKind::Unshare { flags }
    };
    ev(ts, pid, cg, "runc:[1:CHILD]", kind)
}

/// A pod with a running sandbox (cg 20, pause 100) and app (cg 21, sh 200).
pub fn pod() -> Vec<KernelEvent> {
    vec![
        mkdir(MS, 0, 10, POD),
        mkdir(2 * MS, 0, 20, &format!("{POD}/{SB}")),
        ns(3 * MS, 99, 20, false, CLONE_NEWIPC | CLONE_NEWUTS),
        exec(4 * MS, 100, 20, "/pause", &["/pause"]),
        mkdir(10 * MS, 0, 21, &format!("{POD}/{APP}")),
        ns(11 * MS, 199, 21, true, CLONE_NEWIPC),
        exec(12 * MS, 200, 21, "/bin/sh", &["sh", "-c", "work"]),
    ]
}

pub fn run(events: &[KernelEvent]) -> (Engine, Vec<LifecycleEvent>) {
    let mut e = Engine::new(EngineConfig::default());
    let mut out: Vec<_> = events.iter().flat_map(|k| e.apply(k)).collect();
    out.extend(e.flush());
    (e, out)
}

pub fn names(out: &[LifecycleEvent]) -> Vec<&'static str> {
    out.iter().map(|e| e.kind.name()).collect()
}

pub fn find<'a>(out: &'a [LifecycleEvent], name: &str) -> &'a LifecycleEvent {
    out.iter()
        .find(|e| e.kind.name() == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", names(out)))
}

pub fn json(e: &LifecycleEvent, k: &str) -> serde_json::Value {
    serde_json::to_value(e).unwrap()[k].clone()
}
