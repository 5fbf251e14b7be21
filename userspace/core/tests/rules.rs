//! One table test per rule the reference traces do not show: out-of-order events, a node
//! without cgroup v2, who killed a container, crashes, child OOMs, bootstrap, bounds.

use podlife_core::kernel_event::clone::{CLONE_NEWIPC, CLONE_NEWNS};
use podlife_core::*;

mod builders;
use builders::*;

#[test]
fn pod_skeleton() {
    let (_, out) = run(&pod());
    assert_eq!(
        names(&out),
        [
            "PodAdmitted",
            "SandboxStarted",
            "ContainerCreated",
            "ContainerStarted"
        ]
    );
}

#[test]
fn killed_by_table() {
    // (signal events before the init's exit, raw exit status, reason, killed_by)
    let cases: Vec<(Vec<KernelEvent>, u32, &str, Option<&str>)> = vec![
        (vec![], 0x0, "Completed", None),
        (vec![], 0x100, "Error", None),
        (
            vec![signal(20 * MS, 300, 21, "kill", 200, 15, 0)],
            0xf,
            "Signaled",
            Some("process"),
        ),
        (
            vec![signal(20 * MS, 200, 21, "sh", 200, 6, -6)],
            0x86,
            "Signaled",
            Some("self"),
        ),
        (
            vec![signal(20 * MS, 100, 20, "pause", 200, 9, 0x80)],
            0x9,
            "Signaled",
            Some("kernel"),
        ),
        (
            vec![signal(20 * MS, 400, 1, "runc", 200, 9, 0)],
            0x9,
            "Signaled",
            Some("runtime_stop"),
        ),
        (
            vec![
                signal(20 * MS, 400, 1, "runc", 200, 15, 0),
                signal(2_020 * MS, 401, 1, "runc", 200, 9, 0),
            ],
            0x9,
            "Signaled",
            Some("grace_overrun"),
        ),
        (
            vec![signal(20 * MS, 400, 1, "runc", 200, 15, 0)],
            0x0,
            "Completed",
            Some("runtime_stop"),
        ),
    ];
    for (i, (signals, raw, reason, by)) in cases.into_iter().enumerate() {
        let mut events = pod();
        events.extend(signals);
        events.push(exit(3_000 * MS, 200, 21, raw));
        let (_, out) = run(&events);
        let e = find(&out, "ContainerExited");
        assert_eq!(json(e, "reason"), reason, "case {i}");
        assert_eq!(json(e, "killed_by").as_str(), by, "case {i}");
    }
}

#[test]
fn crashes_of_children_and_init() {
    let mut events = pod();
    events.push(fork(20 * MS, 200, 21, 201));
    events.push(exit(21 * MS, 201, 21, 0x8b)); // SIGSEGV, core
    events.push(exit(22 * MS, 200, 21, 0x6)); // SIGABRT
    let (_, out) = run(&events);
    let crashes: Vec<_> = out
        .iter()
        .filter(|e| e.kind.name() == "ProcessCrashed")
        .collect();
    assert_eq!(crashes.len(), 2);
    assert_eq!(json(crashes[0], "signal"), "SIGSEGV");
    assert_eq!(json(crashes[0], "core_dumped"), true);
    assert_eq!(json(crashes[0], "is_init"), false);
    assert_eq!(json(crashes[1], "is_init"), true);
}

#[test]
fn child_oom_is_silent_for_the_container() {
    let mut events = pod();
    events.push(fork(20 * MS, 200, 21, 202));
    events.push(signal(30 * MS, 202, 21, "hog", 202, 9, 0x80));
    events.push(oom_victim(30 * MS + 1, 202, 202));
    events.push(exit(31 * MS, 202, 21, 0x9));
    let (engine, out) = run(&events);
    let oom = find(&out, "OOMKill");
    assert_eq!(json(oom, "victim_is_init"), false);
    assert_eq!(json(oom, "limit_scope"), "unknown");
    assert_eq!(json(oom, "total_vm_bytes"), 100 * 1024);
    assert!(!names(&out).contains(&"ContainerExited"));
    assert_eq!(
        engine.pod(UID).unwrap().containers[1].state,
        ContainerState::Running
    );
}

fn oom_victim(ts: u64, context: u32, pid: u32) -> KernelEvent {
    ev(
        ts,
        context,
        21,
        "hog",
        KernelEventKind::OomVictim {
            pid,
            info: Box::new(podlife_core::OomVictimInfo {
                victim_comm: Some("hog".into()),
                total_vm_kb: Some(100),
                anon_rss_kb: Some(64),
                file_rss_kb: None,
                shmem_rss_kb: None,
                pgtables_kb: None,
                oom_score_adj: Some(1000),
            }),
        },
    )
}

