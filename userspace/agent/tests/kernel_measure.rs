//! Kernel suite, measurements (root): the programs' own run time per event
//! (`kernel.bpf_stats_enabled`) for processes in a pod cgroup and outside pods, and ring-buffer
//! losses under a `stress-ng --vfork 2` storm in a pod cgroup with a reader draining on a
//! 1–10 ms timer. Numbers are printed (`--nocapture`) and recorded in docs/KERNEL-CAPTURE.md;
//! they are figures of the machine, not assertions (`cargo xtask bench` measures them). What is
//! asserted: every program runs for every process in and out of pods, every record of the storm
//! decodes, and whatever the storm lost, capture recovers: nothing more is lost once it is over
//! and a burst after it is read in full.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podlife_common::Counter;
use support::*;

/// Program statistics are read from this process's program fds: one capture at a time.
static ONE_CAPTURE: Mutex<()> = Mutex::new(());

/// (run_time_ns, run_cnt) per program name, from /proc/self/fdinfo of the bpf-prog fds.
fn prog_stats() -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_prog = std::fs::read_link(fd.path())
            .map(|l| l.to_string_lossy().contains("bpf-prog"))
            .unwrap_or(false);
        if !is_prog {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            fd.file_name().to_string_lossy()
        )) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let id = field("prog_id:");
        let name = prog_name(id);
        let e = out.entry(name).or_insert((0, 0));
        e.0 += field("run_time_ns:");
        e.1 += field("run_cnt:");
    }
    out
}

fn prog_name(id: u64) -> String {
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool (apt-get install bpftool)");
    // "123: tracepoint  name sched_process_e  tag ..."
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "name")
        .nth(1)
        .unwrap_or("?")
        .to_string()
}

fn delta(
    a: &BTreeMap<String, (u64, u64)>,
    b: &BTreeMap<String, (u64, u64)>,
) -> BTreeMap<String, (f64, u64)> {
    b.iter()
        .filter_map(|(k, (t1, c1))| {
            let (t0, c0) = a.get(k).copied().unwrap_or((0, 0));
            let runs = c1 - c0;
            (runs > 0).then(|| (k.clone(), ((t1 - t0) as f64 / runs as f64, runs)))
        })
        .collect()
}

/// `n` fork+execs of /bin/true from a shell in `cg`.
fn forkexec(cg: &TestCgroup, n: u32) {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    let mut sh = cg.spawn(Command::new("/bin/sh").args(["-c", &script]));
    assert!(wait(&mut sh).success());
}

struct StatsEnabled(String);

