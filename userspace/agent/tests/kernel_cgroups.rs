//! Kernel suite, containment: cgroup mkdir/attach/rmdir of pod cgroups (and silence for the
//! others), namespace joins and creations, OOM kills in a memory-limited cgroup, and ring-buffer
//! losses counted. Root.

mod support;

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use podlife::capture::loader::LoadOptions;
use podlife_common::Counter;
use podlife_core::clone::*;
use podlife_core::KernelEventKind as K;
use support::*;

/// (root, level, path) of the cgroup event of `kind` ("mkdir", "rmdir", "attach") for `id`.
fn cgroup_event(seen: &Seen, kind: &str, id: u64) -> Option<(i32, i32, String, u32)> {
    seen.0.iter().find_map(|e| match (&e.kind, kind) {
        (
            K::CgroupMkdir {
                root,
                level,
                id: i,
                path,
            },
            "mkdir",
        )
        | (
            K::CgroupRmdir {
                root,
                level,
                id: i,
                path,
            },
            "rmdir",
        ) if *i == id => Some((*root, *level, path.clone(), 0)),
        (
            K::CgroupAttach {
                root,
                level,
                id: i,
                path,
                pid,
            },
            "attach",
        ) if *i == id => Some((*root, *level, path.clone(), *pid)),
        _ => None,
    })
}

#[test]
fn cgroup_mkdir_attach_and_rmdir_of_a_pod_cgroup() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let id = cg.id();
    let top = format!("/{}", cg.name());
    // A container-like child cgroup one level down.
    let sub = cg.v2.join("ctr");
    std::fs::create_dir(&sub).unwrap();
    let sub_id = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&sub).unwrap().ino()
    };
    let mut child = cg.spawn(&mut Command::new("/bin/true"));
    let pid = child.id();
    wait(&mut child);
    std::fs::remove_dir(&sub).unwrap();
    drop(cg);
    let seen = drain_until(&mut cap, "rmdir of the pod cgroup", &[], |s| {
        cgroup_event(s, "rmdir", id).is_some()
    });

    assert_eq!(
        cgroup_event(&seen, "mkdir", id),
        Some((0, 1, top.clone(), 0)),
        "mkdir: v2 hierarchy (0), level 1, path from the v2 root, id = inode"
    );
    assert_eq!(
        cgroup_event(&seen, "mkdir", sub_id),
        Some((0, 2, format!("{top}/ctr"), 0))
    );
    assert_eq!(
        cgroup_event(&seen, "attach", id),
        Some((0, 1, top.clone(), pid)),
        "attach of the spawned child"
    );
    assert_eq!(
        cgroup_event(&seen, "rmdir", sub_id),
        Some((0, 2, format!("{top}/ctr"), 0))
    );
    assert_eq!(cgroup_event(&seen, "rmdir", id), Some((0, 1, top, 0)));
    let mkdir = seen
        .0
        .iter()
        .find(|e| matches!(e.kind, K::CgroupMkdir { id: i, .. } if i == id))
        .unwrap();
    assert_eq!(
        mkdir.tgid,
        std::process::id(),
        "current is the mkdir caller"
    );
}

#[test]
fn cgroups_outside_pods_and_v1_hierarchies_are_not_reported() {
    let mut cap = capture();
    let host = TestCgroup::host();
    let host_id = host.id();
    let mut child = host.spawn(&mut Command::new("/bin/true"));
    wait(&mut child);
    // A kubepods-named cgroup with a v1 memory twin: only the v2 directory is reported.
    let pod = TestCgroup::pod();
    let pod_name = pod.name();
    let pod = if memory_v1_root().is_some() {
        pod.with_memory_limit(64 << 20)
    } else {
        pod
    };
    let pod_id = pod.id();
    drop(host);
    drop(pod);
    let seen = drain_until(&mut cap, "rmdir of the pod cgroup", &[], |s| {
        cgroup_event(s, "rmdir", pod_id).is_some()
    });
    let about_host: Vec<_> = seen
        .0
        .iter()
        .filter(|e| match &e.kind {
            K::CgroupMkdir { id, path, .. }
            | K::CgroupRmdir { id, path, .. }
            | K::CgroupAttach { id, path, .. } => *id == host_id || path.contains("-host-"),
            _ => false,
        })
        .collect();
    assert!(
        about_host.is_empty(),
        "a non-pod cgroup reported: {about_host:?}"
    );
    let other_roots: Vec<_> = seen
        .0
        .iter()
        .filter(|e| match &e.kind {
            K::CgroupMkdir { root, path, .. } | K::CgroupRmdir { root, path, .. } => {
                *root != 0 && path.contains(&pod_name)
            }
            _ => false,
        })
        .collect();
    assert!(
        other_roots.is_empty(),
        "a v1 hierarchy reported: {other_roots:?}"
    );
}