/// cgroup v2 with memory.oom.group (the kubelet's default there since 1.28): one limit hit by
/// a child kills every process of the container, all from the allocating child's context —
/// the child (the chosen victim), then the init. Both are OOM kills, and the container ends
/// OOMKilled, not as a silent child kill (seen in the 6.12 VM, `cargo xtask vm-e2e`).
#[test]
fn oom_group_kill_takes_the_init_with_the_child() {
    let mut events = pod();
    events.push(fork(20 * MS, 200, 21, 202));
    events.push(signal(30 * MS, 202, 21, "hog", 202, 9, 0x80));
    events.push(oom_victim(30 * MS + 1, 202, 202));
    events.push(signal(30 * MS + 2, 202, 21, "hog", 200, 9, 0x80));
    events.push(oom_victim(30 * MS + 3, 202, 200));
    events.push(exit(31 * MS, 202, 21, 0x9));
    events.push(exit(31 * MS + 1, 200, 21, 0x9));
    let (_, out) = run(&events);
    let ooms: Vec<_> = out.iter().filter(|e| e.kind.name() == "OOMKill").collect();
    assert_eq!(ooms.len(), 2, "{:?}", names(&out));
    assert_eq!(json(ooms[0], "pid"), 202);
    assert_eq!(json(ooms[0], "victim_is_init"), false);
    assert_eq!(json(ooms[1], "pid"), 200);
    assert_eq!(json(ooms[1], "victim_is_init"), true);
    let exit = find(&out, "ContainerExited");
    assert_eq!(json(exit, "reason"), "OOMKilled");
    assert_eq!(json(exit, "killed_by"), "oom_killer");
}

#[test]
fn out_of_order_within_the_window_is_reordered() {
    // exit before its fork, OOM mark before the self-kill, attach before mkdir
    let mut events = pod();
    let cpath = format!("{POD}/{}", "b".repeat(64));
    events.push(attach(40 * MS + 10, 0, 30, &cpath, 500));
    events.push(mkdir(40 * MS, 0, 30, &cpath));
    events.push(exit(50 * MS + 10, 203, 21, 0x0));
    events.push(fork(50 * MS, 200, 21, 203));
    let (engine, out) = run(&events);
    assert_eq!(
        names(&out).iter().filter(|n| **n == "PodAdmitted").count(),
        1
    );
    assert_eq!(engine.pod(UID).unwrap().containers.len(), 3);
    // 100, 199, 200 and the attached 500; not the exited 203.
    assert_eq!(engine.stats().processes, 4, "{:?}", engine.stats());
}

#[test]
fn a_held_event_is_due_one_window_after_its_time_and_expire_releases_it_then() {
    let mut e = Engine::new(EngineConfig::default());
    assert_eq!(e.next_release_ns(), None);
    let mut out = Vec::new();
    for k in pod() {
        out.extend(e.apply(&k));
    }
    let window = EngineConfig::default().reorder_window_ns;
    let newest = pod().iter().map(|k| k.ts_ns).max().unwrap();
    let oldest_held = e.next_release_ns().expect("the newest events are held") - window;
    assert!(oldest_held <= newest && oldest_held + window > newest);
    // Not before it is due...
    out.extend(e.expire(oldest_held + window - 1));
    assert!(e.next_release_ns().is_some());
    // ...and everything once the newest is due: the pod's admission is out.
    out.extend(e.expire(newest + window));
    assert_eq!(e.next_release_ns(), None);
    assert_eq!(
        names(&out).iter().filter(|n| **n == "PodAdmitted").count(),
        1
    );
}

#[test]
fn late_fork_of_an_exited_pid_beyond_the_window_stays_dead() {
    let mut e = Engine::new(EngineConfig {
        reorder_window_ns: 0,
        ..EngineConfig::default()
    });
    for k in pod() {
        e.apply(&k);
    }
    let before = e.stats().processes;
    e.apply(&exit(50 * MS + 10, 203, 21, 0x0));
    e.apply(&fork(50 * MS, 200, 21, 203));
    assert_eq!(e.stats().processes, before);
}

#[test]
fn attach_places_processes_whose_cgroup_is_later_gone() {
    // pid→container resolves exits after the container cgroup was removed.
    let mut events = pod();
    events.push(ev(
        60 * MS,
        50,
        1,
        "runc",
        KernelEventKind::CgroupRmdir {
            root: 0,
            id: 21,
            level: 4,
            path: format!("{POD}/{APP}"),
        },
    ));
    events.push(exit(61 * MS, 200, 999, 0x0));
    let (_, out) = run(&events);
    assert_eq!(json(find(&out, "ContainerExited"), "reason"), "Completed");
}

