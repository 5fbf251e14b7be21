//! Benchmarks against the real agent on this node (root).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use crate::util::{get, median, percentile, Agent, Cgroup};
use crate::workload;

const PORT: u16 = 19090;

fn tracked(name: &str) -> Result<Cgroup> {
    Cgroup::new(&format!("kubepods-bench/pod{name}"))
}

/// One A/B pair per round, order alternating (ABBA) so drift does not favour either side.
fn ab(pairs: usize, mut run: impl FnMut() -> Result<f64>) -> Result<Value> {
    let mut ratios = Vec::new();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        let mut once = |attached: bool| -> Result<f64> {
            let agent = if attached {
                Some(Agent::start(PORT)?)
            } else {
                None
            };
            let v = run()?;
            drop(agent);
            Ok(v)
        };
        let (a, b) = if i % 2 == 0 {
            let a = once(false)?;
            (a, once(true)?)
        } else {
            let b = once(true)?;
            (once(false)?, b)
        };
        without.push(a);
        with.push(b);
        ratios.push(b / a);
    }
    let m = median(&mut ratios.clone());
    Ok(json!({
        "pairs": pairs,
        "throughput_without_agent_median": median(&mut without),
        "throughput_with_agent_median": median(&mut with),
        "ratio_median": m,
        "overhead_pct_median": ((1.0 - m) * 100.0 * 10.0).round() / 10.0,
        "ratios": ratios,
    }))
}

pub fn overhead(pairs: usize) -> Result<Value> {
    let cg = tracked("overhead")?;
    let host = Cgroup::new("bench-host-churn")?;
    Ok(json!({
        "forkexec_tracked": ab(pairs, || workload::forkexec(&cg, 3.0))?,
        "vfork_tracked": ab(pairs, || workload::stress(&cg, "vfork", 3))?,
        "fork_tracked": ab(pairs, || workload::stress(&cg, "fork", 3))?,
        "forkexec_host_untracked": ab(pairs, || workload::forkexec(&host, 3.0))?,
        "targets": "forkexec in a pod <= 2% loss, vfork <= 3%, fork <= 5%, host forkexec <= 1%",
    }))
}

pub fn drops() -> Result<Value> {
    let cg = tracked("drops")?;
    let agent = Agent::start(PORT)?;
    let (ev0, lost0, cpu0) = (
        agent.metric("podlife_ringbuf_events_total"),
        agent.metric("podlife_ringbuf_events_lost_total"),
        agent.cpu_seconds(),
    );
    let t = Instant::now();
    let ops = workload::stress(&cg, "vfork", 10)?;
    std::thread::sleep(Duration::from_millis(300));
    let secs = t.elapsed().as_secs_f64();
    let events = agent.metric("podlife_ringbuf_events_total") - ev0;
    let lost = agent.metric("podlife_ringbuf_events_lost_total") - lost0;
    let cpu = agent.cpu_seconds() - cpu0;
    Ok(json!({
        "workload": "stress-ng --vfork 2 -t 10 in a tracked cgroup",
        "bogo_ops": ops,
        "events": events,
        "events_per_s": (events / secs).round(),
        "lost": lost,
        "agent_cpu_pct_of_one_core": (cpu / secs * 1000.0).round() / 10.0,
        "agent_rss_kb": agent.rss_kb(),
        "targets": "zero lost; agent CPU <= 5% of a core",
    }))
}

fn uid(i: u32, tag: u16) -> String {
    format!("{i:08x}-{tag:04x}-4000-8000-00000000beef")
}

