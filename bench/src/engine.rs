//! Engine replay throughput: a synthetic but realistic stream (pods, containers, a process
//! storm inside them) through `Engine::apply`, single-threaded.

use std::time::Instant;

use anyhow::Result;
use podlife_core::{Engine, EngineConfig, ExitStatus, KernelEvent, KernelEventKind};
use serde_json::{json, Value};

fn ev(ts: u64, tgid: u32, cg: u64, comm: &str, kind: KernelEventKind) -> KernelEvent {
    KernelEvent {
        ts_ns: ts,
        tgid,
        tid: tgid,
        cgroup_id: cg,
        comm: comm.into(),
        kind,
    }
}

/// Events of `pods` pods, each with one container whose init forks `children` short children.
pub fn stream(pods: u32, children: u32) -> Vec<KernelEvent> {
    let mut out = Vec::new();
    let mut ts = 1_000_000u64;
    let mut pid = 1000u32;
    for p in 0..pods {
        let uid = format!("{p:08x}-0000-4000-8000-000000000000");
        let pod_cg = 10_000 + u64::from(p) * 2;
        let ctr_cg = pod_cg + 1;
        let cid = format!("{:064x}", u64::from(p) + 1);
        let pod_path = format!("/kubepods/burstable/pod{uid}");
        ts += 1000;
        out.push(ev(
            ts,
            1,
            1,
            "kubelet",
            KernelEventKind::CgroupMkdir {
                root: 0,
                id: pod_cg,
                level: 3,
                path: pod_path.clone(),
            },
        ));
        out.push(ev(
            ts,
            2,
            1,
            "runc",
            KernelEventKind::CgroupMkdir {
                root: 0,
                id: ctr_cg,
                level: 4,
                path: format!("{pod_path}/{cid}"),
            },
        ));
        pid += 1;
        let init = pid;
        out.push(ev(
            ts,
            init,
            ctr_cg,
            "sh",
            KernelEventKind::Exec {
                filename: "/bin/sh".into(),
                argv: vec!["sh".into(), "-c".into(), "work".into()],
                argv_truncated: false,
                old_tid: init,
            },
        ));
        for _ in 0..children {
            pid += 1;
            ts += 1000;
            out.push(ev(
                ts,
                init,
                ctr_cg,
                "sh",
                KernelEventKind::Fork {
                    child_tgid: pid,
                    clone_flags: 0x11,
                },
            ));
            out.push(ev(
                ts + 10,
                pid,
                ctr_cg,
                "true",
                KernelEventKind::Exec {
                    filename: "/bin/true".into(),
                    argv: vec!["true".into()],
                    argv_truncated: false,
                    old_tid: pid,
                },
            ));
            out.push(ev(
                ts + 20,
                pid,
                ctr_cg,
                "true",
                KernelEventKind::Exit {
                    status: Some(ExitStatus::from_wait_status(0)),
                },
            ));
        }
        out.push(ev(
            ts + 30,
            init,
            ctr_cg,
            "sh",
            KernelEventKind::Exit {
                status: Some(ExitStatus::from_wait_status(0)),
            },
        ));
    }
    out
}

pub fn replay() -> Result<Value> {
    let events = stream(1000, 300);
    let mut best = 0.0f64;
    let mut derived = 0usize;
    // BENCH_ENGINE_ROUNDS=1 under `valgrind --tool=callgrind` counts instructions per event.
    let rounds: usize = std::env::var("BENCH_ENGINE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    for _ in 0..rounds.max(1) {
        // As the agent runs it: its served history keeps the timelines, the engine none.
        let mut engine = Engine::new(EngineConfig {
            max_events_per_pod: 0,
            ..EngineConfig::default()
        });
        // The agent hands the engine events it owns; the copy is not the engine's work.
        let owned = events.clone();
        let t = Instant::now();
        derived = 0;
        for e in owned {
            derived += engine.apply_owned(e).len();
        }
        let rate = events.len() as f64 / t.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    Ok(
        json!({"events": events.len(), "derived_events": derived, "rounds": rounds, "events_per_s_best": best.round(), "target": ">= 1e6 events/s per core"}),
    )
}
