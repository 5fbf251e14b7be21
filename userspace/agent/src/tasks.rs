//! The agent's long-running parts besides the API: the reader and pipeline threads, the CRI,
//! Kubernetes and OTLP tasks, and the orderly stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tracing::{info, warn};

use crate::capture::loader::Capture;
use crate::capture::reader;
use crate::config::Args;
use crate::node::cgroupfs::CgroupMounts;
use crate::node::cri::CriAsk;
use crate::pipeline::shared::Shared;
use crate::pipeline::Pipeline;

/// CRI metadata: asked for off the reader's path, one container at a time. The sender is the
/// pipeline's.
pub fn spawn_cri(args: &Args, shared: &Arc<Shared>) -> Result<tokio::sync::mpsc::Sender<CriAsk>> {
    let (cri_tx, mut cri_rx) = tokio::sync::mpsc::channel::<CriAsk>(1024);
    match crate::node::cri::find_socket(args.cri_socket.as_deref()) {
        Some(socket) => {
            info!("CRI metadata from {}", socket.display());
            let mut cri = crate::node::cri::Cri::new(socket).context("CRI endpoint")?;
            let s = shared.clone();
            tokio::spawn(async move {
                while let Some(ask) = cri_rx.recv().await {
                    crate::pipeline::cri_apply::answer(&mut cri, &s, ask).await;
                }
            });
        }
        None => info!("no CRI socket found (--cri-socket): grace periods stay unknown"),
    }
    Ok(cri_tx)
}

/// The API watch (names, owners, deletions), the kubelet's probe messages and, with
/// --kube-events, the Events writer.
pub async fn spawn_kube(args: &Args, shared: &Arc<Shared>) {
    match args.kube_api {
        crate::config::KubeApi::Off => {
            info!(
                "Kubernetes API watch off (--kube-api): owners and deletion requests stay unknown"
            )
        }
        mode => {
            let options = crate::kube::watch::WatchOptions {
                mode,
                kubeconfig: args.kubeconfig.clone(),
                node: args.node_name.clone(),
                max_backoff: Duration::from_secs(60),
            };
            if args.kube_events {
                let counters = {
                    let inner = shared.lock();
                    crate::kube::events::Counters {
                        writes: inner.metrics.kube_events.clone(),
                        dropped: inner.metrics.kube_events_dropped.clone(),
                    }
                };
                let live = shared.live.subscribe();
                let node = args.node_name.clone().unwrap_or_default();
                match crate::kube::watch::client(&options).await {
                    Ok(client) => {
                        tokio::spawn(crate::kube::events::run(client, node, live, counters));
                    }
                    Err(e) => warn!("--kube-events off: {e}"),
                }
            }
            spawn_probe_lookups(&options, shared).await;
            tokio::spawn(crate::kube::watch::run(shared.clone(), options));
        }
    }
}

/// The kubelet's probe messages: the pipeline queues pods whose network probes failed, a task
/// reads their Unhealthy Events.
async fn spawn_probe_lookups(options: &crate::kube::watch::WatchOptions, shared: &Arc<Shared>) {
    use crate::pipeline::probe_lookups::{ProbeLookups, QUEUE};
    let client = match crate::kube::watch::client(options).await {
        Ok(c) => c,
        Err(e) => {
            warn!("kubelet probe messages off: {e}");
            return;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let results = {
        let mut inner = shared.lock();
        inner.probe_lookups = Some(ProbeLookups::new(tx));
        inner.metrics.probe_lookups.clone()
    };
    tokio::spawn(crate::kube::unhealthy::run(
        client,
        shared.clone(),
        rx,
        results,
    ));
}

/// The OTLP log export, with --otlp-endpoint.
pub fn spawn_otlp(args: &Args, shared: &Arc<Shared>) {
    if let Some(endpoint) = args.otlp_endpoint.clone() {
        let counters = {
            let inner = shared.lock();
            crate::serve::otlp::Counters {
                records: inner.metrics.otlp_records.clone(),
                failures: inner.metrics.otlp_failures.clone(),
            }
        };
        tokio::spawn(crate::serve::otlp::run(
            shared.clone(),
            endpoint,
            args.node_name.clone(),
            args.state_dir.join("otlp.cursor"),
            counters,
        ));
    }
}

/// The reader and pipeline threads.
pub struct Threads {
    reader: JoinHandle<()>,
    pipeline: JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Threads {
    pub fn start(
        args: &Args,
        ring: RingBuf<MapData>,
        capture: Capture,
        mounts: CgroupMounts,
        shared: &Arc<Shared>,
        cri_tx: tokio::sync::mpsc::Sender<CriAsk>,
    ) -> Result<Self> {
        // The reader (its own thread, no lock) feeds the pipeline (its own thread) through a
        // bounded channel: HTTP load and the disk can slow neither.
        let stop = Arc::new(AtomicBool::new(false));
        let (batches_tx, batches) = std::sync::mpsc::sync_channel(reader::CHANNEL_BATCHES);
        let pause = Duration::from_millis(args.drain_ms.max(1));
        let reader = reader::spawn(
            ring,
            pause,
            reader::idle_pause_max(pause, args.ringbuf_bytes),
            batches_tx,
            shared.progress.clone(),
            stop.clone(),
        )
        .context("starting the ring-buffer reader thread")?;
        let pipeline = Pipeline {
            shared: shared.clone(),
            capture,
            mounts,
            batches,
            cri: cri_tx,
            drain: pause,
            urgent_due: 0,
        }
        .spawn()
        .context("starting the pipeline thread")?;
        Ok(Self {
            reader,
            pipeline,
            stop,
        })
    }

    /// The reader stops, the pipeline drains the channel, releases what the engine holds back
    /// and ends; then the store writes what is queued. A hung disk cannot hold the exit.
    pub async fn stop(self, shared: &Arc<Shared>) {
        self.stop.store(true, Ordering::Relaxed);
        let s = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            let _ = self.reader.join();
            let _ = self.pipeline.join();
            match s.lock().store.take() {
                Some(sink) => sink.close(Duration::from_secs(5)),
                None => true,
            }
        });
        match tokio::time::timeout(Duration::from_secs(10), done).await {
            Ok(Ok(true)) => {}
            _ => warn!("history store: the last events may not have reached the disk"),
        }
    }
}

/// First SIGTERM/SIGINT drains; a second one aborts at once.
pub async fn shutdown_signal() {
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
