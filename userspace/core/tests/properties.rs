//! No order or interleaving of kernel events panics the engine or lets its state grow past its
//! bounds: arbitrary streams over a small alphabet of pids, cgroups and paths.

use podlife_core::*;
use proptest::prelude::*;

const UIDS: [&str; 3] = [
    "8f3c2a1e-1111-4a4a-9b9b-000000000001",
    "8f3c2a1e-1111-4a4a-9b9b-000000000002",
    "not-a-uid",
];

fn path(i: u8) -> String {
    let uid = UIDS[(i % 3) as usize];
    match i % 4 {
        0 => format!("/kubepods/burstable/pod{uid}"),
        1 => format!("/kubepods/burstable/pod{uid}/{:064x}", i / 4),
        2 => format!(
            "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{:064x}.scope",
            uid.replace('-', "_"),
            i / 4
        ),
        _ => "/system.slice/other".into(),
    }
}

fn kind() -> impl Strategy<Value = KernelEventKind> {
    let pid = 1u32..12;
    prop_oneof![
        (any::<u8>(), 1u64..10, prop::sample::select(vec![0, 0, 4])).prop_map(|(p, id, root)| {
            KernelEventKind::CgroupMkdir {
                root,
                id,
                level: 3,
                path: path(p),
            }
        }),
        (any::<u8>(), 1u64..10).prop_map(|(p, id)| KernelEventKind::CgroupRmdir {
            root: 0,
            id,
            level: 3,
            path: path(p)
        }),
        (any::<u8>(), 1u64..10, pid.clone()).prop_map(|(p, id, pid)| {
            KernelEventKind::CgroupAttach {
                root: 0,
                id,
                level: 4,
                path: path(p),
                pid,
            }
        }),
        (pid.clone(), any::<u64>()).prop_map(|(child_tgid, clone_flags)| KernelEventKind::Fork {
            child_tgid,
            clone_flags
        }),
        prop::sample::select(vec!["/pause", "/bin/sh", "/proc/self/exe", "/dev/fd/5"]).prop_map(
            |f| KernelEventKind::Exec {
                filename: f.into(),
                argv: vec![f.into(), "-c".into()],
                argv_truncated: false,
                old_tid: 0
            }
        ),
        any::<u32>().prop_map(|raw| KernelEventKind::Exit {
            status: Some(ExitStatus::from_wait_status(raw & 0xffff))
        }),
        (
            prop::sample::select(vec![9, 15, 11, 2, 0]),
            pid.clone(),
            prop::sample::select(vec![0, 0x80, -6]),
            0i32..5
        )
            .prop_map(|(sig, target_pid, code, r)| {
                KernelEventKind::SignalGenerate {
                    sig,
                    target_pid,
                    target_comm: "x".into(),
                    code,
                    group: true,
                    result: SignalResult::from_raw(r),
                }
            }),
        (any::<u64>(), -1i32..1).prop_map(|(nstype, ret)| KernelEventKind::Setns {
            nstype,
            fd: 3,
            ret
        }),
        any::<u64>().prop_map(|flags| KernelEventKind::Unshare { flags }),
        pid.prop_map(|pid| KernelEventKind::OomVictim {
            pid,
            info: Box::new(podlife_core::OomVictimInfo {
                victim_comm: None,
                total_vm_kb: Some(1),
                anon_rss_kb: None,
                file_rss_kb: None,
                shmem_rss_kb: None,
                pgtables_kb: None,
                oom_score_adj: None
            }),
        }),
    ]
}

fn event() -> impl Strategy<Value = KernelEvent> {
    (
        0u64..3_000_000_000,
        1u32..12,
        0u64..10,
        prop::sample::select(vec!["runc", "containerd-shim", "sh", "pause"]),
        kind(),
    )
        .prop_map(|(ts_ns, tgid, cgroup_id, comm, kind)| KernelEvent {
            ts_ns,
            tgid,
            tid: tgid,
            cgroup_id,
            comm: comm.into(),
            kind,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_stream_is_survived_within_bounds(events in prop::collection::vec(event(), 0..300)) {
        let cfg = EngineConfig {
            max_pods: 2, max_containers: 4, max_processes: 6, max_cgroups: 5,
            max_exec_sessions: 2, max_events_per_pod: 8, max_buffered_events: 16,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(cfg);
        let mut derived = Vec::new();
        for e in &events {
            derived.extend(engine.apply(e));
            let s = engine.stats();
            prop_assert!(s.buffered_events <= 16 && s.exec_sessions <= 2, "{s:?}");
        }
        derived.extend(engine.flush());
        for out in &derived {
            // Every derived event names a pod the parser accepted.
            prop_assert!(UIDS[..2].contains(&out.pod_uid.as_str()), "{out:?}");
        }
        for uid in engine.pod_uids() {
            prop_assert!(engine.pod_summary(&uid).is_some());
            let t = engine.timeline(&uid, WallClock::default()).unwrap();
            prop_assert!(t.events.len() <= 8);
            let _ = text::to_text(&t);
            let mut again = Engine::new(EngineConfig::default());
            again.restore(engine.timeline_events(&uid));
        }
        engine.expire(u64::MAX / 2);
        let s = engine.stats();
        prop_assert!(s.pods <= 2 && s.containers <= 4 && s.processes <= 6 && s.cgroups <= 5, "{s:?}");
    }
}
