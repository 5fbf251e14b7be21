//! The agent's start-up steps: one log line per step, fail fast with a hint when the node
//! lacks what podlife needs. Everything before the threads and tasks start.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use aya::maps::{MapData, RingBuf};
use podlife_core::redact::Redactor;
use podlife_core::{CgroupMode, Engine, EngineConfig};
use tracing::{info, warn};

use crate::capture::loader::{Capture, LoadOptions};
use crate::config::Args;
use crate::node::cgroupfs::CgroupMounts;
use crate::node::clock::WallClock;
use crate::pipeline::metrics::Metrics;
use crate::pipeline::shared::{Inner, Shared};
use crate::store::{Limits, Store};
use crate::{pipeline::enrich, serve::http};

/// Flags that only make sense together, checked before anything is touched.
pub fn check_flags(args: &Args) -> Result<()> {
    if args.kube_events
        && (args.kube_api == crate::config::KubeApi::Off || args.node_name.is_none())
    {
        bail!("--kube-events needs --kube-api (in-cluster or kubeconfig) and the node name (--node-name or NODE_NAME): Events are written on pods through the API server, by this node's reporting instance");
    }
    Ok(())
}

pub fn preflight() -> Result<()> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("/sys/kernel/btf/vmlinux is missing: podlife needs a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y, kernel >= 5.8); in a DaemonSet mount /sys/kernel/btf read-only");
    }
    info!("BTF found at /sys/kernel/btf/vmlinux");
    Ok(())
}

/// The cgroup hierarchies the agent attributes with, said once.
pub fn discover_mounts() -> CgroupMounts {
    let mounts = CgroupMounts::discover();
    match (&mounts.v2, &mounts.v1_memory) {
        (Some(v2), _) => info!("cgroup v2 at {}", v2.display()),
        (None, Some(mem)) => warn!(
            "no cgroup v2 mount: attribution falls back on process trees; memory cgroup v1 at {}",
            mem.display()
        ),
        (None, None) => warn!("no cgroup hierarchy found: pods cannot be attributed"),
    }
    mounts
}

/// Listen first: /healthz answers (and /readyz says not yet) while the programs attach and a
/// big store loads, so a liveness probe does not kill an agent that is still starting.
pub async fn listen(
    args: &Args,
    tls: bool,
    access: &http::Access,
) -> Result<tokio::net::TcpListener> {
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let scheme = if tls { "https" } else { "http" };
    info!("listening on {scheme}://{}", args.listen);
    if access.has_token() {
        info!("pods, timelines and events need the bearer token of --api-token-file");
    } else if access.is_open() {
        warn!("--api-open: pods, timelines and events (every pod's command lines) are served to anyone who can reach {} without a token", args.listen);
    } else {
        info!("pods, timelines and events are served to loopback peers only (--api-token-file for remote clients); /metrics, /healthz, /readyz to all");
    }
    Ok(tcp)
}

/// What the start-up API refused counts with the rest.
pub fn count_start_refusals(refused: &http::limits::Refused, shared: &Shared) {
    for (start, now) in [
        (&refused.connections, &shared.http_refused.connections),
        (&refused.requests, &shared.http_refused.requests),
    ] {
        now.fetch_add(start.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Attach the programs, restore the stored history, seed what already runs: everything before
/// the tasks start. Blocking (file and BPF syscalls): run off the async threads.
#[allow(clippy::type_complexity)]
pub fn prepare(
    args: Args,
    mounts: &CgroupMounts,
) -> Result<(Args, Capture, RingBuf<MapData>, Arc<Shared>)> {
    let opts = LoadOptions {
        ringbuf_bytes: args.ringbuf_bytes,
        kubelet_comm: args.kubelet_comm.clone(),
        ..Default::default()
    };
    let mut capture =
        Capture::load(&opts, mounts.event_root()).context("attaching eBPF programs")?;
    let keep: Vec<&str> = args.metrics_pod_labels.iter().map(String::as_str).collect();
    if let Some(bad) = keep
        .iter()
        .find(|l| !crate::pipeline::metrics::POD_LABELS.contains(l))
    {
        bail!("--metrics-pod-labels: {bad:?} is not one of namespace, pod, uid, container");
    }
    let metrics = Metrics::with_pod_labels(env!("CARGO_PKG_VERSION"), &keep);
    for f in &capture.features {
        metrics
            .feature_enabled
            .with_label_values(&[f.name])
            .set(i64::from(f.enabled));
    }
    let clock = WallClock::measure();
    let limits = Limits {
        max_bytes: args.store_max_bytes,
        // Bounded by the flag's range (config::MAX_AGE_HOURS); saturate all the same.
        max_age_ns: args.store_max_age_hours.saturating_mul(3_600_000_000_000),
        load_bytes: args.store_load_bytes,
        pending_bytes: 8 << 20,
    };
    let mut engine = Engine::new(EngineConfig {
        node_name: args.node_name.clone(),
        // Timelines are served from `History`: the engine keeps no second copy per pod.
        max_events_per_pod: 0,
        ..EngineConfig::default()
    });
    // The programs report one hierarchy: cgroup v2 where it exists, else v1 memory.
    engine.set_cgroup_mode(if mounts.v2.is_some() {
        CgroupMode::V2
    } else {
        CgroupMode::V1
    });
    let mut inner = Inner::new(
        engine,
        metrics,
        clock,
        None,
        args.node_name.clone(),
        args.runtime_state.clone(),
        mounts.clone(),
    );
    inner.redactor = Redactor::new(args.redact_pattern.clone());
    // Stored history streams into the served history: never the whole store in memory.
    let mut restore = enrich::Restore::default();
    let now_wall = WallClock::now_wall_ns();
    let opened = Store::open(&args.state_dir, limits, now_wall, |ev| {
        restore.event(&mut inner.history, ev)
    });
    match opened {
        Ok((store, loaded)) => {
            inner.store = Some(
                crate::store::writer::StoreSink::spawn(store, limits.pending_bytes)
                    .context("starting the history store's writer thread")?,
            );
            inner
                .metrics
                .store_skipped_lines
                .inc_by(loaded.skipped_lines as u64);
            inner
                .metrics
                .store_unreadable_segments
                .inc_by(loaded.unreadable_segments as u64);
            restore.finish(&mut inner, &loaded, now_wall);
            info!(
                events = loaded.events,
                skipped_lines = loaded.skipped_lines,
                unreadable_segments = loaded.unreadable_segments,
                unloaded_bytes = loaded.unloaded_bytes,
                "history restored from {}",
                args.state_dir.display()
            );
        }
        Err(e) => warn!("{e}; timelines will not survive a restart"),
    }
    // New event ids start at the wall clock in µs: increasing across restarts, even without a
    // store. Only after the restore: stored events keep their ids (a client's `after=` cursor
    // stays valid across the restart), which a floor set first would renumber.
    inner
        .history
        .start_ids_at(u64::try_from(WallClock::now_wall_ns() / 1000).unwrap_or(0));
    let (cgroups, procs) = crate::pipeline::seed::track_existing(&mut capture, mounts);
    let now = WallClock::now_mono_ns();
    enrich::bootstrap_engine(&mut inner, &cgroups, &procs, now);
    info!(
        pods_cgroups = cgroups.len(),
        processes = procs.len(),
        "bootstrap done"
    );
    let ring = capture.ring.take().context("ring buffer already taken")?;
    let shared = Shared::new(inner);
    Ok((args, capture, ring, shared))
}
