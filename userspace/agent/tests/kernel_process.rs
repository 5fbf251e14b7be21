//! Kernel suite, process lifecycle: exec (filename, argv, comm), exit status (code, signal,
//! core), forks vs threads, runtime shim trees, and what is never reported (host churn, the
//! agent itself). Root; every assertion filters by the pids the test made.

mod support;

use std::io::Write as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use podlife::capture::loader::LoadOptions;
use podlife_common::{ARGV_LEN, ARGV_MAX_ARGS, ARG_LEN};
use podlife_core::clone::CLONE_THREAD;
use podlife_core::KernelEventKind as K;
use support::*;

/// (filename, argv, truncated, old_tid, comm, cgroup id) of the exec of `pid`.
fn exec_of(seen: &Seen, pid: u32) -> (String, Vec<String>, bool, u32, String, u64) {
    seen.of(pid)
        .into_iter()
        .find_map(|e| match &e.kind {
            K::Exec {
                filename,
                argv,
                argv_truncated,
                old_tid,
            } => Some((
                filename.clone(),
                argv.clone(),
                *argv_truncated,
                *old_tid,
                e.comm.to_string(),
                e.cgroup_id,
            )),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exec event of {pid}:{}", seen.dump(&[pid])))
}

#[test]
fn exec_reports_filename_argv_comm_and_the_exit_code() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let mut child = cg.spawn(Command::new("/bin/sh").args(["-c", "exit 3"]));
    let pid = child.id();
    assert_eq!(wait(&mut child).code(), Some(3));
    let seen = drain_until(&mut cap, "exec and exit of sh", &[pid], |s| s.has_exit(pid));

    let (filename, argv, truncated, old_tid, comm, cgroup_id) = exec_of(&seen, pid);
    assert_eq!(filename, "/bin/sh");
    assert_eq!(argv, ["/bin/sh", "-c", "exit 3"]);
    assert!(!truncated, "a short argv is complete");
    assert_eq!(old_tid, pid, "single-threaded exec: the leader's tid");
    assert_eq!(comm, "sh", "comm after exec is the file's base name");
    assert_eq!(cgroup_id, cg.id(), "cgroup id is the v2 directory's inode");

    let exit = seen.exit_of(pid).expect("the exit carries a status");
    assert_eq!(
        (exit.code, exit.signal, exit.core_dumped),
        (Some(3), None, false)
    );
    let exit_event = seen
        .of(pid)
        .into_iter()
        .find(|e| matches!(e.kind, K::Exit { .. }))
        .unwrap();
    assert_eq!(exit_event.comm, "sh");
    assert_eq!(exit_event.cgroup_id, cg.id());
}

#[test]
fn long_and_many_arguments_are_bounded_and_marked_truncated() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    // Long arguments: each is cut at ARG_LEN - 1 bytes, and the buffer ends before all fit.
    let long = "x".repeat(300);
    let mut args: Vec<String> = vec!["-c".into(), "exit 0".into(), "sh".into()];
    args.extend((0..30).map(|i| format!("{long}{i}")));
    let mut long_child = cg.spawn(Command::new("/bin/sh").args(&args));
    // Many short arguments: only the first ARGV_MAX_ARGS are kept.
    let many: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
    let mut many_child = cg.spawn(
        Command::new("/bin/sh")
            .args(["-c", "exit 0", "sh"])
            .args(&many),
    );
    let (l, m) = (long_child.id(), many_child.id());
    wait(&mut long_child);
    wait(&mut many_child);
    let seen = drain_until(&mut cap, "both execs", &[l, m], |s| {
        s.has_exit(l) && s.has_exit(m)
    });

    let (_, argv, truncated, ..) = exec_of(&seen, l);
    assert!(truncated, "30 arguments of 302 bytes cannot fit");
    assert_eq!(&argv[..4], ["/bin/sh", "-c", "exit 0", "sh"]);
    assert!(argv.len() > 4, "some long arguments are kept: {argv:?}");
    for a in &argv[4..] {
        assert_eq!(a.len(), ARG_LEN - 1, "a long argument is cut, not dropped");
        assert!(long.starts_with(a.as_str()));
    }
    let bytes: usize = argv.iter().map(|a| a.len() + 1).sum();
    assert!(bytes <= ARGV_LEN, "{bytes} bytes of argv kept");

    let (_, argv, truncated, ..) = exec_of(&seen, m);
    assert!(truncated, "44 arguments are more than {ARGV_MAX_ARGS}");
    assert_eq!(argv.len(), ARGV_MAX_ARGS);
    assert_eq!(&argv[..4], ["/bin/sh", "-c", "exit 0", "sh"]);
    assert_eq!(argv[4..], many[..ARGV_MAX_ARGS - 4]);
}

