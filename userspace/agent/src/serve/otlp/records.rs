//! Served events → one OTLP export request: records grouped by pod and container into
//! resources with the Kubernetes semantic-convention attributes, the event's own fields as
//! `podlife.*` attributes, the whole event JSON as the body. Pure.

use serde_json::Value as Json;

use super::proto::{
    AnyValue, ExportLogsServiceRequest, InstrumentationScope, KeyValue, LogRecord, Resource,
    ResourceLogs, ScopeLogs, Value, SEVERITY_INFO, SEVERITY_WARN,
};

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

fn string(key: &str, v: &str) -> KeyValue {
    kv(key, Value::String(v.to_string()))
}

/// Events that tell of something going wrong.
fn severity(ty: &str) -> (i32, &'static str) {
    match ty {
        "OOMKill" | "ProcessCrashed" | "ProbeFailed" | "ProbeUnhealthy" | "StopSignalIgnored"
        | "GracePeriodOverrun" | "EventsLost" | "AgentGap" | "EventsExpired" => {
            (SEVERITY_WARN, "WARN")
        }
        _ => (SEVERITY_INFO, "INFO"),
    }
}

/// Fields shown as resource attributes or columns, not repeated as `podlife.*`.
const SKIP: &[&str] = &[
    "uid",
    "namespace",
    "pod",
    "container",
    "time",
    "ts_wall_ns",
    "seq",
];

fn record(e: &Json, observed_ns: u64) -> LogRecord {
    let ty = e["type"].as_str().unwrap_or("");
    let (severity_number, text) = severity(ty);
    let mut attributes = vec![string("event.name", &format!("podlife.{ty}"))];
    if let Some(obj) = e.as_object() {
        for (k, v) in obj {
            if SKIP.contains(&k.as_str()) {
                continue;
            }
            let key = format!("podlife.{k}");
            let value = match v {
                Json::String(s) => Value::String(s.clone()),
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Double(n.as_f64().unwrap_or(0.0)),
                },
                Json::Null => continue,
                // argv, sender: kept as their JSON text.
                other => Value::String(other.to_string()),
            };
            attributes.push(kv(&key, value));
        }
    }
    LogRecord {
        time_unix_nano: e["ts_wall_ns"].as_u64().unwrap_or(0),
        severity_number,
        severity_text: text.to_string(),
        body: Some(AnyValue {
            value: Some(Value::String(e.to_string())),
        }),
        attributes,
        observed_time_unix_nano: observed_ns,
        event_name: format!("podlife.{ty}"),
    }
}

/// One request for `events` (served JSON with `ts_wall_ns`), in their order within each
/// resource; resources in the order their first event came.
pub fn request(events: &[Json], node: Option<&str>, observed_ns: u64) -> ExportLogsServiceRequest {
    let mut resources: Vec<(Vec<String>, ResourceLogs)> = Vec::new();
    for e in events {
        let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
        let key = vec![s("uid"), s("container")];
        let pos = match resources.iter().position(|(k, _)| *k == key) {
            Some(p) => p,
            None => {
                let mut attributes = Vec::new();
                if let Some(n) = node {
                    attributes.push(string("k8s.node.name", n));
                }
                for (attr, field) in [
                    ("k8s.namespace.name", "namespace"),
                    ("k8s.pod.name", "pod"),
                    ("k8s.pod.uid", "uid"),
                    ("k8s.container.name", "container"),
                ] {
                    if let Some(v) = e[field].as_str().filter(|v| !v.is_empty()) {
                        attributes.push(string(attr, v));
                    }
                }
                resources.push((
                    key,
                    ResourceLogs {
                        resource: Some(Resource { attributes }),
                        scope_logs: vec![ScopeLogs {
                            scope: Some(InstrumentationScope {
                                name: "podlife".into(),
                                version: env!("CARGO_PKG_VERSION").into(),
                            }),
                            log_records: Vec::new(),
                        }],
                    },
                ));
                resources.len() - 1
            }
        };
        resources[pos].1.scope_logs[0]
            .log_records
            .push(record(e, observed_ns));
    }
    ExportLogsServiceRequest {
        resource_logs: resources.into_iter().map(|(_, r)| r).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use serde_json::json;

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attrs
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn events_group_by_pod_and_container_with_semantic_attributes() {
        let events = vec![
            json!({"type": "ContainerStarted", "uid": "u1", "namespace": "shop", "pod": "web",
                   "container": "app", "id": "7", "ts_wall_ns": 1_000, "pid": 42,
                   "argv": ["sh", "-c", "x"], "source": "kernel", "exit_code": null}),
            json!({"type": "OOMKill", "uid": "u1", "namespace": "shop", "pod": "web",
                   "container": "app", "id": "8", "ts_wall_ns": 2_000, "victim_is_init": false,
                   "anon_rss_bytes": 1.5}),
            json!({"type": "PodAdmitted", "uid": "u2", "id": "9", "ts_wall_ns": 3_000}),
        ];
        let req = request(&events, Some("node-a"), 5_000);
        // Through the wire format and back.
        let req = ExportLogsServiceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(req.resource_logs.len(), 2);
        let r0 = req.resource_logs[0].resource.as_ref().unwrap();
        assert_eq!(
            attr(&r0.attributes, "k8s.node.name"),
            Some(&Value::String("node-a".into()))
        );
        assert_eq!(
            attr(&r0.attributes, "k8s.pod.uid"),
            Some(&Value::String("u1".into()))
        );
        assert_eq!(
            attr(&r0.attributes, "k8s.container.name"),
            Some(&Value::String("app".into()))
        );
        let recs = &req.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].time_unix_nano, 1_000);
        assert_eq!(recs[0].observed_time_unix_nano, 5_000);
        assert_eq!(recs[0].event_name, "podlife.ContainerStarted");
        assert_eq!(recs[0].severity_number, SEVERITY_INFO);
        assert_eq!(recs[1].severity_number, SEVERITY_WARN);
        assert_eq!(
            attr(&recs[0].attributes, "podlife.id"),
            Some(&Value::String("7".into()))
        );
        assert_eq!(
            attr(&recs[0].attributes, "podlife.pid"),
            Some(&Value::Int(42))
        );
        assert_eq!(
            attr(&recs[1].attributes, "podlife.anon_rss_bytes"),
            Some(&Value::Double(1.5))
        );
        assert_eq!(
            attr(&recs[1].attributes, "podlife.victim_is_init"),
            Some(&Value::Bool(false))
        );
        assert!(
            attr(&recs[0].attributes, "podlife.exit_code").is_none(),
            "nulls left out"
        );
        assert!(
            attr(&recs[0].attributes, "podlife.uid").is_none(),
            "on the resource instead"
        );
        let Some(Value::String(body)) = recs[0].body.as_ref().unwrap().value.as_ref() else {
            panic!("a string body")
        };
        assert_eq!(serde_json::from_str::<Json>(body).unwrap(), events[0]);
        // A pod without names: only what is known.
        let r1 = req.resource_logs[1].resource.as_ref().unwrap();
        assert!(attr(&r1.attributes, "k8s.pod.name").is_none());
        assert_eq!(
            attr(&r1.attributes, "k8s.pod.uid"),
            Some(&Value::String("u2".into()))
        );
    }
}
