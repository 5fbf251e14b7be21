//! Findings → Kubernetes Event writes, bounded: a repeat of the same finding (pod, container,
//! reason) within `SERIES_WINDOW_MS` becomes a count on the first Event's `series` (patched at
//! most every `PATCH_EVERY_MS`), as the kubelet's own event recorder aggregates; new Events are
//! rate-limited per pod and per node with token buckets; every finding left out is counted.
//! Pure: the caller passes the time, performs the writes and reports their results.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::finding::Finding;

/// A repeat within this window joins the finding's series.
pub const SERIES_WINDOW_MS: u64 = 10 * 60 * 1000;
/// A series' count is written at most this often.
pub const PATCH_EVERY_MS: u64 = 30 * 1000;
/// Series remembered at most (the oldest is forgotten first; a repeat then starts a new Event).
pub const MAX_SERIES: usize = 4096;

/// A token bucket: `burst` writes at once, then one per `every_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every_ms: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_pod: Rate,
    pub per_node: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_pod: Rate {
                burst: 5,
                every_ms: 60_000,
            },
            per_node: Rate {
                burst: 50,
                every_ms: 1_000,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn full(r: Rate, now_ms: u64) -> Self {
        Self {
            tokens: f64::from(r.burst),
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, r: Rate, now_ms: u64) {
        let gained = now_ms.saturating_sub(self.at_ms) as f64 / r.every_ms.max(1) as f64;
        self.tokens = (self.tokens + gained).min(f64::from(r.burst));
        self.at_ms = now_ms;
    }
}

/// A write for the caller to perform.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// POST this events.k8s.io/v1 Event in `namespace`.
    Create { namespace: String, event: Value },
    /// Merge-patch the Event `name` in `namespace` with this body (its series).
    Patch {
        namespace: String,
        name: String,
        body: Value,
    },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Findings joined to an existing series (no write of their own).
    pub aggregated: u64,
    /// New Events refused by the pod's or the node's rate.
    pub rate_limited: u64,
    /// Series forgotten at MAX_SERIES.
    pub series_evicted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    container: Option<String>,
    reason: &'static str,
}

#[derive(Debug)]
struct Series {
    namespace: String,
    name: String,
    count: u64,
    written_count: u64,
    first_ms: u64,
    last_ms: u64,
    last_time: String,
    patched_ms: u64,
}

pub struct Recorder {
    limits: Limits,
    node: String,
    series: HashMap<Key, Series>,
    pods: HashMap<String, Bucket>,
    node_bucket: Bucket,
    pub counts: Counts,
}

/// The Event's name: the pod's name (cut so the whole stays a valid name) and a hash of what
/// makes it unique, as the kubelet names its own (`<pod>.<hex>`).
fn event_name(f: &Finding, first_ms: u64) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&f.uid, &f.container, f.reason, first_ms, &f.time).hash(&mut h);
    let pod: String = f.pod.chars().take(200).collect();
    format!("{pod}.{:016x}", h.finish())
}

/// MicroTime: RFC 3339 with microseconds (the served times have nanoseconds).
fn micro_time(t: &str) -> String {
    match t.split_once('.') {
        Some((secs, frac)) => {
            let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
            format!("{secs}.{:0<6}Z", &digits[..digits.len().min(6)])
        }
        None => t.to_string(),
    }
}

impl Recorder {
    pub fn new(limits: Limits, node: &str, now_ms: u64) -> Self {
        Self {
            limits,
            node: node.to_string(),
            series: HashMap::new(),
            pods: HashMap::new(),
            node_bucket: Bucket::full(limits.per_node, now_ms),
            counts: Counts::default(),
        }
    }