#[test]
fn sigsegv_exit_status_carries_the_core_flag() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let dir = std::env::temp_dir().join(format!("podlife-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spawn = |core_limit: libc::rlim_t| {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "kill -SEGV $$"]).current_dir(&dir);
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: core_limit,
                    rlim_max: libc::RLIM_INFINITY,
                };
                if libc::setrlimit(libc::RLIMIT_CORE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cg.spawn(&mut cmd)
    };
    let mut no_core = spawn(0);
    let no_core_status = wait(&mut no_core);
    let mut with_core = spawn(libc::RLIM_INFINITY);
    let with_core_status = wait(&mut with_core);
    let (a, b) = (no_core.id(), with_core.id());
    let seen = drain_until(&mut cap, "both SIGSEGV exits", &[a, b], |s| {
        s.has_exit(a) && s.has_exit(b)
    });
    let _ = std::fs::remove_dir_all(&dir);

    let exit = seen.exit_of(a).expect("status");
    assert_eq!(
        (exit.code, exit.signal, exit.core_dumped),
        (None, Some(11), false),
        "RLIMIT_CORE 0: killed by SIGSEGV without a core"
    );
    assert_eq!(no_core_status.signal(), Some(11));

    let exit = seen.exit_of(b).expect("status");
    assert_eq!((exit.code, exit.signal), (None, Some(11)));
    assert_eq!(
        exit.core_dumped,
        with_core_status.core_dumped(),
        "the kernel's core flag is what waitpid(2) reports to the parent"
    );
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if !pattern.starts_with('|') && !pattern.trim().is_empty() {
        assert!(
            exit.core_dumped,
            "core_pattern {pattern:?} writes a file and RLIMIT_CORE is unlimited: a core is dumped"
        );
    }
}

#[test]
fn forks_of_processes_are_reported_and_threads_are_not() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let mut sh = cg.spawn(Command::new("/bin/sh").args(["-c", "/bin/true & wait"]));
    let mut py = cg.spawn(Command::new("/usr/bin/python3").args([
        "-c",
        "import threading\nts=[threading.Thread(target=lambda: None) for _ in range(4)]\n\
         [t.start() for t in ts]\n[t.join() for t in ts]",
    ]));
    let (s, p) = (sh.id(), py.id());
    wait(&mut sh);
    assert!(wait(&mut py).success(), "python3 with 4 threads");
    let seen = drain_until(&mut cap, "exits of sh and python3", &[s, p], |ev| {
        ev.has_exit(s) && ev.has_exit(p)
    });

    let forks: Vec<(u32, u64)> = seen
        .of(s)
        .into_iter()
        .filter_map(|e| match e.kind {
            K::Fork {
                child_tgid,
                clone_flags,
            } => Some((child_tgid, clone_flags)),
            _ => None,
        })
        .collect();
    assert_eq!(forks.len(), 1, "the shell forked one child: {forks:?}");
    let (child, flags) = forks[0];
    assert_eq!(flags & CLONE_THREAD, 0);
    assert_ne!(child, s);
    assert_eq!(
        exec_of(&seen, child).0,
        "/bin/true",
        "the child is followed"
    );
    assert_eq!(
        seen.exit_of(child).and_then(|x| x.code),
        Some(0),
        "and to its exit"
    );

    let py_forks = seen
        .of(p)
        .into_iter()
        .filter(|e| matches!(e.kind, K::Fork { .. }))
        .count();
    assert_eq!(py_forks, 0, "thread clones are not process forks");
    let py_exits = seen
        .of(p)
        .into_iter()
        .filter(|e| matches!(e.kind, K::Exit { .. }))
        .count();
    assert_eq!(py_exits, 1, "threads exiting are not process exits");
}

