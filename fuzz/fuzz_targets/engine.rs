//! The correlation engine under arbitrary operation sequences: the recorded scenarios replayed
//! with events dropped, repeated, re-timed or changed, interleaved with invented events,
//! expiry, flushes, bootstrap findings, metadata, OOM hints, the kubelet's probe messages and
//! restores, on tight bounds.
//! Never a panic; every bound holds; every pod renders as a timeline (JSON and text).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use podlife_core::text::to_text;
use podlife_core::{
    BootstrapProcess, CgroupMode, ContainerMeta, Engine, EngineConfig, LifecycleEvent, PodMeta,
    WallClock,
};
use podlife_fuzz::events::Pools;
use podlife_fuzz::fixtures;

fn pools() -> &'static Pools {
    static P: OnceLock<Pools> = OnceLock::new();
    P.get_or_init(|| Pools::new(fixtures()))
}

fn config(u: &mut Unstructured) -> Result<EngineConfig> {
    let d = EngineConfig::default();
    Ok(EngineConfig {
        max_pods: u.int_in_range(1..=4)?,
        max_containers: u.int_in_range(1..=8)?,
        max_processes: u.int_in_range(1..=64)?,
        max_cgroups: u.int_in_range(1..=16)?,
        max_exec_sessions: u.int_in_range(1..=4)?,
        max_events_per_pod: u.int_in_range(1..=64)?,
        max_buffered_events: u.int_in_range(1..=64)?,
        reorder_window_ns: *u.choose(&[0, d.reorder_window_ns, 1_000_000_000])?,
        probe_recurrence: u.int_in_range(0..=3)?,
        cgroup_mode: *u.choose(&[CgroupMode::Auto, CgroupMode::V2, CgroupMode::V1])?,
        ..d
    })
}

