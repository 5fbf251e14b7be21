//! The kernel suite: every event kind provoked by a real process and decoded from the real
//! programs' ring buffer. Root. Tests see each other's programs' events, so every assertion
//! filters by the pids it made.

mod support;

use std::process::Command;
use std::time::Duration;

use podlife::kernel::loader::LoadOptions;
use podlife_common::Counter;
use podlife_core::clone::*;
use podlife_core::{KernelEvent, KernelEventKind as K, SignalHandler, SignalResult};
use support::*;

fn of(events: &[KernelEvent], pid: u32) -> Vec<&KernelEvent> {
    events.iter().filter(|e| e.tgid == pid).collect()
}

fn exit_of(events: &[KernelEvent], pid: u32) -> Option<podlife_core::ExitStatus> {
    events.iter().find_map(|e| match &e.kind {
        K::Exit { status } if e.tgid == pid => *status,
        _ => None,
    })
}

/// Children of a process, from /proc (the pid-1 of a new pid namespace, say).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn wait_child(pid: u32) -> u32 {
    for _ in 0..200 {
        if let Some(c) = children(pid).first() {
            return *c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never got a child");
}

#[test]
fn sigterm_to_a_pid1_without_handler_is_ignored_by_the_kernel() {
    let mut cap = capture();
    let cg = TestCgroup::new(true);
    let mut unshare = cg.spawn(Command::new("unshare").args(["--pid", "--fork", "sleep", "30"]));
    let pid1 = wait_child(unshare.id());
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid1 as i32, libc::SIGTERM) };
    let seen = drain_until(&mut cap, |ev| {
        ev.iter().any(|e| matches!(e.kind, K::SignalGenerate { target_pid, sig: 15, .. } if target_pid == pid1))
    });
    let gen = seen
        .iter()
        .find_map(|e| match &e.kind {
            K::SignalGenerate {
                target_pid,
                sig: 15,
                result,
                code,
                ..
            } if *target_pid == pid1 => Some((e, *result, *code)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no signal_generate for pid 1 {pid1}"));
    assert_eq!(
        gen.1,
        SignalResult::Ignored,
        "PID 1 with SIG_DFL for TERM: the kernel drops it"
    );
    assert_eq!(gen.2, 0, "SI_USER from kill(2)");
    assert_eq!(gen.0.tgid, std::process::id(), "the sender is current");
    unsafe { libc::kill(pid1 as i32, libc::SIGKILL) };
    let _ = unshare.wait();
    let seen = drain_until(&mut cap, |ev| exit_of(ev, pid1).is_some());
    assert_eq!(exit_of(&seen, pid1).and_then(|s| s.signal), Some(9));
}

#[test]
fn sigterm_without_and_with_a_handler() {
    let mut cap = capture();
    let cg = TestCgroup::new(true);
    let mut plain = cg.spawn(Command::new("sleep").arg("30"));
    let mut trapper = cg
        .spawn(Command::new("sh").args(["-c", "trap 'exit 4' TERM; while :; do sleep 0.05; done"]));
    std::thread::sleep(Duration::from_millis(200));
    unsafe {
        libc::kill(plain.id() as i32, libc::SIGTERM);
        libc::kill(trapper.id() as i32, libc::SIGTERM);
    }
    let (p, t) = (plain.id(), trapper.id());
    let _ = plain.wait();
    let _ = trapper.wait();
    let seen = drain_until(&mut cap, |ev| {
        exit_of(ev, p).is_some() && exit_of(ev, t).is_some()
    });
    let plain_exit = exit_of(&seen, p).expect("exit of the plain sleep");
    assert_eq!((plain_exit.code, plain_exit.signal), (None, Some(15)));
    let trap_exit = exit_of(&seen, t).expect("exit of the trapping shell");
    assert_eq!((trap_exit.code, trap_exit.signal), (Some(4), None));
    let delivered = of(&seen, t)
        .into_iter()
        .find_map(|e| match e.kind {
            K::SignalDeliver {
                sig: 15, handler, ..
            } => Some(handler),
            _ => None,
        })
        .expect("signal_deliver of TERM to the trapping shell");
    assert!(
        matches!(delivered, SignalHandler::Handler(_)),
        "{delivered:?}"
    );
}

#[test]
fn forks_of_processes_are_reported_and_threads_are_not() {
    let mut cap = capture();
    let cg = TestCgroup::new(true);
    let mut sh = cg.spawn(Command::new("sh").args(["-c", "true & wait"]));
    let mut py = cg.spawn(Command::new("/usr/bin/python3").args(["-c", "import threading\nts=[threading.Thread(target=lambda: None) for _ in range(4)]\n[t.start() for t in ts]\n[t.join() for t in ts]"]));
    let (s, p) = (sh.id(), py.id());
    let _ = sh.wait();
    let _ = py.wait();
    let seen = drain_until(&mut cap, |ev| {
        exit_of(ev, s).is_some() && exit_of(ev, p).is_some()
    });
    let forks_of = |pid| {
        of(&seen, pid)
            .into_iter()
            .filter(|e| matches!(e.kind, K::Fork { .. }))
            .count()
    };
    assert!(forks_of(s) >= 1, "the shell forked a child");
    assert_eq!(forks_of(p), 0, "thread clones are not process forks");
    let child = of(&seen, s)
        .into_iter()
        .find_map(|e| match e.kind {
            K::Fork {
                child_tgid,
                clone_flags,
            } => Some((child_tgid, clone_flags)),
            _ => None,
        })
        .unwrap();
    assert_eq!(child.1 & CLONE_THREAD, 0);
    assert!(
        exit_of(&seen, child.0).is_some(),
        "the forked child is followed to its exit"
    );
}

#[test]
fn exec_argv_is_bounded_and_marked_truncated() {
    let mut cap = capture();
    let cg = TestCgroup::new(true);
    let long = "x".repeat(300);
    let mut args: Vec<String> = vec!["-c".into(), "exit 0".into(), "sh".into()];
    args.extend((0..30).map(|i| format!("{long}{i}")));
    let mut child = cg.spawn(Command::new("sh").args(&args));
    let pid = child.id();
    let _ = child.wait();
    let seen = drain_until(&mut cap, |ev| exit_of(ev, pid).is_some());
    let (argv, truncated) = of(&seen, pid)
        .into_iter()
        .find_map(|e| match &e.kind {
            K::Exec {
                argv,
                argv_truncated,
                ..
            } => Some((argv.clone(), *argv_truncated)),
            _ => None,
        })
        .expect("exec event");
    assert!(truncated);
    assert_eq!(&argv[..3], ["sh", "-c", "exit 0"]);
    assert!(argv.len() <= podlife_common::ARGV_MAX_ARGS);
    assert!(argv.iter().all(|a| a.len() < podlife_common::ARG_LEN));
}

#[test]
fn setns_into_another_process_and_unshare() {
    let mut cap = capture();
    let cg = TestCgroup::new(true);
    let mut holder = cg.spawn(Command::new("unshare").args(["--uts", "--ipc", "sleep", "30"]));
    std::thread::sleep(Duration::from_millis(150));
    let target = holder.id().to_string();
    let mut joiner = cg.spawn(Command::new("nsenter").args(["-t", &target, "-u", "-i", "true"]));
    let j = joiner.id();
    let _ = joiner.wait();
    let h = holder.id();
    let seen = drain_until(&mut cap, |ev| exit_of(ev, j).is_some());
    let unshared = of(&seen, h)
        .into_iter()
        .find_map(|e| match e.kind {
            K::Unshare { flags } => Some(flags),
            _ => None,
        })
        .expect("unshare event of the holder");
    assert_eq!(
        unshared & (CLONE_NEWUTS | CLONE_NEWIPC),
        CLONE_NEWUTS | CLONE_NEWIPC
    );
    let joined: Vec<(u64, i32)> = of(&seen, j)
        .into_iter()
        .filter_map(|e| match e.kind {
            K::Setns { nstype, ret, .. } => Some((nstype, ret)),
            _ => None,
        })
        .collect();
    assert!(
        joined.contains(&(CLONE_NEWUTS, 0)) && joined.contains(&(CLONE_NEWIPC, 0)),
        "{joined:?}"
    );
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn cgroup_mkdir_attach_and_rmdir_of_pod_cgroups_only() {
    let mut cap = capture();
    let cg = TestCgroup::new(true);
    let host = TestCgroup::new(false);
    let (id, host_id) = (cg.id(), host.id());
    let mut child = cg.spawn(&mut Command::new("true"));
    let pid = child.id();
    let _ = child.wait();
    drop(cg);
    drop(host);
    let seen = drain_until(&mut cap, |ev| {
        ev.iter()
            .any(|e| matches!(e.kind, K::CgroupRmdir { id: i, .. } if i == id))
    });
    let mkdir = seen
        .iter()
        .find_map(|e| match &e.kind {
            K::CgroupMkdir {
                id: i,
                path,
                level,
                root,
            } if *i == id => Some((path.clone(), *level, *root)),
            _ => None,
        })
        .expect("mkdir event");
    assert!(
        mkdir.0.starts_with("/podlife-test-kubepods-"),
        "{}",
        mkdir.0
    );
    assert_eq!((mkdir.1, mkdir.2), (1, 0));
    assert!(
        seen.iter().any(
            |e| matches!(e.kind, K::CgroupAttach { id: i, pid: p, .. } if i == id && p == pid)
        ),
        "attach of the spawned child"
    );
    assert!(
        !seen.iter().any(|e| matches!(&e.kind, K::CgroupMkdir { id: i, .. } | K::CgroupRmdir { id: i, .. } if *i == host_id)),
        "a cgroup outside kubepods is not reported"
    );
}

#[test]
fn oom_kill_in_a_small_memory_cgroup() {
    let mut cap = capture();
    let cg = TestCgroup::new(true).with_memory_limit(16 << 20);
    // busybox tail buffers a line that never ends: it grows until the OOM killer comes.
    let mut hog = cg.spawn(Command::new("busybox").args(["tail", "/dev/zero"]));
    let pid = hog.id();
    let status = hog.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let seen = drain_until(&mut cap, |ev| exit_of(ev, pid).is_some());
    let oom = seen
        .iter()
        .find_map(|e| match &e.kind {
            K::OomVictim {
                pid: p,
                anon_rss_kb,
                victim_comm,
                ..
            } if *p == pid => Some((*anon_rss_kb, victim_comm.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no OOM victim event for {pid}"));
    assert!(oom.0.is_some_and(|kb| kb > 4 << 10), "anon rss {:?}", oom.0);
    assert_eq!(oom.1.as_deref(), Some("busybox"));
    assert_eq!(exit_of(&seen, pid).and_then(|s| s.signal), Some(9));
}

#[test]
fn host_churn_outside_pods_emits_nothing() {
    let mut cap = capture();
    let host = TestCgroup::new(false);
    let mut pids = Vec::new();
    for _ in 0..30 {
        let mut c = host.spawn(&mut Command::new("/bin/true"));
        pids.push(c.id());
        let _ = c.wait();
    }
    let seen = drain_for(&mut cap, Duration::from_millis(300));
    let leaked: Vec<_> = seen.iter().filter(|e| pids.contains(&e.tgid)).collect();
    assert!(leaked.is_empty(), "host processes reported: {leaked:?}");
}

#[test]
fn the_agent_itself_is_never_reported() {
    // Even with the filter off, events whose current task is the agent are dropped.
    let mut cap = capture_with(LoadOptions {
        no_filter: true,
        ..Default::default()
    });
    for _ in 0..5 {
        let _ = Command::new("/bin/true").status();
    }
    let seen = drain_for(&mut cap, Duration::from_millis(200));
    assert!(
        !seen.is_empty(),
        "without the filter, host events are reported"
    );
    let me = std::process::id();
    assert!(
        seen.iter().all(|e| e.tgid != me),
        "an event of the agent's own tgid"
    );
}

#[test]
fn a_runtime_shim_tree_is_followed_without_any_cgroup() {
    let mut cap = capture();
    let dir = std::env::temp_dir().join(format!("podlife-shim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // comm is the first 15 bytes of the file name: "containerd-shim".
    let shim = dir.join("containerd-shim-test");
    std::fs::copy("/bin/dash", &shim).expect("copy dash");
    let mut child = Command::new(&shim)
        .args(["-c", "sh -c 'exit 5'; exit 0"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let _ = child.wait();
    let seen = drain_until(&mut cap, |ev| exit_of(ev, pid).is_some());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(of(&seen, pid)
        .iter()
        .any(|e| matches!(e.kind, K::Exec { .. }) && e.comm == "containerd-shim"));
    let fives = seen
        .iter()
        .filter(|e| {
            e.tgid != pid && matches!(e.kind, K::Exit { status: Some(s) } if s.code == Some(5))
        })
        .count();
    assert_eq!(fives, 1, "the shim's child is followed to its exit 5");
}

#[test]
fn a_full_ring_buffer_counts_what_it_loses() {
    let cap = capture_with(LoadOptions {
        ringbuf_bytes: 8192,
        ..Default::default()
    });
    let cg = TestCgroup::new(true);
    for _ in 0..40 {
        let mut c = cg.spawn(Command::new("sh").args(["-c", "exit 0"]));
        let _ = c.wait();
    }
    assert!(
        cap.counter(Counter::RingbufLost) > 0,
        "an 8 KiB ring buffer that nobody reads must overflow"
    );
}
