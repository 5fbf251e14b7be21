//! The agent's start-up sequence and its tasks: one log line per step, fail fast with a hint
//! when the node lacks what podlife needs, readiness after attach + bootstrap + first read.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aya::maps::{MapData, RingBuf};
use podlife_common::{Counter, TRACK_BOOTSTRAP};
use podlife_core::redact::Redactor;
use podlife_core::{CgroupMode, Engine, EngineConfig};
use tracing::{info, warn};

use crate::cgroupfs::CgroupMounts;
use crate::clock::WallClock;
use crate::config::Args;
use crate::kernel::convert::to_kernel_event;
use crate::kernel::loader::{Capture, LoadOptions};
use crate::metrics::Metrics;
use crate::shared::{Inner, Shared};
use crate::store::{Limits, Store};
use crate::{bootstrap, enrich, http, reader};

fn preflight() -> Result<()> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("/sys/kernel/btf/vmlinux is missing: podlife needs a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y, kernel >= 5.8); in a DaemonSet mount /sys/kernel/btf read-only");
    }
    info!("BTF found at /sys/kernel/btf/vmlinux");
    Ok(())
}

/// Seed the kernel-side filter with what already runs: pod cgroups and runtime shim trees.
pub fn track_existing(
    capture: &mut Capture,
    mounts: &CgroupMounts,
) -> (Vec<bootstrap::FoundCgroup>, Vec<bootstrap::FoundProcess>) {
    let cgroups = mounts
        .v2
        .as_deref()
        .map(bootstrap::scan_cgroups)
        .unwrap_or_default();
    for c in &cgroups {
        if let Err(e) = capture.track_cgroup(c.id) {
            warn!("cannot track cgroup {}: {e}", c.path);
        }
    }
    let mut procs = bootstrap::scan_processes(Path::new("/proc"), mounts.v2.as_deref());
    if let Some(v2) = mounts.v2.as_deref() {
        bootstrap::place_by_cgroupfs(&mut procs, &cgroups, v2);
    }
    let root = bootstrap::node_root(&procs);
    bootstrap::read_pod_argv(&mut procs, Path::new("/proc"), |p| {
        p.cgroup_path
            .as_deref()
            .is_some_and(|c| podlife_core::cgroup_path::parse_under(c, root.as_deref()).is_some())
    });
    for p in enrich::runtime_trees(&procs) {
        if let Err(e) = capture.track_tgid(p, TRACK_BOOTSTRAP) {
            warn!("cannot track pid {p}: {e}");
        }
    }
    (cgroups, procs)
}

pub async fn run(args: Args) -> Result<()> {
    info!(version = env!("CARGO_PKG_VERSION"), "podlife starting");
    let access = http::Access::from_flags(args.api_token_file.as_deref(), args.api_open)?;
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some(http::tls::Tls::load(cert, key)?),
        _ => None,
    };
    if args.kube_events
        && (args.kube_api == crate::config::KubeApi::Off || args.node_name.is_none())
    {
        anyhow::bail!("--kube-events needs --kube-api (in-cluster or kubeconfig) and the node name (--node-name or NODE_NAME): Events are written on pods through the API server, by this node's reporting instance");
    }
    preflight()?;
    let mounts = CgroupMounts::discover();
    match (&mounts.v2, &mounts.v1_memory) {
        (Some(v2), _) => info!("cgroup v2 at {}", v2.display()),
        (None, Some(mem)) => warn!(
            "no cgroup v2 mount: attribution falls back on process trees; memory cgroup v1 at {}",
            mem.display()
        ),
        (None, None) => warn!("no cgroup hierarchy found: pods cannot be attributed"),
    }
    // Listen first: /healthz answers (and /readyz says not yet) while the programs attach and
    // a big store loads, so a liveness probe does not kill an agent that is still starting.
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!("listening on {scheme}://{}", args.listen);
    if access.has_token() {
        info!("pods, timelines and events need the bearer token of --api-token-file");
    } else if access.is_open() {
        warn!("--api-open: pods, timelines and events (every pod's command lines) are served to anyone who can reach {} without a token", args.listen);
    } else {
        info!("pods, timelines and events are served to loopback peers only (--api-token-file for remote clients); /metrics, /healthz, /readyz to all");
    }
    match tls {
        Some(tls) => run_on(http::tls::TlsListener::new(tcp, tls)?, args, access, mounts).await,
        None => run_on(tcp, args, access, mounts).await,
    }
}