impl StatsEnabled {
    fn on() -> Self {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let before = std::fs::read_to_string(path).unwrap_or_else(|_| "0".into());
        std::fs::write(path, "1").expect("sysctl kernel.bpf_stats_enabled=1");
        Self(before.trim().to_string())
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

#[test]
fn per_event_cost_in_the_kernel_tracked_vs_host() {
    let _one = ONE_CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    let mut cap = capture();
    let pod = TestCgroup::pod();
    let host = TestCgroup::host();
    let _stats = StatsEnabled::on();
    let n = 500;
    let s0 = prog_stats();
    forkexec(&pod, n);
    let s1 = prog_stats();
    let read = drain_for(&mut cap, Duration::from_millis(50)).0.len();
    let s2 = prog_stats();
    forkexec(&host, n);
    let s3 = prog_stats();
    let tracked = delta(&s0, &s1);
    let untracked = delta(&s2, &s3);
    println!("{n} fork+exec of /bin/true; ns per program run (runs)");
    println!(
        "{:<18} {:>16} {:>16}",
        "program", "pod cgroup", "outside pods"
    );
    for (name, (ns, runs)) in &tracked {
        let (hns, hruns) = untracked.get(name).copied().unwrap_or((0.0, 0));
        println!("{name:<18} {ns:>9.0} ({runs:>5}) {hns:>9.0} ({hruns:>5})");
    }
    println!("events read from the pod run: {read}");
    assert!(
        read as u32 >= 3 * n,
        "exec, fork and exit of every /bin/true"
    );
    // Costs are printed, not asserted: timing belongs to `cargo xtask bench bpfstats`
    // (docs/BENCHMARKS.md), and run-time figures scatter on a loaded or emulated CPU. What is
    // asserted is that bpf_stats saw every program run for every process, in and out of pods.
    for name in [
        "sched_process_exec",
        "sched_process_exit",
        "task_newtask",
        "sys_enter_execve",
    ] {
        for (side, stats) in [("pod cgroup", &tracked), ("outside pods", &untracked)] {
            let (_, runs) = stats
                .get(name)
                .unwrap_or_else(|| panic!("{name} never ran ({side})"));
            assert!(
                *runs >= u64::from(n),
                "{name} ({side}): {runs} runs for {n} fork+exec"
            );
        }
    }
}

#[test]
fn vfork_storm_in_a_pod_decodes_and_capture_recovers() {
    let _one = ONE_CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    let secs: u64 = std::env::var("PODLIFE_STORM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut cap = capture();
    let pod = TestCgroup::pod();
    let mut storm = pod.spawn(
        Command::new("stress-ng")
            .args(["--vfork", "2", "-t", &secs.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let start = Instant::now();
    let (mut events, mut bad) = (0u64, 0u64);
    loop {
        let done = storm.try_wait().expect("stress-ng").is_some();
        cap.drain(|r| {
            events += 1;
            bad += r.is_err() as u64;
        });
        if done {
            break;
        }
        // The agent's timer (`--drain-ms`, 10 by default): it does not shorten under load.
        std::thread::sleep(Duration::from_millis(10));
    }
    wait(&mut storm);
    std::thread::sleep(Duration::from_millis(20));
    cap.drain(|r| {
        events += 1;
        bad += r.is_err() as u64;
    });
    let elapsed = start.elapsed().as_secs_f64();
    let lost = cap.counter(Counter::RingbufLost);
    println!(
        "stress-ng --vfork 2 -t {secs} in a pod cgroup: {events} events in {elapsed:.1} s = \
         {:.0} events/s, lost {lost}, undecodable {bad}",
        events as f64 / elapsed
    );
    assert_eq!(bad, 0, "every record decodes");
    assert!(events > 1000, "the storm was seen: {events} events");
    // Loss under the storm is a figure of this machine and its load (0 on an idle 2-CPU one,
    // docs/KERNEL-CAPTURE.md), not a verdict. Recovery is: after the storm, a burst in the pod
    // is read in full, an exec and an exit of every process, and nothing more is lost.
    let n = 200;
    let mut sh = pod.spawn(Command::new("/bin/sh").args([
        "-c",
        &format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"),
    ]));
    let shell = sh.id();
    assert!(wait(&mut sh).success());
    let is_true = |e: &podlife_core::KernelEvent| matches!(&e.kind, podlife_core::KernelEventKind::Exec { filename, .. } if filename == "/bin/true");
    let seen = drain_until(&mut cap, "the burst after the storm", &[shell], |s| {
        s.has_exit(shell) && s.0.iter().filter(|e| is_true(e)).count() >= n
    });
    let execs: Vec<u32> = seen
        .0
        .iter()
        .filter(|e| is_true(e))
        .map(|e| e.tgid)
        .collect();
    assert_eq!(execs.len(), n, "one exec of each /bin/true");
    assert!(
        execs.iter().all(|&pid| seen.has_exit(pid)),
        "an exit of each /bin/true after the storm"
    );
    assert_eq!(
        cap.counter(Counter::RingbufLost),
        lost,
        "nothing lost after the storm ({lost} during it)"
    );
}

/// A listener on `addr` accepting and dropping every connection until the process ends; the
/// counter says how many it has closed.
fn accept_all(addr: &str) -> (u16, Arc<AtomicU32>) {
    let l = std::net::TcpListener::bind((addr, 0)).expect("bind");
    let port = l.local_addr().unwrap().port();
    let closed = Arc::new(AtomicU32::new(0));
    let count = closed.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, closed)
}

/// Wait until the acceptor closed `n` connections: a client's socket reaches CLOSE (where its
/// record is written) only after the server's FIN, and on a slow (emulated) CPU the acceptor
/// can lag the clients by seconds.
fn wait_closed(closed: &AtomicU32, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while closed.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "the acceptor closed {} of {n} connections in 120 s",
            closed.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `n` connects and closes to `addr:port` from a thread named `comm`.
fn connects(comm: &str, addr: &'static str, port: u16, n: u32) {
    std::thread::Builder::new()
        .name(comm.into())
        .spawn(move || {
            for _ in 0..n {
                drop(std::net::TcpStream::connect((addr, port)).expect("connect"));
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn connection_cost_in_the_kernel_host_churn_vs_kubelet_probes() {
    let _one = ONE_CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    let mut cap = capture();
    cap.add_pod_address("127.0.0.6".parse().unwrap())
        .expect("a pod address");
    let (host_port, _) = accept_all("127.0.0.1");
    let (pod_port, pod_closed) = accept_all("127.0.0.6");
    let _stats = StatsEnabled::on();
    let n = 1000;
    let s0 = prog_stats();
    connects("churn", "127.0.0.1", host_port, n);
    let s1 = prog_stats();
    let host_read = drain_for(&mut cap, Duration::from_millis(200));
    let s2 = prog_stats();
    connects("kubelet", "127.0.0.6", pod_port, n);
    wait_closed(&pod_closed, n);
    let s3 = prog_stats();
    // Exactness per connection is the functional suite's (kernel_probes). Here, on the
    // emulated 6.1 and 6.12 VMs, 2–14 of 1,000 back-to-back connections came without a record
    // (none on 6.18 here): an open question recorded in docs/KERNEL-CAPTURE.md; the cost figures
    // need only most of them.
    let enough = n as usize * 97 / 100;
    let probes = drain_until(&mut cap, "the kubelet connections", &[], |s| {
        s.0.iter()
            .filter(|e| matches!(e.kind, podlife_core::KernelEventKind::KubeletConn { .. }))
            .count()
            >= enough
    });
    let host = delta(&s0, &s1);
    let kubelet = delta(&s2, &s3);
    println!("{n} loopback connects; ns per program run (runs)");
    println!(
        "{:<18} {:>16} {:>16}",
        "program", "host churn", "kubelet → pod"
    );
    for (name, (ns, runs)) in &kubelet {
        let (hns, hruns) = host.get(name).copied().unwrap_or((0.0, 0));
        println!("{name:<18} {hns:>9.0} ({hruns:>5}) {ns:>9.0} ({runs:>5})");
    }
    let from_host = host_read
        .0
        .iter()
        .filter(|e| matches!(e.kind, podlife_core::KernelEventKind::KubeletConn { .. }))
        .count();
    assert_eq!(from_host, 0, "host churn reaches no ring buffer");
    let followed = probes
        .0
        .iter()
        .filter(|e| matches!(e.kind, podlife_core::KernelEventKind::KubeletConn { .. }))
        .count();
    println!("kubelet connections with a record: {followed} of {n}");
    assert!(
        (enough..=n as usize).contains(&followed),
        "at most one record per kubelet connection, and most have one: {followed} of {n}"
    );
    assert!(
        host.get("inet_sock_set_state")
            .is_some_and(|(_, runs)| *runs >= u64::from(n)),
        "the program ran for the churn: {host:?}"
    );
}