/// mkdir of a pod cgroup → PodAdmitted visible over HTTP.
fn admission_latencies(n: u32, tag: u16) -> Result<Vec<f64>> {
    let mut lat = Vec::new();
    let mut made = Vec::new();
    for i in 0..n {
        let u = uid(i, tag);
        let t = Instant::now();
        made.push(Cgroup::new(&format!("kubepods/besteffort/pod{u}"))?);
        let path = format!("/pods/{u}/timeline");
        loop {
            if get(PORT, &path)?.0 == 200 {
                break;
            }
            if t.elapsed() > Duration::from_secs(5) {
                anyhow::bail!("pod {u} never showed up");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(made);
    Ok(lat)
}

fn storm(cg: &Cgroup, secs: u64) -> Result<Child> {
    Ok(Command::new("sh")
        .arg("-c")
        .arg(cg.wrap(&format!("stress-ng --vfork 2 -t {secs}")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

pub fn latency() -> Result<Value> {
    let agent = Agent::start(PORT)?;
    let mut idle = admission_latencies(200, 1)?;
    let cg = tracked("latency-storm")?;
    let mut s = storm(&cg, 30)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut busy = admission_latencies(200, 2)?;
    let _ = s.kill();
    let _ = Command::new("pkill")
        .args(["-f", "stress-ng --vfork"])
        .status();
    let _ = s.wait();
    let oom = oom_latency(&agent).unwrap_or_else(|e| json!({"error": e.to_string()}));
    Ok(json!({
        "what": "cgroup mkdir of a pod → PodAdmitted visible in /pods/<uid>/timeline (HTTP polling every 0.2 ms)",
        "idle_ms": {"p50": percentile(&mut idle, 0.5), "p99": percentile(&mut idle, 0.99)},
        "under_vfork_storm_ms": {"p50": percentile(&mut busy, 0.5), "p99": percentile(&mut busy, 0.99)},
        "oom_kill": oom,
        "targets": "p99 <= 20 ms under the storm; OOM kill visible <= 5 ms",
    }))
}

/// A memory hog as a container init in a v1 memory cgroup with a 32 MiB limit: time from its
/// death (waitpid) to its exit being visible over HTTP.
fn oom_latency(_agent: &Agent) -> Result<Value> {
    let u = uid(0, 0x00f0);
    let cid = format!("{:064x}", 0xfeed_u64);
    let rel = format!("kubepods/burstable/pod{u}/{cid}");
    let v2 = Cgroup::new(&rel)?;
    let mem = std::path::Path::new("/sys/fs/cgroup/memory").join(&rel);
    std::fs::create_dir_all(&mem).context("v1 memory cgroup")?;
    std::fs::write(mem.join("memory.limit_in_bytes"), "33554432")?;
    let me = std::env::current_exe()?;
    let script = format!(
        "echo $$ > {}/cgroup.procs && echo $$ > {}/cgroup.procs && exec {} worker memhog",
        v2.path.display(),
        mem.display(),
        me.display()
    );
    let status = Command::new("sh").arg("-c").arg(script).status()?;
    let died = Instant::now();
    let path = format!("/events?uid={u}");
    let seen = loop {
        let (_, body) = get(PORT, &path)?;
        if body.contains("SIGKILL") || body.contains("OOMKill") {
            break died.elapsed().as_secs_f64() * 1000.0;
        }
        if died.elapsed() > Duration::from_secs(5) {
            anyhow::bail!("OOM kill never showed up: {body}");
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = std::fs::remove_dir(&mem);
    drop(v2);
    Ok(json!({"visible_after_death_ms": seen, "exit_status": status.to_string()}))
}

/// Agent RSS with 1000 pods (2 containers each, one process run in each).
pub fn memory() -> Result<Value> {
    let agent = Agent::start(PORT)?;
    let base = agent.rss_kb();
    let mut cgs = Vec::new();
    for i in 0..1000u32 {
        let u = uid(i, 3);
        for c in 0..2u64 {
            let cid = format!("{:064x}", u64::from(i) * 2 + c + 1);
            cgs.push(Cgroup::new(&format!("kubepods/burstable/pod{u}/{cid}"))?);
        }
        let last = cgs.last().expect("just pushed");
        Command::new("sh")
            .arg("-c")
            .arg(last.wrap("/bin/true"))
            .status()?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let just_after = agent.rss_kb();
    // Steady state: the burst's queues drained and their memory returned (the agent trims the
    // heap every 10 s).
    std::thread::sleep(Duration::from_secs(11));
    let with_pods = agent.rss_kb();
    let (_, pods) = get(PORT, "/pods")?;
    let n = serde_json::from_str::<Value>(&pods)?["pods"]
        .as_array()
        .map_or(0, Vec::len);
    let mut times = Vec::new();
    let mut series = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let (_, body) = get(PORT, "/metrics")?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        series = body.lines().filter(|l| !l.starts_with('#')).count();
    }
    drop(cgs);
    Ok(json!({
        "pods": n,
        "rss_idle_kb": base,
        "rss_with_1000_pods_kb": with_pods,
        "rss_per_1000_pods_kb": with_pods.saturating_sub(base),
        "rss_per_1000_pods_just_after_burst_kb": just_after.saturating_sub(base),
        "metrics_series": series,
        "metrics_get_ms_median": median(&mut times),
        "targets": "<= 10 MB per 1000 pods; /metrics with ~10k series <= 20 ms",
    }))
}

/// The largest `/events` page (limit=100000, bounded by the agent at 4 MiB of events) asked
/// for again and again for 10 s of a vfork storm: how much the agent's RSS grows above what its
/// history holds, and whether the ring buffer lost anything meanwhile. The history is filled
/// first with 1500 pods of 3 containers whose command lines are as long as the capture keeps
/// (~15k events, ~5 MB: more than a page holds).
pub fn events_page() -> Result<Value> {
    let agent = Agent::start(PORT)?;
    let filler = format!("/bin/true {}", "x".repeat(600));
    let mut cgs = Vec::new();
    for i in 0..1500u32 {
        let u = uid(i, 4);
        for c in 0..3u64 {
            let cid = format!("{:064x}", u64::from(i) * 3 + c + 1);
            let cg = Cgroup::new(&format!("kubepods/burstable/pod{u}/{cid}"))?;
            Command::new("sh")
                .arg("-c")
                .arg(cg.wrap(&filler))
                .status()?;
            cgs.push(cg);
        }
    }
    // The burst's queues drained and trimmed (every 10 s): the baseline holds the history.
    std::thread::sleep(Duration::from_secs(11));
    let before = agent.rss_kb();
    let storm_cg = tracked("eventspage")?;
    let lost0 = agent.metric("podlife_ringbuf_events_lost_total");
    let events0 = agent.metric("podlife_ringbuf_events_total");
    let mut s = storm(&storm_cg, 30)?;
    std::thread::sleep(Duration::from_millis(500));
    let (stop, peak) = (
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before)),
    );
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), agent.pid());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering::Relaxed;
            while !stop.load(Relaxed) {
                peak.fetch_max(crate::util::rss_kb(pid), Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let (mut times, mut bytes, mut events) = (Vec::new(), 0usize, 0usize);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        let (status, body) = get(PORT, "/events?limit=100000")?;
        anyhow::ensure!(status == 200, "/events answered {status}");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
        events = serde_json::from_str::<Value>(&body)?["events"]
            .as_array()
            .map_or(0, Vec::len);
    }
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let lost = agent.metric("podlife_ringbuf_events_lost_total") - lost0;
    let ring_events = agent.metric("podlife_ringbuf_events_total") - events0;
    let _ = s.kill();
    let _ = Command::new("pkill")
        .args(["-f", "stress-ng --vfork"])
        .status();
    let _ = s.wait();
    drop(cgs);
    anyhow::ensure!(
        ring_events > 10_000.0,
        "the vfork storm did not run ({ring_events} ring events): is stress-ng installed?"
    );
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    Ok(json!({
        "workload": "GET /events?limit=100000 back to back for 10 s of stress-ng --vfork 2 in a pod cgroup",
        "gets": times.len(),
        "page_bytes": bytes,
        "page_events": events,
        "get_ms_median": median(&mut times),
        "rss_before_kb": before,
        "rss_peak_kb": peak,
        "rss_growth_kb": peak.saturating_sub(before),
        "ring_events_during": ring_events,
        "ring_events_per_s": (ring_events / secs).round(),
        "lost": lost,
        "targets": "RSS grows <= 16 MB, 0 lost",
    }))
}

/// /metrics latency is measured in `memory` (it needs the 1000 pods); this one measures the
/// engine's memory for 100k tracked processes, in-process.
pub fn processes() -> Result<Value> {
    use podlife_core::{BootstrapProcess, Engine, EngineConfig};
    let before = crate::util::rss_kb(std::process::id());
    let mut engine = Engine::new(EngineConfig::default());
    for p in 0..100u64 {
        let cid = format!("{:064x}", p + 1);
        engine.bootstrap_cgroup(
            50_000 + p,
            &format!(
                "/kubepods/burstable/pod{:08x}-0000-4000-8000-000000000000/{cid}",
                p
            ),
            0,
        );
    }
    for tgid in 0..100_000u32 {
        engine.bootstrap_process(BootstrapProcess {
            tgid: tgid + 10,
            ppid: 1,
            cgroup_id: 50_000 + u64::from(tgid % 100),
            comm: "worker".into(),
            argv: vec!["worker".into(), "--serve".into()],
            start_ns: 0,
        });
    }
    let after = crate::util::rss_kb(std::process::id());
    std::hint::black_box(&engine);
    Ok(json!({
        "tracked_processes": engine.stats().processes,
        "engine_rss_delta_kb": after.saturating_sub(before),
        "target": "<= 25 MB per 100k tracked processes",
    }))
}

/// Start to ready with 10k processes on the node.
pub fn startup() -> Result<Value> {
    let mut sleepers = Vec::new();
    for _ in 0..10_000 {
        sleepers.push(
            Command::new("sleep")
                .arg("600")
                .stdout(Stdio::null())
                .spawn()?,
        );
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let agent = Agent::start(PORT)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(agent);
    }
    for mut s in sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    Ok(json!({"processes": 10_000, "start_to_ready_ms": times, "target": "<= 1000 ms"}))
}

/// Per-program cost in the kernel (kernel.bpf_stats_enabled): ns per run for processes in a
/// tracked (pod) cgroup and for host processes outside pods, for the agent's own programs.
/// Run time and run count per program name, from the agent's own program fds (fdinfo), so
/// programs of other loaders on the node are not mixed in; names by id from bpftool.
struct ProgStats {
    pid: u32,
    names: std::collections::HashMap<u64, String>,
}

type Snapshot = std::collections::HashMap<String, (f64, f64)>;

impl ProgStats {
    fn new(agent: &Agent) -> Result<Self> {
        let out = Command::new("bpftool")
            .args(["prog", "show", "-j"])
            .output()
            .context("bpftool (apt-get install bpftool)")?;
        let progs: Value = serde_json::from_slice(&out.stdout)?;
        let names = progs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_string())))
            .collect();
        Ok(Self {
            pid: agent.pid(),
            names,
        })
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let pid = self.pid;
        let mut out = std::collections::HashMap::new();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
            if std::fs::read_link(fd.path())
                .map(|l| l.to_string_lossy().contains("bpf-prog"))
                .unwrap_or(false)
            {
                let info = std::fs::read_to_string(format!(
                    "/proc/{pid}/fdinfo/{}",
                    fd.file_name().to_string_lossy()
                ))?;
                let field = |k: &str| {
                    info.lines()
                        .find_map(|l| l.strip_prefix(k))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                let id = field("prog_id:") as u64;
                let name = self
                    .names
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("prog{id}"));
                out.insert(name, (field("run_time_ns:"), field("run_cnt:")));
            }
        }
        Ok(out)
    }

    /// ns per run and runs of every program that ran between two snapshots.
    fn per_run(a: &Snapshot, b: &Snapshot) -> Value {
        let mut m = serde_json::Map::new();
        for (k, (t1, c1)) in b {
            let (t0, c0) = a.get(k).copied().unwrap_or((0.0, 0.0));
            if c1 - c0 > 0.0 {
                m.insert(
                    k.clone(),
                    json!({"ns_per_run": ((t1 - t0) / (c1 - c0)).round(), "runs": c1 - c0}),
                );
            }
        }
        Value::Object(m)
    }
}

/// Per-program kernel cost in a workload run in a pod cgroup, then on the host.
fn bpfstats_of(
    pod: &Cgroup,
    host: &Cgroup,
    workload: &str,
    run: impl Fn(&Cgroup) -> Result<f64>,
) -> Result<Value> {
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    let agent = Agent::start(PORT)?;
    let stats = ProgStats::new(&agent)?;
    let s0 = stats.snapshot()?;
    run(pod)?;
    let s1 = stats.snapshot()?;
    run(host)?;
    let s2 = stats.snapshot()?;
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    Ok(json!({
        "workload": workload,
        "tracked_pod_cgroup": ProgStats::per_run(&s0, &s1),
        "host_outside_pods": ProgStats::per_run(&s1, &s2),
    }))
}

pub fn bpfstats() -> Result<Value> {
    bpfstats_of(
        &tracked("bpfstats")?,
        &Cgroup::new("bench-bpfstats-host")?,
        "2 workers fork+exec /bin/true for 2 s",
        |cg| workload::forkexec(cg, 2.0),
    )
}

/// The cost every process pays while the agent runs, pod or not: the syscall tracepoints it
/// attaches (execve argv, setns, unshare) send every syscall through the traced path.
pub fn syscalls(pairs: usize) -> Result<Value> {
    let host = Cgroup::new("bench-syscalls-host")?;
    let cg = tracked("syscalls")?;
    const N: u64 = 3_000_000;
    Ok(json!({
        "getppid_host_untracked": ab(pairs, || workload::syscalls(&host, "getppid", N))?,
        "write_devnull_host_untracked": ab(pairs, || workload::syscalls(&host, "write", N))?,
        "getppid_tracked": ab(pairs, || workload::syscalls(&cg, "getppid", N))?,
        "unit": "syscalls per second of one process, 3 M calls a run",
        "targets": "none yet: measured so that the syscall hooks' node-wide cost is known",
    }))
}

/// Connect/accept storms on loopback, on the host and in a pod cgroup: our own storm (every
/// connection accepted then aborted with a reset) and stress-ng's socket stressor (connections
/// that carry data), plus the network programs' cost per run in the storm.
pub fn sockets(pairs: usize) -> Result<Value> {
    let cg = tracked("sockets")?;
    let host = Cgroup::new("bench-sockets-host")?;
    let stress =
        |cg: &Cgroup| workload::stress_with(cg, "sock", "--sock-if lo --sock-port 23000", 3);
    Ok(json!({
        "accept_abort_host_untracked": ab(pairs, || workload::sockstorm(&host, 3.0))?,
        "accept_abort_tracked": ab(pairs, || workload::sockstorm(&cg, 3.0))?,
        "stress_ng_sock_host_untracked": ab(pairs, || stress(&host))?,
        "stress_ng_sock_tracked": ab(pairs, || stress(&cg))?,
        "bpfstats": bpfstats_of(
            &cg,
            &host,
            "2 workers connect/accept/abort on loopback for 2 s",
            |cg| workload::sockstorm(cg, 2.0),
        )?,
        "targets": "host <= 1% loss, in a pod cgroup <= 3%",
    }))
}