#[test]
fn pure_v1_node_falls_back_on_v1_events_and_attach() {
    let cpath = format!("{POD}/{APP}");
    let events = vec![
        mkdir(MS, 4, 8000, POD),
        mkdir(2 * MS, 4, 8001, &cpath),
        attach(3 * MS, 4, 8001, &cpath, 300),
        fork(4 * MS, 300, 1, 301),
        ns(5 * MS, 301, 1, true, CLONE_NEWIPC),
        fork(6 * MS, 301, 1, 302),
        exec(2_000 * MS, 302, 1, "/bin/app", &["app"]),
        exit(3_000 * MS, 302, 1, 0x100),
    ];
    let (engine, out) = run(&events);
    assert_eq!(engine.stats().cgroup_mode, CgroupMode::V1);
    assert_eq!(
        names(&out),
        [
            "PodAdmitted",
            "ContainerCreated",
            "ContainerStarted",
            "ContainerExited"
        ]
    );
}

#[test]
fn hybrid_node_ignores_v1_duplicates() {
    let events = vec![mkdir(MS, 4, 8000, POD), mkdir(MS + 500, 0, 10, POD)];
    let (engine, out) = run(&events);
    assert_eq!(engine.stats().cgroup_mode, CgroupMode::V2);
    assert_eq!(names(&out), ["PodAdmitted"]);
    assert_eq!(out[0].ts_ns, MS + 500, "admitted at the v2 mkdir");
}

#[test]
fn exec_session_children_do_not_start_sessions() {
    let mut events = pod();
    events.extend([
        fork(20 * MS, 400, 1, 401),
        ns(21 * MS, 401, 1, true, CLONE_NEWIPC),
        ns(21 * MS + 1, 401, 1, true, CLONE_NEWNS),
        fork(22 * MS, 401, 1, 402),
        attach(23 * MS, 0, 21, &format!("{POD}/{APP}"), 402),
        exec(24 * MS, 402, 21, "/bin/sh", &["sh", "-c", "cat /x"]),
        fork(25 * MS, 402, 21, 403),
        exec(26 * MS, 403, 21, "/bin/cat", &["cat", "/x"]),
        exit(27 * MS, 403, 21, 0x0),
        exit(28 * MS, 402, 21, 0x0),
        exit(29 * MS, 401, 1, 0x0),
    ]);
    let (_, out) = run(&events);
    let n = names(&out);
    assert_eq!(
        n.iter().filter(|x| **x == "ExecStarted").count(),
        1,
        "{n:?}"
    );
    assert_eq!(
        n.iter().filter(|x| **x == "ExecFinished").count(),
        1,
        "{n:?}"
    );
    assert!(
        !n.contains(&"ContainerStarted")
            || n.iter().filter(|x| **x == "ContainerStarted").count() == 1
    );
}

#[test]
fn recurring_failing_command_becomes_a_probe() {
    let mut events = pod();
    for i in 0..3u32 {
        let t = (100 + u64::from(i) * 10_000) * MS;
        let p = 600 + i * 10;
        events.extend([
            ns(t, p, 1, true, CLONE_NEWNS),
            fork(t + 1, p, 1, p + 1),
            attach(t + 2, 0, 21, &format!("{POD}/{APP}"), p + 1),
            exec(t + 3, p + 1, 21, "/bin/check", &["check"]),
            exit(t + 4 * MS, p + 1, 21, 0x100),
        ]);
    }
    let (_, out) = run(&events);
    let probes: Vec<_> = out
        .iter()
        .filter(|e| e.kind.name() == "ProbeFailed")
        .collect();
    assert_eq!(probes.len(), 2, "the first run is not yet known to recur");
    assert_eq!(json(probes[1], "consecutive_failures"), 3);
}

