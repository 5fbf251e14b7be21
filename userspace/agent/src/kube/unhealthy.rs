//! The kubelet's probe messages (`--kube-api`): after the kernel saw a kubelet network probe
//! of a pod fail, the pod's `Unhealthy` Events are read from the API server (one namespaced
//! list with a field selector on the pod's uid, never a cluster-wide watch) and handed to the
//! engine, which derives ProbeUnhealthy for each new message. The pipeline decides which pods
//! to ask for (pipeline/probe_lookups.rs: bounded queue, one lookup per pod per 10 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use podlife_core::UnhealthyEvent;
use prometheus::IntCounterVec;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::kube::watch::ErrorLog;
use crate::node::clock::WallClock;
use crate::pipeline::facts::Fact;
use crate::pipeline::probe_lookups::Lookup;
use crate::pipeline::shared::Shared;

/// The kubelet posts its Event right after the failed probe; the kernel is quicker.
const DELAY: Duration = Duration::from_secs(1);
/// One answer may take this long; the next lookup waits meanwhile.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Events read per lookup: a pod's Unhealthy Events are few (the kubelet aggregates repeats).
const LIMIT: u32 = 50;

/// The field selector of one pod's Unhealthy Events.
pub fn selector(uid: &str) -> String {
    format!("involvedObject.uid={uid},reason=Unhealthy")
}

/// The Unhealthy Events of pod `uid` as the engine takes them, their times moved to the
/// monotonic clock (`offset_ns` = wall − monotonic); one from before this boot is left out.
pub fn unhealthy_events(events: &[Event], uid: &str, offset_ns: i128) -> Vec<UnhealthyEvent> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Unhealthy"))
        .filter(|e| e.involved_object.uid.as_deref() == Some(uid))
        .filter_map(|e| {
            let series = e.series.as_ref();
            let wall = series
                .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
                .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))?
                .as_nanosecond();
            let count = series.and_then(|s| s.count).or(e.count).unwrap_or(1);
            Some(UnhealthyEvent {
                ts_ns: u64::try_from(wall - offset_ns).ok()?,
                field_path: e.involved_object.field_path.clone(),
                message: e.message.clone()?,
                count: u32::try_from(count).unwrap_or(1),
            })
        })
        .collect()
}

/// Hand one pod's Unhealthy Events to the pipeline (times on the monotonic clock as of now).
fn apply(shared: &Shared, uid: &str, events: &[Event]) {
    let found = unhealthy_events(events, uid, WallClock::measure().offset_ns);
    if found.is_empty() {
        return;
    }
    let fact = Fact::Unhealthy {
        uid: uid.to_string(),
        events: found,
    };
    if !shared.facts.send(fact) {
        tracing::debug!("the facts queue is full: a pod's probe messages were dropped");
    }
}

fn hint(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            ": the service account may not list events: apply deploy/components/kube-api (list on events)"
        }
        kube::Error::Api(s) if s.code == 401 => {
            ": the API server refused the credentials"
        }
        _ => "",
    }
}

/// Answer lookups one at a time until the queue closes.
pub async fn run(
    client: Client,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Lookup>,
    results: IntCounterVec,
) {
    let mut errors = ErrorLog::new(Duration::from_secs(60));
    info!("kubelet probe messages: a pod's Unhealthy Events are read after a failed network probe (--kube-api)");
    while let Some(l) = rx.recv().await {
        tokio::time::sleep_until(l.queued + DELAY).await;
        let api: Api<Event> = Api::namespaced(client.clone(), &l.namespace);
        let params = ListParams::default().fields(&selector(&l.uid)).limit(LIMIT);
        let error = match tokio::time::timeout(TIMEOUT, api.list(&params)).await {
            Ok(Ok(list)) => {
                results.with_label_values(&["ok"]).inc();
                if let Some(n) = errors.recovered() {
                    info!("kubelet probe messages: the API server answers again after {n} errors");
                }
                apply(&shared, &l.uid, &list.items);
                continue;
            }
            Ok(Err(e)) => format!("{e}{}", hint(&e)),
            Err(_) => format!("no answer within {}s", TIMEOUT.as_secs()),
        };
        results.with_label_values(&["failed"]).inc();
        if let Some(n) = errors.error(Instant::now()) {
            warn!(namespace = %l.namespace, uid = %l.uid, "kubelet probe messages: listing the pod's Unhealthy Events failed ({n} in a row): {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: serde_json::Value) -> Event {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unhealthy_events_of_the_pod_on_the_monotonic_clock() {
        let uid = "8f3c2a1e-1111-4a4a-9b9b-000000000001";
        let events = [
            event(serde_json::json!({
                "metadata": {"name": "web.1", "namespace": "shop"},
                "involvedObject": {"kind": "Pod", "uid": uid, "fieldPath": "spec.containers{app}"},
                "reason": "Unhealthy",
                "message": "Readiness probe failed: HTTP probe failed with statuscode: 503",
                "count": 3,
                "lastTimestamp": "2026-12-07T12:00:10Z",
                "firstTimestamp": "2026-12-07T12:00:00Z",
            })),
            // Another pod's, and another reason: a server that ignored the selector.
            event(serde_json::json!({
                "metadata": {"name": "x"}, "involvedObject": {"uid": "other"},
                "reason": "Unhealthy", "message": "m", "lastTimestamp": "2026-12-07T12:00:10Z",
            })),
            event(serde_json::json!({
                "metadata": {"name": "y"}, "involvedObject": {"uid": uid},
                "reason": "Killing", "message": "m", "lastTimestamp": "2026-12-07T12:00:10Z",
            })),
            // The newer API's series, with micro time.
            event(serde_json::json!({
                "metadata": {"name": "web.2"}, "involvedObject": {"uid": uid},
                "reason": "Unhealthy", "message": "Liveness probe failed: timeout",
                "eventTime": "2026-12-07T12:00:20.500000Z",
                "series": {"count": 7, "lastObservedTime": "2026-12-07T12:00:30.250000Z"},
            })),
            // No time: left out.
            event(serde_json::json!({
                "metadata": {"name": "web.3"}, "involvedObject": {"uid": uid},
                "reason": "Unhealthy", "message": "m",
            })),
        ];
        let at_12 = 1_796_644_800_000_000_000i128; // 2026-12-07T12:00:00Z
        let offset = at_12 - 1_000_000_000_000; // 12:00:00 is 1000 s of monotonic time
        let got = unhealthy_events(&events, uid, offset);
        assert_eq!(
            got,
            [
                UnhealthyEvent {
                    ts_ns: 1_010_000_000_000,
                    field_path: Some("spec.containers{app}".into()),
                    message: "Readiness probe failed: HTTP probe failed with statuscode: 503"
                        .into(),
                    count: 3,
                },
                UnhealthyEvent {
                    ts_ns: 1_030_250_000_000,
                    field_path: None,
                    message: "Liveness probe failed: timeout".into(),
                    count: 7,
                },
            ]
        );
        // From before this boot: nothing.
        assert!(unhealthy_events(&events, uid, at_12 + 3_600_000_000_000).is_empty());
        assert_eq!(
            selector(uid),
            format!("involvedObject.uid={uid},reason=Unhealthy")
        );
    }
}
