//! One served event: what the agent's history keeps, the store writes, and /events, timelines
//! and the live stream serve. Typed all the way; JSON only at those edges, in the wire format
//! of today's clients and store lines (keys in sorted order, `id` = `seq` as a string, `time`
//! rendered from `ts_wall_ns`).

use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::lifecycle::{LifecycleEvent, LifecycleKind, Source};
use crate::redact::Redactor;
use crate::timeline::format_rfc3339;

#[derive(Debug, Clone, PartialEq)]
pub struct ServedEvent {
    /// Served as `seq` and, as a string, `id`: the cursor of `/events?after=`.
    pub seq: u64,
    /// Wall time (ns since the epoch); served as `time` (RFC 3339).
    pub ts_wall_ns: i64,
    /// Shared with the other events of the pod (the history interns it).
    pub uid: Arc<str>,
    /// (namespace, pod name) as known when it happened: a removed pod keeps its names for as
    /// long as its events are kept, across restarts too.
    pub names: Option<(Box<str>, Box<str>)>,
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub source: Source,
    pub kind: LifecycleKind,
}

/// Which fields a consumer is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// Everything: the store line and the live stream.
    All,
    /// `/events`: without `ts_wall_ns`.
    Events,
    /// A timeline's events: without the pod's own fields and the bookkeeping.
    Timeline,
}

impl ServedEvent {
    /// A derived event at `ts_wall_ns`, not yet numbered (the history gives it its `seq`).
    pub fn new(e: LifecycleEvent, ts_wall_ns: i64) -> Self {
        Self {
            seq: 0,
            ts_wall_ns,
            uid: Arc::from(e.pod_uid),
            names: None,
            container: e.container,
            container_id: e.container_id,
            source: e.source,
            kind: e.kind,
        }
    }

    /// Argv is served and stored only redacted.
    pub fn redact(&mut self, r: &Redactor) {
        if let Some(argv) = self.kind.argv_mut() {
            *argv = r.redact_argv(argv);
        }
    }

    /// The configured grace period is the kubelet's: when the engine did not know it, the one
    /// the CRI told for the container (`grace_of`) fills it in.
    pub fn fill_configured_grace(&mut self, grace_of: impl FnOnce(&str) -> Option<f64>) {
        if let LifecycleKind::GracePeriodOverrun {
            configured_grace_s: c @ None,
            ..
        } = &mut self.kind
        {
            *c = self.container_id.as_deref().and_then(grace_of);
        }
    }

    /// The JSON of `fields` as a map (keys sorted, as served since the first release).
    pub fn to_map(&self, fields: Fields) -> Result<Map<String, Value>, serde_json::Error> {
        let Value::Object(mut m) = serde_json::to_value(&self.kind)? else {
            return Err(<serde_json::Error as serde::ser::Error>::custom(
                "an event kind is not an object",
            ));
        };
        m.insert("source".into(), serde_json::to_value(self.source)?);
        // Agent gaps were written without container fields: kept so.
        if !matches!(self.kind, LifecycleKind::AgentGap { .. }) {
            m.insert("container".into(), self.container.clone().into());
            m.insert("container_id".into(), self.container_id.clone().into());
        }
        m.insert("id".into(), self.seq.to_string().into());
        m.insert("time".into(), format_rfc3339(self.ts_wall_ns.into()).into());
        if fields != Fields::Timeline {
            m.insert("seq".into(), self.seq.into());
            m.insert("uid".into(), (*self.uid).into());
            if let Some((ns, pod)) = &self.names {
                m.insert("namespace".into(), (**ns).into());
                m.insert("pod".into(), (**pod).into());
            }
        }
        if fields == Fields::All {
            m.insert("ts_wall_ns".into(), self.ts_wall_ns.into());
        }
        Ok(m)
    }

