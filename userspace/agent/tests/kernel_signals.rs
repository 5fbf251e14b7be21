//! Kernel suite, signals: who sent what to whom, what the kernel did with it (delivered or
//! ignored), the target's handler, and the resulting exit status. Root.

mod support;

use std::process::{Command, Stdio};

use podlife_core::{KernelEvent, KernelEventKind as K, SignalHandler, SignalResult};
use support::*;

/// (sender event, sig, code, group, result, target comm) of the first generate of `sig` to `target`.
fn generated(
    seen: &Seen,
    target: u32,
    sig: i32,
) -> Option<(&KernelEvent, i32, bool, SignalResult, String)> {
    seen.0.iter().find_map(|e| match &e.kind {
        K::SignalGenerate {
            sig: s,
            target_pid,
            code,
            group,
            result,
            target_comm,
        } if *s == sig && *target_pid == target => {
            Some((e, *code, *group, *result, target_comm.to_string()))
        }
        _ => None,
    })
}

fn delivered(seen: &Seen, target: u32, sig: i32) -> Option<SignalHandler> {
    seen.of(target).into_iter().find_map(|e| match e.kind {
        K::SignalDeliver {
            sig: s, handler, ..
        } if s == sig => Some(handler),
        _ => None,
    })
}

/// A `sh -c script` forked inside the pod cgroup by a wrapper shell, as container processes are
/// forked by the runtime: returns (wrapper, inner pid). The inner script prints "ready" first.
fn spawn_inner(cg: &TestCgroup, script: &str) -> (std::process::Child, u32) {
    let mut wrapper = cg.spawn(
        Command::new("/bin/sh")
            .args(["-c", "/bin/sh -c \"$0\" & wait", script])
            .stdout(Stdio::piped()),
    );
    assert_eq!(read_line(&mut wrapper), "ready");
    let inner = first_child(wrapper.id());
    (wrapper, inner)
}

#[test]
fn sigterm_inside_a_pod_without_handler_kills_with_signal_15() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    // The sender is in the pod too (a runtime's `kill` is in the shim's tree).
    let mut sh = cg.spawn(Command::new("/bin/sh").args([
        "-c",
        "/bin/sleep 30 & p=$!; echo $p; while [ \"$(cat /proc/$p/comm)\" != sleep ]; do :; done; \
         kill -TERM $p; wait $p",
    ]).stdout(Stdio::piped()));
    let sender = sh.id();
    let target: u32 = read_line(&mut sh).parse().expect("pid of sleep");
    assert_eq!(wait(&mut sh).code(), Some(128 + 15));
    let seen = drain_until(&mut cap, "the exit of sleep", &[sender, target], |s| {
        s.has_exit(target)
    });

    let (ev, code, group, result, comm) = generated(&seen, target, 15)
        .unwrap_or_else(|| panic!("no signal_generate:{}", seen.dump(&[sender, target])));
    assert_eq!(ev.tgid, sender, "current is the sender");
    assert_eq!(
        (code, group, result, comm.as_str()),
        (0, true, SignalResult::Delivered, "sleep"),
        "kill(2): SI_USER, a group signal, delivered"
    );
    // A fatal default action is turned into a group kill when the signal is queued
    // (complete_signal): the target dequeues SIGKILL, whose delivery is dropped in the kernel.
    assert_eq!(delivered(&seen, target, 15), None);
    let exit = seen.exit_of(target).expect("status");
    assert_eq!(
        (exit.code, exit.signal, exit.core_dumped),
        (None, Some(15), false)
    );
}

#[test]
fn sigterm_to_a_trapping_shell_runs_its_handler_and_its_exit_code() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let (mut wrapper, inner) = spawn_inner(
        &cg,
        "trap 'exit 4' TERM; echo ready; while :; do /bin/sleep 0.05; done",
    );
    kill(inner, libc::SIGTERM);
    wait(&mut wrapper);
    let seen = drain_until(&mut cap, "the exit of the trapping shell", &[inner], |s| {
        s.has_exit(inner)
    });

    let (ev, code, _, result, comm) = generated(&seen, inner, 15)
        .unwrap_or_else(|| panic!("no signal_generate:{}", seen.dump(&[inner])));
    assert_eq!(
        ev.tgid,
        std::process::id(),
        "sent by this test (a host process)"
    );
    assert_eq!(
        (code, result, comm.as_str()),
        (0, SignalResult::Delivered, "sh")
    );
    let handler = delivered(&seen, inner, 15).expect("signal_deliver of TERM");
    assert!(
        matches!(handler, SignalHandler::Handler(addr) if addr > 1),
        "a user handler: {handler:?}"
    );
    let exit = seen.exit_of(inner).expect("status");
    assert_eq!(
        (exit.code, exit.signal),
        (Some(4), None),
        "the trap's own code"
    );
}