/// Exec probe runs of `check` (exit codes in turn), 10 s apart; the spec names the command
/// when `spec`.
fn exec_probe_runs(codes: &[u32], spec: bool) -> (Engine, Vec<LifecycleEvent>) {
    let mut events = pod();
    for (i, code) in codes.iter().enumerate() {
        let t = (100 + i as u64 * 10_000) * MS;
        let p = 600 + i as u32 * 10;
        events.extend([
            ns(t, p, 1, true, CLONE_NEWNS),
            fork(t + 1, p, 1, p + 1),
            attach(t + 2, 0, 21, &format!("{POD}/{APP}"), p + 1),
            exec(t + 3, p + 1, 21, "/bin/check", &["check"]),
            exit(t + 4 * MS, p + 1, 21, code << 8),
        ]);
    }
    let mut e = Engine::new(EngineConfig::default());
    let mut out: Vec<_> = events[..2].iter().flat_map(|k| e.apply(k)).collect();
    if spec {
        e.set_container_metadata(
            APP,
            ContainerMeta {
                container_name: Some("app".into()),
                probes: vec![ExecProbe {
                    probe_type: "readiness".into(),
                    argv: vec!["check".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
    }
    out.extend(events[2..].iter().flat_map(|k| e.apply(k)));
    out.extend(e.flush());
    (e, out)
}

#[test]
fn exec_probe_successes_are_told_first_and_after_failures_only() {
    let (engine, out) = exec_probe_runs(&[0, 0, 0, 1, 1, 0, 0, 1, 0], true);
    let told: Vec<_> = out
        .iter()
        .filter(|e| matches!(e.kind.name(), "ProbeSucceeded" | "ProbeFailed"))
        .map(|e| {
            let v = serde_json::to_value(e).unwrap();
            (
                e.kind.name(),
                v["first"].clone(),
                v["after_failures"].clone(),
                v["consecutive_failures"].clone(),
            )
        })
        .collect();
    let n = serde_json::Value::Null;
    assert_eq!(
        told,
        [
            ("ProbeSucceeded", true.into(), 0.into(), n.clone()),
            ("ProbeFailed", n.clone(), n.clone(), 1.into()),
            ("ProbeFailed", n.clone(), n.clone(), 2.into()),
            ("ProbeSucceeded", false.into(), 2.into(), n.clone()),
            ("ProbeFailed", n.clone(), n.clone(), 1.into()),
            ("ProbeSucceeded", false.into(), 1.into(), n.clone()),
        ]
    );
    let ok = find(&out, "ProbeSucceeded");
    assert_eq!(json(ok, "probe_kind"), "exec");
    assert_eq!(json(ok, "probe"), "readiness");
    assert_eq!(json(ok, "port"), serde_json::Value::Null);
    assert_eq!(ok.container_id.as_deref(), Some(APP));
    // The first success is the container's first probe success in its summary.
    let p = engine.pod_summary(UID).unwrap();
    let c = p.containers.iter().find(|c| c.id == APP).unwrap();
    let s = c.time_to_first_probe_success_s.unwrap();
    assert!((s - 0.092).abs() < 0.002, "{s}");
}

#[test]
fn without_a_spec_the_first_success_is_told_once_the_command_recurs() {
    let (_, out) = exec_probe_runs(&[0, 0, 0], false);
    let ok: Vec<_> = out
        .iter()
        .filter(|e| e.kind.name() == "ProbeSucceeded")
        .collect();
    assert_eq!(ok.len(), 1, "{:?}", names(&out));
    assert_eq!(json(ok[0], "probe"), "exec_probe");
    assert_eq!(json(ok[0], "first"), true);
    // The second run: the first that recurs.
    assert_eq!(ok[0].ts_ns, (100 + 10_000) * MS + 4 * MS);
}

#[test]
fn crash_loop_back_off_is_recognised() {
    let mut events = pod();
    let mut t = 100 * MS;
    let mut pid = 700;
    for (i, backoff_s) in [0u64, 10, 20, 40].iter().enumerate() {
        t += backoff_s * 1_000 * MS;
        let id = format!("{:064x}", i + 1);
        let path = format!("{POD}/{id}");
        events.extend([
            mkdir(t, 0, 40 + i as u64, &path),
            ns(t + 1, pid, 40 + i as u64, true, CLONE_NEWIPC),
            exec(
                t + 2,
                pid + 1,
                40 + i as u64,
                "/bin/app",
                &["app", "--serve"],
            ),
        ]);
        t += 500 * MS;
        events.push(exit(t, pid + 1, 40 + i as u64, 0x100));
        pid += 10;
    }
    let (_, out) = run(&events);
    let r: Vec<_> = out
        .iter()
        .filter(|e| e.kind.name() == "ContainerRestarted")
        .collect();
    assert_eq!(r.len(), 3);
    assert_eq!(json(r[2], "attempt"), 3);
    assert_eq!(json(r[0], "crash_loop"), false);
    assert_eq!(json(r[2], "crash_loop"), true);
}

#[test]
fn bootstrap_marks_pre_existing_pods() {
    let mut e = Engine::new(EngineConfig::default());
    let mut out = e.bootstrap_cgroup(10, POD, 5);
    out.extend(e.bootstrap_cgroup(20, &format!("{POD}/{SB}"), 5));
    out.extend(e.bootstrap_cgroup(21, &format!("{POD}/{APP}"), 5));
    for (tgid, ppid, cg, comm) in [
        (100, 1, 20, "pause"),
        (200, 1, 21, "sh"),
        (201, 200, 21, "sleep"),
    ] {
        out.extend(e.bootstrap_process(BootstrapProcess {
            tgid,
            ppid,
            cgroup_id: cg,
            comm: comm.into(),
            argv: vec![comm.into()],
            start_ns: 1,
        }));
    }
    assert_eq!(
        names(&out),
        ["PodAdmitted", "SandboxStarted", "ContainerStarted"]
    );
    assert!(out.iter().all(|e| e.source == Source::Bootstrap));
    // The bootstrapped init's exit is still understood.
    let later = e.apply(&exit(10 * MS, 200, 21, 0x0));
    let later = [later, e.flush()].concat();
    assert_eq!(names(&later), ["ContainerExited"]);
}

#[test]
fn metadata_names_events_even_when_it_arrives_late() {
    let mut e = Engine::new(EngineConfig::default());
    e.set_container_metadata(
        SB,
        ContainerMeta {
            kind: Some(ContainerKind::Sandbox),
            ..Default::default()
        },
    );
    for k in pod() {
        e.apply(&k);
    }
    e.flush();
    e.set_container_metadata(
        APP,
        ContainerMeta {
            container_name: Some("app".into()),
            pod_name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
    );
    let t = e.timeline(UID, WallClock::default()).unwrap();
    assert_eq!(t.name.as_deref(), Some("web"));
    let started = t
        .events
        .iter()
        .find(|x| x.kind.name() == "ContainerStarted")
        .unwrap();
    assert_eq!(started.container.as_deref(), Some("app"));
}

#[test]
fn no_timeline_copy_when_the_caller_keeps_history() {
    let (kept, out) = run(&pod());
    let mut e = Engine::new(EngineConfig {
        max_events_per_pod: 0,
        ..EngineConfig::default()
    });
    let mut derived: Vec<_> = pod().iter().flat_map(|k| e.apply(k)).collect();
    derived.extend(e.flush());
    assert_eq!(derived, out, "derivation does not depend on the kept copy");
    let uid = out[0].pod_uid.clone();
    assert_eq!(kept.timeline_events(&uid).len(), out.len());
    assert!(e.timeline_events(&uid).is_empty());
    assert!(e.pod(&uid).is_some(), "the pod itself is still tracked");
}

#[test]
fn maps_stay_within_their_bounds() {
    let cfg = EngineConfig {
        max_pods: 3,
        max_containers: 4,
        max_processes: 10,
        max_cgroups: 6,
        max_events_per_pod: 5,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg);
    for i in 0..20u64 {
        let uid = format!("8f3c2a1e-1111-4a4a-9b9b-{i:012}");
        let pod = format!("/kubepods/pod{uid}");
        e.apply(&mkdir(i * 100 * MS, 0, 1000 + i * 10, &pod));
        for c in 0..3u64 {
            let id = format!("{:064x}", i * 10 + c);
            e.apply(&mkdir(
                i * 100 * MS + c + 1,
                0,
                1000 + i * 10 + c + 1,
                &format!("{pod}/{id}"),
            ));
            for p in 0..5u32 {
                let pid = (i * 100 + c * 10) as u32 + p;
                e.apply(&exec(
                    i * 100 * MS + 10,
                    pid,
                    1000 + i * 10 + c + 1,
                    "/bin/x",
                    &["x"],
                ));
            }
        }
    }
    e.flush();
    let s = e.stats();
    assert!(
        s.pods <= 3 && s.containers <= 4 && s.processes <= 10 && s.cgroups <= 6,
        "{s:?}"
    );
    assert!(s.evictions.pods > 0 && s.evictions.processes > 0 && s.evictions.containers > 0);
    assert!(e
        .pods()
        .iter()
        .all(|p| e.timeline_events(&p.uid).len() <= 5));
}

#[test]
fn removed_pods_expire_after_retention() {
    let mut events = pod();
    events.push(ev(
        100 * MS,
        50,
        1,
        "kubelet",
        KernelEventKind::CgroupRmdir {
            root: 0,
            id: 10,
            level: 3,
            path: POD.into(),
        },
    ));
    let (mut e, out) = run(&events);
    assert_eq!(names(&out).last(), Some(&"PodRemoved"));
    e.expire(100 * MS + 60 * 1_000 * MS);
    assert!(e.pod(UID).is_some(), "kept while retained");
    e.expire(100 * MS + 3_600 * 1_000 * MS);
    assert!(e.pod(UID).is_none());
    assert_eq!(e.stats().containers, 0);
}