    /// The Event for a first finding (events.k8s.io/v1).
    pub fn event(&self, f: &Finding, name: &str) -> Value {
        let mut regarding = json!({
            "apiVersion": "v1", "kind": "Pod",
            "namespace": f.namespace, "name": f.pod, "uid": f.uid,
        });
        if let Some(c) = &f.container {
            regarding["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
        }
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": f.namespace},
            "eventTime": micro_time(&f.time),
            "reportingController": "podlife.io/agent",
            "reportingInstance": self.node,
            "action": "Observed",
            "reason": f.reason,
            "regarding": regarding,
            "note": f.note,
            "type": "Warning",
        })
    }

    /// One finding: a new Event to create (when the rates allow), or a count on its series.
    pub fn observe(&mut self, f: Finding, now_ms: u64) -> Option<Write> {
        let key = Key {
            uid: f.uid.clone(),
            container: f.container.clone(),
            reason: f.reason,
        };
        if let Some(s) = self.series.get_mut(&key) {
            if now_ms.saturating_sub(s.first_ms) < SERIES_WINDOW_MS {
                s.count += 1;
                s.last_ms = now_ms;
                s.last_time = f.time;
                self.counts.aggregated += 1;
                return None;
            }
        }
        let per_pod = self.limits.per_pod;
        let bucket = self
            .pods
            .entry(f.uid.clone())
            .or_insert_with(|| Bucket::full(per_pod, now_ms));
        bucket.refill(per_pod, now_ms);
        self.node_bucket.refill(self.limits.per_node, now_ms);
        if bucket.tokens < 1.0 || self.node_bucket.tokens < 1.0 {
            self.counts.rate_limited += 1;
            return None;
        }
        bucket.tokens -= 1.0;
        self.node_bucket.tokens -= 1.0;
        if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
            if let Some(oldest) = self
                .series
                .iter()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(k, _)| k.clone())
            {
                self.series.remove(&oldest);
                self.counts.series_evicted += 1;
            }
        }
        let name = event_name(&f, now_ms);
        let event = self.event(&f, &name);
        self.series.insert(
            key,
            Series {
                namespace: f.namespace.clone(),
                name,
                count: 1,
                written_count: 1,
                first_ms: now_ms,
                last_ms: now_ms,
                last_time: f.time,
                patched_ms: now_ms,
            },
        );
        // Pods' buckets go with their last series, so the map stays as bounded as the series.
        if self.pods.len() > MAX_SERIES {
            let live: std::collections::HashSet<&String> =
                self.series.keys().map(|k| &k.uid).collect();
            self.pods.retain(|uid, _| live.contains(uid));
        }
        Some(Write::Create {
            namespace: f.namespace,
            event,
        })
    }

    /// Series counts due to be written, and series past their window forgotten.
    pub fn due(&mut self, now_ms: u64) -> Vec<Write> {
        let mut out = Vec::new();
        for s in self.series.values_mut() {
            if s.count > s.written_count && now_ms.saturating_sub(s.patched_ms) >= PATCH_EVERY_MS {
                s.written_count = s.count;
                s.patched_ms = now_ms;
                out.push(Write::Patch {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    body: json!({"series": {"count": s.count, "lastObservedTime": micro_time(&s.last_time)}}),
                });
            }
        }
        self.series.retain(|_, s| {
            now_ms.saturating_sub(s.first_ms) < SERIES_WINDOW_MS || s.count > s.written_count
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(uid: &str, reason: &'static str, time: &str) -> Finding {
        Finding {
            uid: uid.into(),
            namespace: "shop".into(),
            pod: format!("web-{uid}"),
            container: Some("app".into()),
            reason,
            note: "n".into(),
            time: time.into(),
        }
    }

    const T: &str = "2026-12-06T10:00:00.123456789Z";

    #[test]
    fn the_event_body_is_a_valid_events_k8s_io_v1_event() {
        let r = Recorder::new(Limits::default(), "node-a", 0);
        let body = r.event(&f("8f3c", "ChildOOMKilled", T), "web-8f3c.0011223344556677");
        // Through k8s-openapi's own type and back: a field the schema lacks, a wrong type or a
        // missing required field changes the JSON or fails.
        let typed: k8s_openapi::api::events::v1::Event =
            serde_json::from_value(body.clone()).expect("an events.k8s.io/v1 Event");
        assert_eq!(serde_json::to_value(&typed).unwrap(), body);
        assert_eq!(body["eventTime"], "2026-12-06T10:00:00.123456Z");
        assert_eq!(body["regarding"]["fieldPath"], "spec.containers{app}");
        assert_eq!(body["reportingInstance"], "node-a");
        assert_eq!(body["reportingController"], "podlife.io/agent");
    }

    #[test]
    fn a_series_patch_is_valid_too() {
        let mut r = Recorder::new(Limits::default(), "n", 0);
        r.observe(f("a", "StopSignalIgnored", T), 0).unwrap();
        r.observe(f("a", "StopSignalIgnored", T), 10);
        let Write::Patch { body, .. } = r.due(PATCH_EVERY_MS).remove(0) else {
            panic!("a patch");
        };
        let series: k8s_openapi::api::events::v1::EventSeries =
            serde_json::from_value(body["series"].clone()).expect("an EventSeries");
        assert_eq!(series.count, 2);
    }

    #[test]
    fn a_burst_of_a_thousand_findings_is_bounded_and_counted() {
        let mut r = Recorder::new(Limits::default(), "n", 0);
        let (mut creates, mut patches) = (0, 0);
        // 1,000 findings in one second: 100 pods × 10 repeats of one reason.
        for i in 0..1000u64 {
            let uid = format!("pod{}", i % 100);
            if let Some(Write::Create { .. }) = r.observe(f(&uid, "ProcessCrashed", T), i) {
                creates += 1;
            }
        }
        // The node's burst (50) caps new Events; the other pods' first findings are refused,
        // and the repeats of admitted ones join their series.
        assert_eq!(creates, 50);
        assert_eq!(r.counts.rate_limited, 50 * 10);
        assert_eq!(r.counts.aggregated, 50 * 9);
        assert_eq!(creates + r.counts.rate_limited + r.counts.aggregated, 1000);
        for w in r.due(1000 + PATCH_EVERY_MS) {
            if let Write::Patch { body, .. } = w {
                assert_eq!(body["series"]["count"], 10);
                patches += 1;
            }
        }
        assert_eq!(
            patches, 50,
            "one count write per series, not one per finding"
        );
        assert!(
            r.due(1000 + PATCH_EVERY_MS + 1).is_empty(),
            "nothing new: nothing written"
        );
    }

    #[test]
    fn one_pod_cannot_use_the_nodes_budget() {
        let mut r = Recorder::new(Limits::default(), "n", 0);
        let reasons = ["A", "B", "C", "D", "E", "F", "G"];
        let created = reasons
            .iter()
            .filter(|&&reason| r.observe(f("noisy", reason, T), 0).is_some())
            .count();
        assert_eq!(created, 5, "the pod's burst");
        assert!(
            r.observe(f("quiet", "A", T), 0).is_some(),
            "another pod still gets one"
        );
        // A minute later the noisy pod has one token again.
        assert!(r.observe(f("noisy", "H", T), 60_000).is_some());
        assert!(r.observe(f("noisy", "I", T), 60_000).is_none());
    }

    #[test]
    fn a_repeat_after_the_window_starts_a_new_event() {
        let mut r = Recorder::new(Limits::default(), "n", 0);
        let Some(Write::Create { event: first, .. }) = r.observe(f("a", "X", T), 0) else {
            panic!()
        };
        let Some(Write::Create { event: second, .. }) = r.observe(f("a", "X", T), SERIES_WINDOW_MS)
        else {
            panic!("a new Event after the window")
        };
        assert_ne!(first["metadata"]["name"], second["metadata"]["name"]);
    }

    #[test]
    fn series_are_bounded() {
        let limits = Limits {
            per_pod: Rate {
                burst: 1,
                every_ms: 1,
            },
            per_node: Rate {
                burst: u32::MAX,
                every_ms: 1,
            },
        };
        let mut r = Recorder::new(limits, "n", 0);
        for i in 0..(MAX_SERIES as u64 + 10) {
            r.observe(f(&format!("p{i}"), "X", T), i);
        }
        assert_eq!(r.series.len(), MAX_SERIES);
        assert_eq!(r.counts.series_evicted, 10);
        assert!(r.pods.len() <= MAX_SERIES + 1);
    }
}