#[test]
fn setns_into_another_process_and_unshare() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let mut holder = cg.spawn(
        Command::new("unshare")
            .args(["--uts", "--ipc", "/bin/sleep", "30"])
            .stdout(Stdio::null()),
    );
    let h = holder.id();
    wait_comm(h, "sleep");
    let target = h.to_string();
    let mut joiner =
        cg.spawn(Command::new("nsenter").args(["-t", &target, "-u", "-i", "/bin/true"]));
    let j = joiner.id();
    assert!(wait(&mut joiner).success(), "nsenter");
    let seen = drain_until(&mut cap, "exit of nsenter", &[h, j], |s| s.has_exit(j));

    let unshared: Vec<u64> = seen
        .of(h)
        .into_iter()
        .filter_map(|e| match e.kind {
            K::Unshare { flags } => Some(flags),
            _ => None,
        })
        .collect();
    assert_eq!(
        unshared,
        [CLONE_NEWUTS | CLONE_NEWIPC],
        "unshare(2) flags of `unshare --uts --ipc`"
    );
    let joined: Vec<(u64, i32, i32)> = seen
        .of(j)
        .into_iter()
        .filter_map(|e| match e.kind {
            K::Setns { nstype, fd, ret } => Some((nstype, fd, ret)),
            _ => None,
        })
        .collect();
    assert_eq!(joined.len(), 2, "{joined:?}");
    for (nstype, fd, ret) in &joined {
        assert!(fd >= &0 && *ret == 0, "a successful join: {joined:?}");
        assert!([CLONE_NEWUTS, CLONE_NEWIPC].contains(nstype), "{joined:?}");
    }
    assert_ne!(joined[0].0, joined[1].0, "both namespaces: {joined:?}");
    let _ = holder.kill();
    wait(&mut holder);
}

#[test]
fn oom_kill_in_a_small_memory_cgroup() {
    let mut cap = capture();
    let cg = TestCgroup::pod().with_memory_limit(16 << 20);
    // busybox tail buffers a line that never ends: it grows until the OOM killer comes.
    let mut hog = cg.spawn(Command::new("busybox").args(["tail", "/dev/zero"]));
    let pid = hog.id();
    assert_eq!(wait(&mut hog).signal(), Some(9), "OOM-killed");
    let seen = drain_until(&mut cap, "OOM victim and exit", &[pid], |s| {
        s.has_exit(pid)
            && s.0
                .iter()
                .any(|e| matches!(e.kind, K::OomVictim { pid: p, .. } if p == pid))
    });
    let oom = seen
        .0
        .iter()
        .find_map(|e| match &e.kind {
            K::OomVictim { pid: p, info } if *p == pid => Some((
                info.anon_rss_kb,
                info.total_vm_kb,
                info.victim_comm,
                info.oom_score_adj,
            )),
            _ => None,
        })
        .unwrap();
    // oom:mark_victim carries the victim's memory since 6.8 (pid alone before, e.g. on 6.1):
    // present where the kernel has it, reported absent (never zero) where it does not.
    if tracepoint_has_field("oom", "mark_victim", "anon_rss") {
        let anon = oom.0.expect("anon_rss is in this kernel's mark_victim");
        assert!(
            anon > 4 << 10 && anon <= 16 << 10,
            "anon rss {anon} kB under a 16 MiB limit"
        );
        assert!(oom.1.is_some_and(|vm| vm >= anon), "total_vm {:?}", oom.1);
        assert_eq!(oom.2.as_deref(), Some("busybox"));
        assert_eq!(oom.3, Some(0));
    } else {
        assert_eq!(
            oom,
            (None, None, None, None),
            "mark_victim without memory fields: nothing but the pid"
        );
    }
    let exit = seen.exit_of(pid).expect("status");
    assert_eq!((exit.code, exit.signal), (None, Some(9)));
    let kill = seen.0.iter().find(|e| {
        matches!(e.kind, K::SignalGenerate { sig: 9, target_pid, code, .. } if target_pid == pid && code == 0x80)
    });
    assert!(
        kill.is_some(),
        "the kernel's SIGKILL (SI_KERNEL) to the victim:{}",
        seen.dump(&[pid])
    );
}