/// Attach, load the store and bootstrap (off the async threads, the start-up API answering
/// meanwhile), then run the tasks and the API on `listener`.
async fn run_on<L>(
    mut listener: L,
    args: Args,
    access: http::Access,
    mounts: CgroupMounts,
) -> Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let refused = std::sync::Arc::new(http::limits::Refused::default());
    let start_mounts = mounts.clone();
    let (args, mut capture, ring, shared) = http::while_starting(&mut listener, &refused, async {
        tokio::task::spawn_blocking(move || prepare(args, &start_mounts))
            .await
            .context("start-up task")?
    })
    .await?;
    // What the start-up API refused counts with the rest.
    for (start, now) in [
        (&refused.connections, &shared.http_refused.connections),
        (&refused.requests, &shared.http_refused.requests),
    ] {
        now.fetch_add(start.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    // CRI metadata: asked for off the reader's path, one container at a time.
    let (cri_tx, mut cri_rx) = tokio::sync::mpsc::channel::<crate::cri::CriAsk>(1024);
    match crate::cri::find_socket(args.cri_socket.as_deref()) {
        Some(socket) => {
            info!("CRI metadata from {}", socket.display());
            let mut cri = crate::cri::Cri::new(socket).context("CRI endpoint")?;
            let s = shared.clone();
            tokio::spawn(async move {
                while let Some(ask) = cri_rx.recv().await {
                    crate::cri_apply::answer(&mut cri, &s, ask).await;
                }
            });
        }
        None => info!("no CRI socket found (--cri-socket): grace periods stay unknown"),
    }

    match args.kube_api {
        crate::config::KubeApi::Off => {
            info!(
                "Kubernetes API watch off (--kube-api): owners and deletion requests stay unknown"
            )
        }
        mode => {
            if args.kube_events {
                let options = crate::kube_watch::WatchOptions {
                    mode,
                    kubeconfig: args.kubeconfig.clone(),
                    node: args.node_name.clone(),
                    max_backoff: Duration::from_secs(60),
                };
                let counters = {
                    let inner = shared.lock();
                    crate::kube_events::Counters {
                        writes: inner.metrics.kube_events.clone(),
                        dropped: inner.metrics.kube_events_dropped.clone(),
                    }
                };
                let live = shared.live.subscribe();
                let node = args.node_name.clone().unwrap_or_default();
                match crate::kube_watch::client(&options).await {
                    Ok(client) => {
                        tokio::spawn(crate::kube_events::run(client, node, live, counters));
                    }
                    Err(e) => warn!("--kube-events off: {e}"),
                }
            }
            tokio::spawn(crate::kube_watch::run(
                shared.clone(),
                crate::kube_watch::WatchOptions {
                    mode,
                    kubeconfig: args.kubeconfig.clone(),
                    node: args.node_name.clone(),
                    max_backoff: Duration::from_secs(60),
                },
            ));
        }
    }

    if let Some(endpoint) = args.otlp_endpoint.clone() {
        let counters = {
            let inner = shared.lock();
            crate::otlp::Counters {
                records: inner.metrics.otlp_records.clone(),
                failures: inner.metrics.otlp_failures.clone(),
            }
        };
        tokio::spawn(crate::otlp::run(
            shared.clone(),
            endpoint,
            args.node_name.clone(),
            args.state_dir.join("otlp.cursor"),
            counters,
        ));
    }

    // Reader: decode, convert, apply. Ready after the first batch.
    let s = shared.clone();
    let max_pause = Duration::from_millis(args.drain_max_ms.max(1));
    tokio::spawn(async move {
        let min_pause = Duration::from_millis(args.drain_min_ms.max(1));
        let result = reader::run(ring, min_pause, max_pause, |batch| {
            s.progress.reader_loop(WallClock::now_mono_ns());
            let mut inner = s.lock();
            for r in batch {
                inner.metrics.ringbuf_events.inc();
                match r {
                    Ok(rec) => inner.on_kernel_event(to_kernel_event(&rec)),
                    Err(_) => inner.metrics.decode_errors.inc(),
                }
            }
            // Release what the engine's reorder window holds back, now rather than at the tick.
            let released = inner.engine.expire(WallClock::now_mono_ns());
            inner.publish(released);
            let out = std::mem::take(&mut inner.outbox);
            let ask = std::mem::take(&mut inner.cri_queue);
            drop(inner);
            for ev in out {
                let _ = s.live.send(ev);
            }
            for id in ask {
                let _ = cri_tx.try_send(id);
            }
            if !s.ready.swap(true, Ordering::AcqRel) {
                s.lock().metrics.ready.set(1);
                info!("ready: first ring-buffer read done");
            }
        })
        .await;
        if let Err(e) = result {
            tracing::error!("ring-buffer reader stopped: {e}");
        }
    });

    // Ticker: time-based rules, lost-event counter, store flush.
    let s = shared.clone();
    let rescan_mounts = mounts.clone();
    tokio::spawn(async move {
        let mut lost_seen = 0u64;
        let mut last_rescan: Option<std::time::Instant> = None;
        let mut rescan_due = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            s.progress.ticker_loop(WallClock::now_mono_ns());
            let lost = capture.counter(Counter::RingbufLost);
            // Lost records may include the mkdir of a pod: find what was missed in cgroupfs
            // and /proc again (at most every 5 s), as at start.
            rescan_due |= lost > lost_seen;
            let found =
                if rescan_due && last_rescan.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    rescan_due = false;
                    last_rescan = Some(std::time::Instant::now());
                    Some(track_existing(&mut capture, &rescan_mounts))
                } else {
                    None
                };
            let mut inner = s.lock();
            if let Some((cgroups, procs)) = found {
                enrich::bootstrap_engine(&mut inner, &cgroups, &procs, WallClock::now_mono_ns());
            }
            let new_loss = lost.saturating_sub(lost_seen);
            if new_loss > 0 {
                inner.metrics.ringbuf_lost.inc_by(new_loss);
                warn!(
                    lost = new_loss,
                    "ring buffer full: events lost (raise --ringbuf-bytes)"
                );
                lost_seen = lost;
            }
            inner.loss_tick(new_loss, WallClock::now_mono_ns());
            inner.tick(WallClock::now_mono_ns());
            let out = std::mem::take(&mut inner.outbox);
            let addrs = std::mem::take(&mut inner.pod_addr_changes);
            drop(inner);
            for (addr, add) in addrs {
                let r = if add {
                    capture.add_pod_address(addr)
                } else {
                    capture.remove_pod_address(addr)
                };
                if let Err(e) = r {
                    warn!(%addr, add, "pod address not updated in the reset filter: {e}");
                }
            }
            for ev in out {
                let _ = s.live.send(ev);
            }
        }
    });

    http::serve_on(listener, shared.clone(), access, shutdown_signal()).await?;
    info!("shutting down: flushing history");
    let mut inner = shared.lock();
    let rest = inner.engine.flush();
    inner.publish(rest);
    inner.finish_loss();
    inner.tick(WallClock::now_mono_ns());
    Ok(())
}

/// First SIGTERM/SIGINT drains; a second one aborts at once.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("signal received: draining (send it again to abort)");
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        std::process::exit(130);
    });
}

/// Attach the programs, restore the stored history, seed what already runs: everything before
/// the tasks start. Blocking (file and BPF syscalls): run off the async threads.
#[allow(clippy::type_complexity)]
fn prepare(
    args: Args,
    mounts: &CgroupMounts,
) -> Result<(Args, Capture, RingBuf<MapData>, std::sync::Arc<Shared>)> {
    let opts = LoadOptions {
        ringbuf_bytes: args.ringbuf_bytes,
        ..Default::default()
    };
    let mut capture =
        Capture::load(&opts, mounts.event_root()).context("attaching eBPF programs")?;
    let keep: Vec<&str> = args.metrics_pod_labels.iter().map(String::as_str).collect();
    if let Some(bad) = keep
        .iter()
        .find(|l| !crate::metrics::POD_LABELS.contains(l))
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
            inner.store = Some(store);
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
    let (cgroups, procs) = track_existing(&mut capture, mounts);
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