#[test]
fn sigterm_to_a_process_ignoring_it_is_reported_ignored() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    // `trap '' TERM` is SIG_IGN, kept across exec: the grace-overrun case.
    let (mut wrapper, inner) = spawn_inner(&cg, "trap '' TERM; echo ready; exec /bin/sleep 30");
    wait_comm(inner, "sleep");
    kill(inner, libc::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(50));
    kill(inner, libc::SIGKILL);
    wait(&mut wrapper);
    let seen = drain_until(&mut cap, "the exit of sleep", &[inner], |s| {
        s.has_exit(inner)
    });

    let (_, _, _, result, _) = generated(&seen, inner, 15).expect("signal_generate of TERM");
    assert_eq!(result, SignalResult::Ignored);
    assert_eq!(
        delivered(&seen, inner, 15),
        None,
        "an ignored signal is never delivered"
    );
    let (_, _, _, result, _) = generated(&seen, inner, 9).expect("signal_generate of KILL");
    assert_eq!(result, SignalResult::Delivered);
    assert_eq!(seen.exit_of(inner).and_then(|s| s.signal), Some(9));
}

#[test]
fn sigterm_to_a_pid1_without_handler_is_ignored_by_the_kernel() {
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let mut unshare = cg.spawn(
        Command::new("unshare")
            .args(["--pid", "--fork", "/bin/sleep", "30"])
            .stderr(Stdio::null()),
    );
    let pid1 = first_child(unshare.id());
    wait_comm(pid1, "sleep");
    let ns_pid = std::fs::read_to_string(format!("/proc/{pid1}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:").map(str::to_owned))
        .unwrap();
    assert!(
        ns_pid.trim().ends_with("\t1") || ns_pid.trim().ends_with(" 1"),
        "NSpid {ns_pid}"
    );
    kill(pid1, libc::SIGTERM);
    let seen = drain_until(&mut cap, "signal_generate to the pid 1", &[pid1], |s| {
        generated(s, pid1, 15).is_some()
    });
    let (ev, code, group, result, comm) = generated(&seen, pid1, 15).unwrap();
    assert_eq!(
        result,
        SignalResult::Ignored,
        "pid 1 of a namespace with SIG_DFL for TERM: the kernel drops it"
    );
    assert_eq!((code, group, comm.as_str()), (0, true, "sleep"));
    assert_eq!(ev.tgid, std::process::id(), "current is the sender");

    kill(pid1, libc::SIGKILL);
    wait(&mut unshare);
    let seen = drain_until(&mut cap, "the exit of the pid 1", &[pid1], |s| {
        s.has_exit(pid1)
    });
    assert_eq!(seen.exit_of(pid1).and_then(|s| s.signal), Some(9));
}

#[test]
fn a_host_kill_of_a_process_moved_into_a_pod_cgroup_is_reported() {
    // The process was attached to the pod cgroup by an untracked parent (this test), not forked
    // inside it: only its cgroup marks it as a pod process. A node admin's or the kubelet's kill
    // must still show up.
    let mut cap = capture();
    let cg = TestCgroup::pod();
    let mut sleep = cg.spawn(Command::new("/bin/sleep").arg("30"));
    let target = sleep.id();
    wait_comm(target, "sleep");
    kill(target, libc::SIGTERM);
    wait(&mut sleep);
    let seen = drain_until(&mut cap, "the exit of sleep", &[target], |s| {
        s.has_exit(target)
    });
    assert_eq!(seen.exit_of(target).and_then(|s| s.signal), Some(15));
    assert!(
        generated(&seen, target, 15).is_some(),
        "no signal_generate from a host sender to a process in a pod cgroup:{}",
        seen.dump(&[target, std::process::id()])
    );
}