/// The OOM's trigger: oom:mark_victim runs in the context of the task whose charge failed
/// (the memcg OOM is handled in the allocating task, synchronously or at the end of its page
/// fault), so the record's header (current) names the allocator even when the kernel picks
/// another victim. Here the victim is made the best candidate by oom_score_adj.
#[test]
fn oom_trigger_is_the_allocating_task_not_the_victim() {
    let mut cap = capture();
    let cg = TestCgroup::pod().with_memory_limit(16 << 20);
    // The victim holds 6 MB (tail keeps the last 6 MB of its input until the input ends) and
    // scores 1000: the kernel's points for it (its pages plus adj × limit/1000) beat the
    // allocator's. Its input is a pipe this test fills with 6 MB and keeps open: the victim
    // then waits in read() and allocates nothing more, so the allocator alone can set off the
    // OOM (reading an endless /dev/zero, the victim itself sometimes did).
    let mut held = cg.spawn(
        Command::new("busybox")
            .args([
                "sh",
                "-c",
                "echo 1000 > /proc/self/oom_score_adj && exec busybox tail -c 6000000",
            ])
            .stdin(std::process::Stdio::piped()),
    );
    let victim = held.id();
    // Taken out of the Child: `wait` would close it, and tail would end at the EOF.
    let mut input = held.stdin.take().expect("the victim's stdin");
    std::io::Write::write_all(&mut input, &vec![0u8; 6_000_000]).expect("fill the victim");
    let rss_kb = || {
        let status = std::fs::read_to_string(format!("/proc/{victim}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    for _ in 0..500 {
        if rss_kb() >= 5 << 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        rss_kb() >= 5 << 10,
        "the victim never held 5 MB: {} kB",
        rss_kb()
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{victim}/oom_score_adj"))
            .unwrap()
            .trim(),
        "1000"
    );
    let mut hog = cg.spawn(Command::new("busybox").args(["tail", "/dev/zero"]));
    let allocator = hog.id();
    assert_eq!(
        wait(&mut held).signal(),
        Some(9),
        "the scored one is chosen"
    );
    assert_eq!(
        wait(&mut hog).signal(),
        Some(9),
        "then the allocator itself"
    );
    let seen = drain_until(&mut cap, "both OOM victims", &[victim, allocator], |s| {
        [victim, allocator].iter().all(|v| {
            s.0.iter()
                .any(|e| matches!(e.kind, K::OomVictim { pid, .. } if pid == *v))
        })
    });
    let marked = |v: u32| {
        seen.0
            .iter()
            .find(|e| matches!(e.kind, K::OomVictim { pid, .. } if pid == v))
            .unwrap()
    };
    let first = marked(victim);
    assert_eq!(
        (first.tgid, first.cgroup_id),
        (allocator, cg.id()),
        "the victim's kill runs in the allocator's context:{}",
        seen.dump(&[victim, allocator])
    );
    let second = marked(allocator);
    assert_eq!((second.tgid, second.cgroup_id), (allocator, cg.id()));
    drop(input);
}

#[test]
fn a_full_ring_buffer_counts_what_it_loses() {
    // 8 KiB (two pages, the smallest power-of-two multiple) and nobody reads it.
    let cap = capture_with(LoadOptions {
        ringbuf_bytes: 8192,
        ..Default::default()
    });
    let cg = TestCgroup::pod();
    assert_eq!(cap.counter(Counter::RingbufLost), 0);
    for _ in 0..40 {
        let mut c = cg.spawn(Command::new("/bin/sh").args(["-c", "/bin/true"]));
        wait(&mut c);
    }
    // Each round is ≥ 2 execs (≈ 850 B each), a fork and 2 exits: far more than 8 KiB.
    let lost = cap.counter(Counter::RingbufLost);
    assert!(
        lost > 40,
        "an unread 8 KiB ring buffer must overflow; lost {lost}"
    );
}

#[test]
fn drained_ring_buffer_loses_nothing() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let mut sh = cg.spawn(Command::new("/bin/sh").args([
        "-c",
        "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done",
    ]));
    let pid = sh.id();
    wait(&mut sh);
    let seen = drain_until(&mut cap, "200 forks and exits", &[pid], |s| s.has_exit(pid));
    let forks = seen
        .of(pid)
        .into_iter()
        .filter(|e| matches!(e.kind, K::Fork { .. }))
        .count();
    assert_eq!(forks, 200);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(cap.counter(Counter::RingbufLost), 0);
}
