//! `--kube-events`: kernel-only findings (a child's OOM kill, SIGTERM dropped by PID 1, a grace
//! overrun, a probe killed at its timeout, a crashed child) become Kubernetes Events on the Pod,
//! where `kubectl describe pod` and the cluster's event exporters see them. Off by default.
//!
//! The writer follows the live events like any stream client: it never holds the agent's lock
//! while it talks to the API server, and a writer that falls behind loses findings (counted as
//! `lagged`), never slows the pipeline. Findings are aggregated into Event series and
//! rate-limited per pod and per node (recorder.rs).

pub mod finding;
pub mod recorder;

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prometheus::IntCounterVec;
use tokio::sync::broadcast;

use crate::pipeline::shared::Published;
use tracing::{info, warn};

use recorder::{Limits, Recorder, Write};

/// One write may take this long; the next finding waits meanwhile (and may lag).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Series counts are written from this tick.
const TICK: Duration = Duration::from_secs(5);

pub struct Counters {
    pub writes: IntCounterVec,
    pub dropped: IntCounterVec,
}

pub async fn run(
    client: Client,
    node: String,
    mut live: broadcast::Receiver<Published>,
    counters: Counters,
) {
    let start = Instant::now();
    let ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut rec = Recorder::new(Limits::default(), &node, ms());
    let mut seen = rec.counts;
    let mut tick = tokio::time::interval(TICK);
    let mut failing = false;
    info!(
        node,
        "Kubernetes Events on pods for kernel-only findings (--kube-events)"
    );
    loop {
        let writes = tokio::select! {
            r = live.recv() => match r {
                Ok(ev) => finding::finding(&ev.event)
                    .and_then(|f| rec.observe(f, ms()))
                    .into_iter()
                    .collect(),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    counters.dropped.with_label_values(&["lagged"]).inc_by(n);
                    Vec::new()
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => rec.due(ms()),
        };
        for w in writes {
            match write(&client, &w).await {
                Ok(result) => {
                    counters.writes.with_label_values(&[result]).inc();
                    if failing {
                        info!("Kubernetes Events: the API server takes them again");
                        failing = false;
                    }
                }
                Err(e) => {
                    counters.writes.with_label_values(&["failed"]).inc();
                    // Once per failure streak: a down API server must not flood the log.
                    if !failing {
                        warn!("Kubernetes Events: {e} (needs create and patch on events.k8s.io events: deploy/components/kube-events)");
                        failing = true;
                    }
                }
            }
        }
        let now = rec.counts;
        counters
            .writes
            .with_label_values(&["aggregated"])
            .inc_by(now.aggregated - seen.aggregated);
        counters
            .dropped
            .with_label_values(&["rate_limited"])
            .inc_by(now.rate_limited - seen.rate_limited);
        counters
            .dropped
            .with_label_values(&["series_evicted"])
            .inc_by(now.series_evicted - seen.series_evicted);
        seen = now;
    }
}

async fn write(client: &Client, w: &Write) -> anyhow::Result<&'static str> {
    let call = async {
        match w {
            Write::Create { namespace, event } => {
                let api: Api<Event> = Api::namespaced(client.clone(), namespace);
                let typed: Event = serde_json::from_value(event.clone())?;
                api.create(&PostParams::default(), &typed).await?;
                anyhow::Ok("created")
            }
            Write::Patch {
                namespace,
                name,
                body,
            } => {
                let api: Api<Event> = Api::namespaced(client.clone(), namespace);
                api.patch(name, &PatchParams::default(), &Patch::Merge(body))
                    .await?;
                anyhow::Ok("patched")
            }
        }
    };
    tokio::time::timeout(WRITE_TIMEOUT, call)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {WRITE_TIMEOUT:?}"))?
}
