//! The kubelet's own message for a failed network probe (ProbeUnhealthy, source `api`): the
//! agent reads the pod's `Unhealthy` Events from the API server after the kernel saw a probe
//! fail, because the kernel sees the connection but not, say, the HTTP 503 on it. One event per
//! new message of a container; the same message again (its Event's count going up) adds nothing.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use super::*;
use crate::probe_message::{container_of_field_path, split_probe, truncate, MAX_MESSAGE_BYTES};

/// Distinct messages remembered per container (and per pod, for those naming no container);
/// a new message beyond them derives nothing and is counted (`evictions.probe_messages`).
pub const MAX_PROBE_MESSAGES: usize = 16;

/// API time has whole seconds: a container created in the Event's second may be its subject.
const API_RESOLUTION_NS: u64 = 1_000_000_000;

/// One `Unhealthy` Event of the API server about a pod, as the agent read it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnhealthyEvent {
    /// Its lastTimestamp (else eventTime) on the monotonic clock (the agent converts it).
    pub ts_ns: u64,
    /// `involvedObject.fieldPath`: `spec.containers{app}`.
    pub field_path: Option<String>,
    pub message: String,
    /// The Event's count: how often the kubelet saw this message.
    pub count: u32,
}

/// The messages a container's (or a pod's) probes were reported with; boxed, as most
/// containers have none (one pointer in each).
#[derive(Debug, Clone, Default)]
pub struct ProbeMessages(Option<Box<Messages>>);

#[derive(Debug, Clone, Default)]
struct Messages {
    /// Hashes of the messages derived: a few bytes each, not the messages.
    seen: Vec<u64>,
    /// The newest message and its time.
    last: Option<(u64, String)>,
}

impl ProbeMessages {
    pub fn last(&self) -> Option<&str> {
        self.0.as_ref()?.last.as_ref().map(|(_, m)| m.as_str())
    }
}

fn hash(message: &str) -> u64 {
    // DefaultHasher::new() has fixed keys: the same message hashes the same every time.
    let mut h = DefaultHasher::new();
    message.hash(&mut h);
    h.finish()
}

impl Engine {
    /// The `Unhealthy` Events the API server holds for pod `uid`. Each is for the newest
    /// container its fieldPath names that existed at its time (else the newest of that name);
    /// one naming no container of the pod is the pod's (container null). A message new for its
    /// container derives ProbeUnhealthy; one seen before derives nothing. A pod not seen yet:
    /// nothing (the agent asks only after a kernel probe failure of a known pod).
    pub fn probe_unhealthy(&mut self, uid: &str, events: &[UnhealthyEvent]) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        if !self.pods.contains_key(uid) {
            return out;
        }
        let mut sorted: Vec<&UnhealthyEvent> = events.iter().collect();
        sorted.sort_by_key(|e| e.ts_ns);
        for ev in sorted {
            let name = ev.field_path.as_deref().and_then(container_of_field_path);
            let cid = name.and_then(|n| {
                let pod = self.pods.get(uid)?;
                self.container_named(pod, n, ev.ts_ns)
            });
            let message = truncate(&ev.message, MAX_MESSAGE_BYTES).to_string();
            let messages = match &cid {
                Some(id) => self
                    .containers
                    .get_mut(id)
                    .map(|c| &mut c.net.probe_messages),
                None => self.pods.get_mut(uid).map(|p| &mut p.probe_messages),
            };
            let Some(messages) = messages else {
                continue;
            };
            let messages = messages.0.get_or_insert_with(Box::default);
            if messages.last.as_ref().is_none_or(|(t, _)| *t <= ev.ts_ns) {
                messages.last = Some((ev.ts_ns, message.clone()));
            }
            let h = hash(&message);
            if messages.seen.contains(&h) {
                continue;
            }
            if messages.seen.len() >= MAX_PROBE_MESSAGES {
                self.evictions.probe_messages += 1;
                continue;
            }
            messages.seen.push(h);
            let probe = split_probe(&message).0.map(str::to_string);
            let mut e = self.event(
                ev.ts_ns,
                uid,
                cid.as_deref(),
                LifecycleKind::ProbeUnhealthy {
                    probe,
                    message,
                    count: ev.count,
                },
            );
            e.source = Source::Api;
            out.push(e);
        }
        self.record(&out);
        out
    }

    /// The container of pod `pod` named `name` that an Event at `ts` is about: the newest one
    /// created by then, else the newest of that name.
    fn container_named(&self, pod: &Pod, name: &str, ts: u64) -> Option<String> {
        let named = || {
            pod.containers
                .iter()
                .rev()
                .filter_map(|id| self.containers.get(id).map(|c| (id, c)))
                .filter(|(_, c)| !c.is_sandbox() && c.meta.container_name.as_deref() == Some(name))
        };
        named()
            .find(|(_, c)| c.created_ns <= ts.saturating_add(API_RESOLUTION_NS))
            .or_else(|| named().next())
            .map(|(id, _)| id.clone())
    }

    /// The newest probe message of a container, for its summary.
    pub(super) fn last_probe_message(&self, cid: &str) -> Option<String> {
        self.containers
            .get(cid)
            .and_then(|c| c.net.probe_messages.last())
            .map(str::to_string)
    }
}