#[test]
fn a_runtime_shim_tree_is_followed_without_any_cgroup() {
    let mut cap = capture();
    let dir = std::env::temp_dir().join(format!("podlife-shim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // comm is the first 15 bytes of the file name: "containerd-shim".
    let shim = dir.join("containerd-shim-test");
    std::fs::copy("/bin/dash", &shim).expect("copy /bin/dash");
    let mut child = Command::new(&shim)
        .args(["-c", "/bin/sh -c 'exit 5'; exit 0"])
        .spawn()
        .expect("spawn the fake shim");
    let pid = child.id();
    assert!(wait(&mut child).success());
    let seen = drain_until(&mut cap, "the fake shim's exit", &[pid], |s| {
        s.has_exit(pid)
    });
    let _ = std::fs::remove_dir_all(&dir);

    let (filename, _, _, _, comm, _) = exec_of(&seen, pid);
    assert_eq!(comm, "containerd-shim");
    assert!(filename.ends_with("containerd-shim-test"), "{filename}");
    let child = seen
        .of(pid)
        .into_iter()
        .find_map(|e| match e.kind {
            K::Fork { child_tgid, .. } => Some(child_tgid),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fork of the shim:{}", seen.dump(&[pid])));
    assert_eq!(
        exec_of(&seen, child).1,
        ["/bin/sh", "-c", "exit 5"],
        "the shim's child is followed through its exec"
    );
    assert_eq!(seen.exit_of(child).and_then(|s| s.code), Some(5));
}

#[test]
fn host_churn_outside_pods_emits_nothing() {
    let mut cap = capture();
    let host = TestCgroup::host();
    let mut pids = Vec::new();
    for i in 0..40 {
        // Half straight from the (untracked) test process, half in a non-pod cgroup.
        let mut c = if i % 2 == 0 {
            Command::new("/bin/sh")
                .args(["-c", "/bin/true; exit 2"])
                .spawn()
                .unwrap()
        } else {
            host.spawn(Command::new("/bin/sh").args(["-c", "/bin/true; exit 2"]))
        };
        pids.push(c.id());
        wait(&mut c);
    }
    let seen = drain_for(&mut cap, Duration::from_millis(300));
    let leaked: Vec<_> = seen.0.iter().filter(|e| pids.contains(&e.tgid)).collect();
    assert!(leaked.is_empty(), "host processes reported: {leaked:?}");
    let about: Vec<_> = seen
        .0
        .iter()
        .filter(|e| matches!(e.kind, K::SignalGenerate { target_pid, .. } if pids.contains(&target_pid)))
        .collect();
    assert!(
        about.is_empty(),
        "signals to host processes reported: {about:?}"
    );
}

#[test]
fn the_agent_itself_is_never_reported_even_in_a_pod_cgroup() {
    // The agent runs as a DaemonSet: its own cgroup is a kubepods one. Stand-in: a shell in a
    // pod cgroup whose pid is handed to the programs as the agent's.
    let cg = TestCgroup::pod();
    let mut agent = cg.spawn(
        Command::new("/bin/sh")
            .args(["-c", "read x; /bin/true; exit 7"])
            .stdin(Stdio::piped()),
    );
    let a = agent.id();
    let mut cap = capture_with(LoadOptions {
        self_tgid: a,
        ..Default::default()
    });
    // The cgroup predates the programs (as at agent start): seed it, as the bootstrap does.
    cap.track_cgroup(cg.id()).expect("track the pod cgroup");
    agent.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(wait(&mut agent).code(), Some(7));
    let seen = drain_until(&mut cap, "the exit of the agent's child", &[a], |s| {
        s.0.iter().any(|e| {
            e.tgid != a
                && matches!(&e.kind, K::Exec { filename, .. } if filename == "/bin/true")
                && s.has_exit(e.tgid)
        })
    });
    let own: Vec<_> = seen.of(a);
    assert!(own.is_empty(), "events of the agent's own tgid: {own:?}");
}

#[test]
fn without_the_filter_host_processes_are_reported_but_not_the_agent() {
    let mut cap = capture_with(LoadOptions {
        no_filter: true,
        ..Default::default()
    });
    let mut kids = Vec::new();
    for _ in 0..5 {
        let mut c = Command::new("/bin/true").spawn().unwrap();
        kids.push(c.id());
        wait(&mut c);
    }
    let seen = drain_until(&mut cap, "exits of host /bin/true", &kids, |s| {
        kids.iter().all(|k| s.has_exit(*k))
    });
    let me = std::process::id();
    let own: Vec<_> = seen.of(me);
    assert!(own.is_empty(), "events of the agent's own tgid: {own:?}");
}