    /// Compact JSON text of `fields`.
    pub fn to_json(&self, fields: Fields) -> String {
        // Every kind serializes (no maps with non-string keys, no non-finite floats that
        // serde_json refuses: it writes them as null).
        self.to_map(fields)
            .map(|m| Value::Object(m).to_string())
            .unwrap_or_else(|e| {
                serde_json::json!({"type": "Unrenderable", "error": e.to_string()}).to_string()
            })
    }
}

impl Serialize for ServedEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_map(Fields::All)
            .map_err(S::Error::custom)?
            .serialize(s)
    }
}

/// Reads store lines as this and earlier agents wrote them. A line of an unknown type or with
/// a value this agent does not know (a newer agent's) is an error: the store skips and counts it.
impl<'de> Deserialize<'de> for ServedEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut m = Map::<String, Value>::deserialize(d)?;
        let mut take = |k: &str| m.remove(k).unwrap_or(Value::Null);
        let string = |v: Value| v.as_str().map(str::to_string);
        let seq = take("seq")
            .as_u64()
            .ok_or_else(|| D::Error::missing_field("seq"))?;
        let ts_wall_ns = take("ts_wall_ns")
            .as_i64()
            .ok_or_else(|| D::Error::missing_field("ts_wall_ns"))?;
        let uid = string(take("uid")).ok_or_else(|| D::Error::missing_field("uid"))?;
        let names = match (string(take("namespace")), string(take("pod"))) {
            (Some(ns), Some(pod)) => Some((ns.into(), pod.into())),
            _ => None,
        };
        let container = string(take("container"));
        let container_id = string(take("container_id"));
        let source = Source::deserialize(take("source")).map_err(D::Error::custom)?;
        // Rendered from the above when served.
        for k in ["id", "time"] {
            m.remove(k);
        }
        let kind = LifecycleKind::deserialize(Value::Object(m)).map_err(D::Error::custom)?;
        Ok(Self {
            seq,
            ts_wall_ns,
            uid: Arc::from(uid),
            names,
            container,
            container_id,
            source,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{ExitReason, KilledBy, Sender};

    fn exited() -> ServedEvent {
        ServedEvent {
            seq: 7,
            ts_wall_ns: 1_000_000_001,
            uid: "u-1".into(),
            names: Some(("shop".into(), "web".into())),
            container: Some("app".into()),
            container_id: Some("c1".into()),
            source: Source::Kernel,
            kind: LifecycleKind::ContainerExited {
                pid: 42,
                exit_code: None,
                signal: Some("SIGKILL".into()),
                reason: ExitReason::Signaled,
                killed_by: Some(KilledBy::GraceOverrun),
                sender: Some(Sender {
                    pid: 9,
                    comm: "runc".into(),
                }),
                termination_s: Some(30.5),
            },
        }
    }

    #[test]
    fn the_store_line_is_the_wire_format_in_sorted_order() {
        let line = exited().to_json(Fields::All);
        assert_eq!(
            line,
            r#"{"container":"app","container_id":"c1","exit_code":null,"id":"7","killed_by":"grace_overrun","namespace":"shop","pid":42,"pod":"web","reason":"Signaled","sender":{"comm":"runc","pid":9},"seq":7,"signal":"SIGKILL","source":"kernel","termination_s":30.5,"time":"1970-01-01T00:00:01.000000001Z","ts_wall_ns":1000000001,"type":"ContainerExited","uid":"u-1"}"#
        );
        let back: ServedEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, exited(), "a store line reads back as the event");
    }

    #[test]
    fn the_agent_s_own_events_read_and_write_as_earlier_agents_wrote_them() {
        // Lines as the agent wrote them before events were typed (a JSON object of sorted keys).
        for line in [
            r#"{"down_from":"2026-11-22T12:00:00.000000000Z","down_s":42.5,"down_until":"2026-11-22T12:00:42.500000000Z","id":"9","seq":9,"source":"agent","time":"2026-11-22T12:00:00.000000000Z","ts_wall_ns":1795348800000000000,"type":"AgentGap","uid":"u-1"}"#,
            r#"{"container":null,"container_id":null,"first":"2026-11-22T12:00:00.000000000Z","id":"10","last":"2026-11-22T12:00:01.000000000Z","lost":3,"seq":10,"source":"agent","time":"2026-11-22T12:00:00.000000000Z","ts_wall_ns":1795348800000000000,"type":"EventsLost","uid":"u-1"}"#,
            r#"{"container":"app","container_id":"c1","id":"11","kind":"app","namespace":"shop","pod":"web","seq":11,"source":"bootstrap","time":"2026-11-22T12:00:00.000000000Z","ts_wall_ns":1795348800000000000,"type":"ContainerCreated","uid":"u-1"}"#,
        ] {
            let e: ServedEvent =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(e.to_json(Fields::All), line);
        }
    }

    #[test]
    fn views_leave_out_what_they_do_not_serve() {
        let ev = exited().to_map(Fields::Events).unwrap();
        assert!(!ev.contains_key("ts_wall_ns") && ev.contains_key("uid"));
        let tl = exited().to_map(Fields::Timeline).unwrap();
        for k in ["uid", "ts_wall_ns", "seq", "namespace", "pod"] {
            assert!(!tl.contains_key(k), "{k} in a timeline event");
        }
        assert_eq!(tl["id"], "7");
        assert_eq!(tl["time"], "1970-01-01T00:00:01.000000001Z");
    }

    #[test]
    fn lines_this_agent_does_not_know_are_errors_not_panics() {
        let ok = exited().to_json(Fields::All);
        for (from, to) in [
            ("\"Signaled\"", "\"Vanished\""),
            ("\"grace_overrun\"", "\"gremlins\""),
            ("\"ContainerExited\"", "\"ContainerTeleported\""),
            ("\"seq\":7", "\"seq\":\"7\""),
            ("\"source\":\"kernel\"", "\"source\":\"dream\""),
        ] {
            let bad = ok.replace(from, to);
            assert_ne!(bad, ok);
            assert!(
                serde_json::from_str::<ServedEvent>(&bad).is_err(),
                "{bad} was read"
            );
        }
    }

    #[test]
    fn argv_is_redacted_and_other_kinds_untouched() {
        let mut e = exited();
        e.kind = LifecycleKind::ExecStarted {
            pid: 1,
            argv: vec!["curl".into(), "--password".into(), "hunter2".into()],
        };
        e.redact(&Redactor::default());
        let LifecycleKind::ExecStarted { argv, .. } = &e.kind else {
            unreachable!()
        };
        assert!(!argv.iter().any(|a| a.contains("hunter2")), "{argv:?}");
        let mut x = exited();
        x.redact(&Redactor::default());
        assert_eq!(x, exited());
    }

    #[test]
    fn the_cri_grace_fills_only_a_missing_configured_grace() {
        let overrun = |configured| {
            let mut e = exited();
            e.kind = LifecycleKind::GracePeriodOverrun {
                observed_grace_s: 31.0,
                configured_grace_s: configured,
            };
            e
        };
        let cri = |id: &str| (id == "c1").then_some(30.0);
        let configured = |e: &ServedEvent| match e.kind {
            LifecycleKind::GracePeriodOverrun {
                configured_grace_s, ..
            } => configured_grace_s,
            _ => unreachable!(),
        };
        let mut e = overrun(None);
        e.fill_configured_grace(cri);
        assert_eq!(configured(&e), Some(30.0));
        let mut e = overrun(Some(5.0));
        e.fill_configured_grace(cri);
        assert_eq!(configured(&e), Some(5.0), "the engine's own value wins");
        let mut e = overrun(None);
        e.container_id = Some("other".into());
        e.fill_configured_grace(cri);
        assert_eq!(configured(&e), None);
    }
}
