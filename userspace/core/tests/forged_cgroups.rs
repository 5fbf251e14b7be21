//! A container that can write its own cgroup subtree (cgroup v2 delegation, a nested runtime)
//! builds a kubepods tree naming another pod below its cgroup: mkdir, attach, exec, rmdir
//! there must stay the tenant container's and never admit, touch or remove the named pod.

use podlife_core::*;

const TENANT: &str = "8f3c2a1e-1111-4a4a-9b9b-000000000001";
const VICTIM: &str = "0b7d8e6a-2c3f-4a5b-9c8d-7e6f5a4b3c2d";
const CID: &str = "65c022584ce537638b6196ff83bd510e4efe8745955507f332187254d09e7e10";
const VCID: &str = "a7b3c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0";

fn cg(ts: u64, kind: KernelEventKind) -> KernelEvent {
    KernelEvent {
        ts_ns: ts,
        tgid: 50,
        tid: 50,
        cgroup_id: 1,
        comm: "mkdir".into(),
        kind,
    }
}

fn run(pod: &str, container: &str, node_root: Option<&str>) -> Engine {
    let mut e = Engine::new(EngineConfig {
        reorder_window_ns: 0,
        ..Default::default()
    });
    e.set_node_root(node_root.map(str::to_string));
    let own = format!("{pod}/{container}");
    let forged_pod = format!("{own}/kubepods/besteffort/pod{VICTIM}");
    let forged = format!("{forged_pod}/{VCID}");
    let mkdir = |ts, id, path: &str| {
        cg(
            ts,
            KernelEventKind::CgroupMkdir {
                root: 0,
                id,
                level: 4,
                path: path.into(),
            },
        )
    };
    let rmdir = |ts, id, path: &str| {
        cg(
            ts,
            KernelEventKind::CgroupRmdir {
                root: 0,
                id,
                level: 4,
                path: path.into(),
            },
        )
    };
    let events = [
        mkdir(1, 10, pod),
        mkdir(2, 11, &own),
        mkdir(3, 12, &forged_pod),
        mkdir(4, 13, &forged),
        cg(
            5,
            KernelEventKind::CgroupAttach {
                root: 0,
                id: 13,
                level: 6,
                path: forged.clone(),
                pid: 77,
            },
        ),
        rmdir(6, 13, &forged),
        rmdir(7, 12, &forged_pod),
    ];
    for ev in &events {
        e.apply(ev);
    }
    e.flush();
    e
}

fn assert_only_the_tenant(e: &Engine, pod: &str) {
    assert_eq!(e.pod_uids(), vec![TENANT.to_string()]);
    let events = e.timeline_events(TENANT);
    assert!(
        events
            .iter()
            .all(|ev| !matches!(ev.kind, LifecycleKind::PodRemoved)),
        "{events:?}"
    );
    assert!(events
        .iter()
        .all(|ev| ev.container_id.as_deref().is_none_or(|c| c == CID)));
    // The process moved into the forged container is the tenant container's.
    assert_eq!(
        e.container_cgroup_of(77, 13),
        Some((format!("{pod}/{CID}"), pod.to_string()))
    );
}

#[test]
fn forged_pod_below_a_cgroupfs_container_stays_the_containers() {
    let pod = format!("/kubepods/burstable/pod{TENANT}");
    assert_only_the_tenant(&run(&pod, CID, None), &pod);
}

#[test]
fn forged_pod_below_a_systemd_container_stays_the_containers() {
    let pod = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        TENANT.replace('-', "_")
    );
    let scope = format!("cri-containerd-{CID}.scope");
    let e = run(&pod, &scope, None);
    // The scope the kernel named, where the agent reads the container's memory counters.
    assert_eq!(
        e.container_cgroup_of(77, 13),
        Some((format!("{pod}/{scope}"), pod.clone()))
    );
    assert_eq!(e.pod_uids(), vec![TENANT.to_string()]);
    assert!(e
        .timeline_events(TENANT)
        .iter()
        .all(|ev| !matches!(ev.kind, LifecycleKind::PodRemoved)));
}

#[test]
fn anchored_at_a_known_node_root() {
    let pod = format!("/kubepods/burstable/pod{TENANT}");
    assert_only_the_tenant(&run(&pod, CID, Some("/kubepods")), &pod);
}
