//! Which served events become Kubernetes Events: the kernel-only findings, those the kubelet
//! never reports (a child's OOM kill, a SIGTERM PID 1 dropped, a grace-period overrun, a probe
//! killed at its timeout, a crashed child process). Pure: served event JSON in, finding out.

use serde_json::Value;

/// One finding about a pod, ready to be recorded as an Event on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub uid: String,
    pub namespace: String,
    pub pod: String,
    /// Container name, when known (the Event's `regarding.fieldPath`).
    pub container: Option<String>,
    /// The Event's reason (UpperCamelCase, stable: alerting and exporters match on it).
    pub reason: &'static str,
    /// Human-readable, at most `MAX_NOTE` bytes.
    pub note: String,
    /// RFC 3339 time of the finding (the served event's `time`).
    pub time: String,
}

/// The event types a finding can come from.
pub const KINDS: [&str; 5] = [
    "OOMKill",
    "StopSignalIgnored",
    "GracePeriodOverrun",
    "ProbeFailed",
    "ProcessCrashed",
];

/// events.k8s.io/v1 rejects a longer note.
pub const MAX_NOTE: usize = 1024;

fn s<'a>(e: &'a Value, k: &str) -> Option<&'a str> {
    e.get(k).and_then(Value::as_str)
}

fn truncate(mut note: String) -> String {
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

/// The finding in a served event, if it is one. Events of pods without a known namespace and
/// name cannot be attached to a Pod and give none.
pub fn finding(e: &Value) -> Option<Finding> {
    let container = s(e, "container").map(str::to_string);
    let c = container
        .as_deref()
        .map_or_else(|| "a container".to_string(), |n| format!("container {n}"));
    let (reason, note) = match s(e, "type")? {
        "OOMKill" if e["victim_is_init"] == false => (
            "ChildOOMKilled",
            format!(
                "process {}({}) of {c} was OOM-killed ({} memory limit); the container keeps running{}",
                s(e, "comm").unwrap_or("?"),
                e["pid"],
                s(e, "limit_scope").unwrap_or("unknown"),
                e["anon_rss_bytes"]
                    .as_u64()
                    .map(|b| format!(", anon RSS {} MiB", b >> 20))
                    .unwrap_or_default()
            ),
        ),
        "StopSignalIgnored" => (
            "StopSignalIgnored",
            format!(
                "{c}: PID 1 ({}) has no handler for {} and the kernel dropped it; the container runs until the grace period ends",
                e["pid"],
                s(e, "signal").unwrap_or("the stop signal")
            ),
        ),
        "GracePeriodOverrun" => (
            "GracePeriodOverrun",
            format!(
                "{c} did not stop within its grace period{}: killed with SIGKILL after {:.1}s",
                e["configured_grace_s"]
                    .as_f64()
                    .map(|g| format!(" ({g:.0}s)"))
                    .unwrap_or_default(),
                e["observed_grace_s"].as_f64().unwrap_or(0.0)
            ),
        ),
        "ProbeFailed" if e["timed_out"] == true => (
            "ProbeTimedOut",
            format!(
                "{} of {c} killed at its timeout ({} consecutive failures): {}",
                s(e, "probe").unwrap_or("exec probe"),
                e["consecutive_failures"],
                e["argv"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            ),
        ),
        "ProcessCrashed" if e["is_init"] == false => (
            "ProcessCrashed",
            format!(
                "process {}({}) of {c} crashed with {}{}",
                s(e, "comm").unwrap_or("?"),
                e["pid"],
                s(e, "signal").unwrap_or("a signal"),
                if e["core_dumped"] == true { " (core dumped)" } else { "" }
            ),
        ),
        _ => return None,
    };
    Some(Finding {
        uid: s(e, "uid")?.to_string(),
        namespace: s(e, "namespace").filter(|n| !n.is_empty())?.to_string(),
        pod: s(e, "pod").filter(|n| !n.is_empty())?.to_string(),
        container,
        reason,
        note: truncate(note),
        time: s(e, "time")?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(ty: &str) -> Value {
        json!({"type": ty, "uid": "u1", "namespace": "shop", "pod": "web", "container": "app",
               "time": "2026-12-06T10:00:00.123456789Z"})
    }

    fn with(ty: &str, fields: Value) -> Value {
        let mut e = base(ty);
        for (k, v) in fields.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    #[test]
    fn kernel_only_findings_become_events_and_the_rest_do_not() {
        let child_oom = with(
            "OOMKill",
            json!({"victim_is_init": false, "pid": 42, "comm": "memhog",
                                               "limit_scope": "container", "anon_rss_bytes": 33554432}),
        );
        let f = finding(&child_oom).unwrap();
        assert_eq!(f.reason, "ChildOOMKilled");
        assert_eq!(
            f.note,
            "process memhog(42) of container app was OOM-killed (container memory limit); the container keeps running, anon RSS 32 MiB"
        );
        let cases = [
            (
                with("StopSignalIgnored", json!({"pid": 1, "signal": "SIGTERM"})),
                Some("StopSignalIgnored"),
            ),
            (
                with(
                    "GracePeriodOverrun",
                    json!({"observed_grace_s": 30.02, "configured_grace_s": 30.0}),
                ),
                Some("GracePeriodOverrun"),
            ),
            (
                with(
                    "ProbeFailed",
                    json!({"timed_out": true, "consecutive_failures": 3, "argv": ["cat", "/ready"]}),
                ),
                Some("ProbeTimedOut"),
            ),
            (
                with(
                    "ProcessCrashed",
                    json!({"is_init": false, "pid": 7, "comm": "worker", "signal": "SIGSEGV", "core_dumped": true}),
                ),
                Some("ProcessCrashed"),
            ),
            // The kubelet reports these itself: no Event from podlife.
            (with("OOMKill", json!({"victim_is_init": true})), None),
            (with("ProbeFailed", json!({"timed_out": false})), None),
            (with("ProcessCrashed", json!({"is_init": true})), None),
            (base("ContainerStarted"), None),
            (base("ExecFinished"), None),
        ];
        for (e, want) in cases {
            assert_eq!(finding(&e).map(|f| f.reason), want, "{e}");
            // The writer parses only these kinds: a finding of another would never be seen.
            if want.is_some() {
                assert!(KINDS.contains(&e["type"].as_str().unwrap()), "{e}");
            }
        }
    }

    #[test]
    fn a_pod_without_names_gets_no_event() {
        let mut e = with("StopSignalIgnored", json!({"pid": 1}));
        e["namespace"] = Value::Null;
        assert!(finding(&e).is_none());
        e["namespace"] = json!("");
        assert!(finding(&e).is_none());
    }

    #[test]
    fn a_long_note_is_cut_at_the_api_limit_on_a_char_boundary() {
        let argv: Vec<String> = (0..400).map(|_| "é".to_string()).collect();
        let e = with(
            "ProbeFailed",
            json!({"timed_out": true, "consecutive_failures": 1, "argv": argv}),
        );
        let f = finding(&e).unwrap();
        assert!(
            f.note.len() <= MAX_NOTE && f.note.ends_with("..."),
            "{}",
            f.note.len()
        );
    }
}