/// Apply one operation; false when the input is used up.
fn step(
    u: &mut Unstructured,
    engine: &mut Engine,
    cursors: &mut [usize],
    out: &mut Vec<LifecycleEvent>,
) -> Result<bool> {
    let p = pools();
    let fx = fixtures();
    match u.int_in_range(0..=16)? {
        // Mostly the recorded scenarios, in order, so the rules see real sequences.
        0..=7 => {
            let f = u.choose_index(fx.len())?;
            let Some(e) = fx[f].get(cursors[f]) else {
                return Ok(true);
            };
            cursors[f] += 1;
            let mut e = e.clone();
            match u.int_in_range(0..=9)? {
                0 => return Ok(true), // lost
                1 => {
                    out.extend(engine.apply(&e));
                }
                2 => e.ts_ns = p.ts(u)?,
                3 => e.tgid = p.pid(u)?,
                4 => e.cgroup_id = p.cgroup_id(u)?,
                _ => {}
            }
            out.extend(engine.apply(&e));
        }
        8 | 9 => out.extend(engine.apply(&p.event(u)?)),
        10 => out.extend(engine.expire(p.ts(u)?)),
        11 => out.extend(engine.flush()),
        12 => {
            let now = p.ts(u)?;
            out.extend(engine.bootstrap_cgroup(p.cgroup_id(u)?, &p.path(u)?, now));
            out.extend(engine.bootstrap_process(BootstrapProcess {
                tgid: p.pid(u)?,
                ppid: p.pid(u)?,
                cgroup_id: p.cgroup_id(u)?,
                comm: p.comm(u)?,
                argv: p.argv(u)?,
                start_ns: p.ts(u)?,
            }));
        }
        13 => {
            let uid = engine.pod_uids().first().cloned().unwrap_or_default();
            let id = podlife_core::cgroup_path::parse(&p.path(u)?)
                .and_then(|c| c.container_id)
                .unwrap_or_default();
            let name = |u: &mut Unstructured| -> Result<Option<String>> {
                Ok(if u.arbitrary()? {
                    Some(u.arbitrary()?)
                } else {
                    None
                })
            };
            engine.set_container_metadata(
                &id,
                ContainerMeta {
                    pod_uid: name(u)?,
                    pod_name: name(u)?,
                    namespace: name(u)?,
                    container_name: name(u)?,
                    grace_period_s: u.arbitrary()?,
                    attempt: u.arbitrary()?,
                    ..Default::default()
                },
            );
            engine.set_pod_metadata(
                &uid,
                PodMeta {
                    name: name(u)?,
                    namespace: name(u)?,
                    grace_period_s: u.arbitrary()?,
                    exec_probes: vec![(String::from("app"), "liveness".into(), p.argv(u)?)],
                    net_probes: vec![podlife_core::NetProbe {
                        container: "app".into(),
                        probe_type: "readiness".into(),
                        kind: *u.choose(&[
                            podlife_core::ProbeKind::Tcp,
                            podlife_core::ProbeKind::Http,
                            podlife_core::ProbeKind::Grpc,
                        ])?,
                        port: u.arbitrary()?,
                    }],
                    owner: name(u)?.map(|n| podlife_core::Owner {
                        kind: "ReplicaSet".into(),
                        name: n,
                    }),
                    container_kinds: vec![(
                        name(u)?.unwrap_or_default(),
                        *u.choose(&[
                            podlife_core::ContainerKind::Init,
                            podlife_core::ContainerKind::Sidecar,
                            podlife_core::ContainerKind::App,
                        ])?,
                    )],
                },
            );
        }
        14 => {
            use podlife_core::LimitScope;
            let scopes = [LimitScope::Container, LimitScope::Pod, LimitScope::Node];
            let pid = p.pid(u)?;
            engine.set_oom_scope_hint(pid, *u.choose(&scopes)?);
            // Group kills: the same pid's memory cgroup as the agent reads it.
            engine.set_oom_memcg_hint(
                pid,
                podlife_core::OomMemcg {
                    group_kill: u.arbitrary()?,
                    usage_bytes: u.arbitrary()?,
                    limit_bytes: u.arbitrary()?,
                },
            )
        }
        15 => {
            // The kubelet's Unhealthy Events of a pod, as the agent reads them from the API.
            let uid = match engine.pod_uids() {
                uids if !uids.is_empty() => uids[u.choose_index(uids.len())?].clone(),
                _ => u.arbitrary()?,
            };
            let n = u.int_in_range(0..=20)?;
            let mut found = Vec::with_capacity(n);
            for _ in 0..n {
                found.push(podlife_core::UnhealthyEvent {
                    ts_ns: p.ts(u)?,
                    field_path: if u.arbitrary()? {
                        Some("spec.containers{app}".into())
                    } else {
                        u.arbitrary()?
                    },
                    message: u.arbitrary()?,
                    count: u.arbitrary()?,
                });
            }
            out.extend(engine.probe_unhealthy(&uid, &found));
        }
        _ => {
            // What an earlier run derived, restored as after an agent restart.
            let keep = u.int_in_range(0..=out.len())?;
            engine.restore(out[..keep].to_vec());
            // The agent's gap is told by the agent from its store (wall times), not derived.
            out.extend(engine.agent_started(p.ts(u)?));
        }
    }
    Ok(!u.is_empty())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(cfg) = config(&mut u) else {
        return;
    };
    let limits = cfg.clone();
    let mut engine = Engine::new(cfg);
    let mut cursors = vec![0; fixtures().len()];
    let mut out = Vec::new();
    for _ in 0..2_000 {
        match step(&mut u, &mut engine, &mut cursors, &mut out) {
            Ok(true) => {}
            _ => break,
        }
    }
    out.extend(engine.flush());
    out.extend(engine.expire(u64::MAX));

    for e in &out {
        if let podlife_core::LifecycleKind::ProbeUnhealthy { message, .. } = &e.kind {
            assert!(message.len() <= podlife_core::probe_message::MAX_MESSAGE_BYTES);
        }
    }
    let s = engine.stats();
    assert!(s.pods <= limits.max_pods, "{} pods", s.pods);
    assert!(
        s.containers <= limits.max_containers,
        "{} containers",
        s.containers
    );
    assert!(
        s.processes <= limits.max_processes,
        "{} processes",
        s.processes
    );
    assert!(s.cgroups <= limits.max_cgroups, "{} cgroups", s.cgroups);
    assert!(
        s.exec_sessions <= limits.max_exec_sessions,
        "{} sessions",
        s.exec_sessions
    );
    assert!(
        s.buffered_events <= limits.max_buffered_events,
        "{} buffered",
        s.buffered_events
    );
    for e in &out {
        serde_json::to_string(e).expect("lifecycle events serialize");
    }
    for uid in engine.pod_uids() {
        let t = engine
            .timeline(&uid, WallClock::new(0))
            .unwrap_or_else(|| panic!("listed pod {uid} has no timeline"));
        assert!(
            t.events.len() <= limits.max_events_per_pod,
            "{}",
            t.events.len()
        );
        serde_json::to_string(&t).expect("timeline serializes");
        to_text(&t);
    }
});
