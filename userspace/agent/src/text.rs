//! The human-readable timeline (`?format=text`): relative times, the gap since the previous
//! step, and problems marked with `!` so they stand out in a terminal.

use podlife_core::terminal::write_line;
use serde_json::Value;

const PROBLEMS: &[&str] = &[
    "StopSignalIgnored",
    "GracePeriodOverrun",
    "OOMKill",
    "ProcessCrashed",
    "ProbeFailed",
    "AgentGap",
    "EventsLost",
];

fn s(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::Null => None,
        Value::String(x) => Some(x.clone()),
        other => Some(other.to_string()),
    }
}

fn duration(ns: i128) -> String {
    let ms = ns as f64 / 1e6;
    if ms.abs() < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.3}s", ms / 1000.0)
    }
}

fn is_problem(e: &Value) -> bool {
    let t = e["type"].as_str().unwrap_or("");
    if PROBLEMS.contains(&t) {
        return true;
    }
    match t {
        "ContainerExited" => e["reason"] != "Completed",
        "ExecFinished" => e["exit_code"].as_i64() != Some(0) || e["timed_out"] == true,
        _ => false,
    }
}

/// What matters about an event, in a few words.
fn detail(e: &Value) -> String {
    let mut d = Vec::new();
    let push = |d: &mut Vec<String>, label: &str, v: Option<String>| {
        if let Some(v) = v {
            d.push(if label.is_empty() {
                v
            } else {
                format!("{label}={v}")
            });
        }
    };
    push(&mut d, "", s(e, "container"));
    match e["type"].as_str().unwrap_or("") {
        "ContainerStarted" | "ExecStarted" | "ExecFinished" | "ProbeFailed" => {
            if let Some(argv) = e["argv"].as_array() {
                let words: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
                d.push(format!("`{}`", words.join(" ")));
            }
        }
        _ => {}
    }
    push(&mut d, "pid", s(e, "pid"));
    push(&mut d, "exit", s(e, "exit_code"));
    push(&mut d, "signal", s(e, "signal"));
    push(&mut d, "reason", s(e, "reason"));
    push(&mut d, "killed_by", s(e, "killed_by"));
    push(&mut d, "lost", s(e, "lost"));
    if let Some(ms) = e["duration_ms"].as_f64() {
        d.push(format!("took {ms:.1}ms"));
    }
    if e["timed_out"] == true {
        d.push("TIMED OUT".into());
    }
    push(
        &mut d,
        "grace",
        e["observed_grace_s"].as_f64().map(|g| format!("{g:.1}s")),
    );
    push(
        &mut d,
        "configured",
        e["configured_grace_s"].as_f64().map(|g| format!("{g:.0}s")),
    );
    push(
        &mut d,
        "grace_period",
        e["grace_period_s"].as_f64().map(|g| format!("{g:.0}s")),
    );
    if e["source"] == "api" {
        d.push("(API server)".into());
    }
    push(&mut d, "limit", s(e, "limit_scope"));
    if let Some(b) = e["anon_rss_bytes"].as_u64() {
        d.push(format!("anon_rss={}MiB", b >> 20));
    }
    if e["victim_is_init"] == false {
        d.push("child process (container survives)".into());
    }
    push(&mut d, "attempt", s(e, "attempt"));
    push(
        &mut d,
        "backoff",
        e["backoff_s"].as_f64().map(|b| format!("{b:.1}s")),
    );
    if let Some(sender) = e.get("sender").filter(|v| v.is_object()) {
        d.push(format!(
            "from {}({})",
            s(sender, "comm").unwrap_or_default(),
            s(sender, "pid").unwrap_or_default()
        ));
    }
    push(
        &mut d,
        "down",
        e["down_s"].as_f64().map(|g| format!("{g:.1}s")),
    );
    d.join("  ")
}

pub fn render(t: &Value) -> String {
    let mut out = String::new();
    let name = match (s(t, "namespace"), s(t, "name")) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        _ => "(name unknown)".into(),
    };
    let owner = match (s(&t["owner"], "kind"), s(&t["owner"], "name")) {
        (Some(k), Some(n)) => format!("  owner {k}/{n}"),
        _ => String::new(),
    };
    write_line(
        &mut out,
        format_args!(
            "pod {name}  uid {}  qos {}  state {}{owner}",
            s(t, "uid").unwrap_or_default(),
            s(t, "qos").unwrap_or("-".into()),
            s(t, "state").unwrap_or("-".into())
        ),
    );
    if let Some(cs) = t["containers"].as_array().filter(|c| !c.is_empty()) {
        let list: Vec<String> = cs
            .iter()
            .map(|c| {
                let fallback = if c["kind"] == "sandbox" {
                    "(sandbox)"
                } else {
                    "?"
                };
                format!(
                    "{} ({}, {}, restarts {})",
                    s(c, "name").unwrap_or(fallback.into()),
                    s(c, "kind").unwrap_or("?".into()),
                    s(c, "state").unwrap_or("?".into()),
                    s(c, "restarts").unwrap_or("0".into())
                )
            })
            .collect();
        write_line(&mut out, format_args!("containers: {}", list.join(", ")));
    }
    let events = t["events"].as_array().cloned().unwrap_or_default();
    let times: Vec<Option<i128>> = events
        .iter()
        .map(|e| e["time"].as_str().and_then(crate::clock::parse_rfc3339))
        .collect();
    let first = times.iter().flatten().next().copied();
    // Our own blank lines are pushed as is; write_line would escape them.
    out.push('\n');
    write_line(
        &mut out,
        format_args!("  {:>10}  {:>10}  {:<19} details", "at", "after", "event"),
    );
    let mut prev = first;
    for (e, t) in events.iter().zip(&times) {
        let at = match (t, first) {
            (Some(t), Some(f)) => format!("+{}", duration(t - f)),
            _ => "?".into(),
        };
        let after = match (t, prev) {
            (Some(t), Some(p)) if t != &p => format!("+{}", duration(t - p)),
            _ => String::new(),
        };
        if t.is_some() {
            prev = *t;
        }
        let mark = if is_problem(e) { '!' } else { ' ' };
        write_line(
            &mut out,
            format_args!(
                "{mark} {at:>10}  {after:>10}  {:<19} {}",
                e["type"].as_str().unwrap_or("?"),
                detail(e)
            ),
        );
    }
    if let Some(t0) = events.first().and_then(|e| s(e, "time")) {
        out.push('\n');
        write_line(
            &mut out,
            format_args!("times are relative to {t0}; ! marks a problem"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aligned_with_relative_times_and_marks() {
        let t = json!({
            "uid": "u", "namespace": "default", "name": "web", "qos": "burstable", "state": "Running",
            "containers": [{"name": "app", "kind": "app", "state": "Exited", "restarts": 0}],
            "events": [
                {"time": "2026-11-22T12:00:00.000000000Z", "type": "PodAdmitted"},
                {"time": "2026-11-22T12:00:00.250000000Z", "type": "ContainerStarted", "container": "app", "pid": 7, "argv": ["sh", "-c", "exit 3"]},
                {"time": "2026-11-22T12:00:02.250000000Z", "type": "StopSignalIgnored", "container": "app", "signal": "SIGTERM", "pid": 7},
                {"time": "2026-11-22T12:00:04.250000000Z", "type": "ContainerExited", "container": "app", "exit_code": 3, "reason": "Error"}
            ]
        });
        let text = render(&t);
        assert!(
            text.starts_with("pod default/web  uid u  qos burstable  state Running"),
            "{text}"
        );
        assert!(text.contains("+250.0ms"), "{text}");
        assert!(text.contains("`sh -c exit 3`"), "{text}");
        let ignored = text
            .lines()
            .find(|l| l.contains("StopSignalIgnored"))
            .unwrap();
        assert!(ignored.starts_with('!'), "{ignored}");
        assert!(
            ignored.contains("+2.250s") && ignored.contains("+2.000s"),
            "{ignored}"
        );
        let started = text
            .lines()
            .find(|l| l.contains("ContainerStarted"))
            .unwrap();
        assert!(started.starts_with(' '));
        assert!(!text.contains("owner"), "unknown owner is left out: {text}");
    }

    #[test]
    fn owner_and_the_deletion_request() {
        let t = json!({
            "uid": "u", "namespace": "shop", "name": "web-5d4f7c9b8-x2kqp", "qos": "burstable",
            "state": "Terminating", "owner": {"kind": "ReplicaSet", "name": "web-5d4f7c9b8"},
            "containers": [],
            "events": [
                {"time": "2026-11-22T12:00:00.000000000Z", "type": "DeletionRequested", "source": "api", "container": null, "grace_period_s": 30.0},
                {"time": "2026-11-22T12:00:00.100000000Z", "type": "StopRequested", "source": "kernel", "container": "app", "signal": "SIGTERM", "pid": 7, "sender": {"pid": 9, "comm": "runc"}},
                {"time": "2026-11-22T12:00:30.100000000Z", "type": "GracePeriodOverrun", "source": "kernel", "container": "app", "observed_grace_s": 30.0, "configured_grace_s": 30.0}
            ]
        });
        let text = render(&t);
        let header = text.lines().next().unwrap();
        assert!(
            header.ends_with("state Terminating  owner ReplicaSet/web-5d4f7c9b8"),
            "{header}"
        );
        let deletion = text
            .lines()
            .find(|l| l.contains("DeletionRequested"))
            .unwrap();
        assert!(deletion.starts_with(' '), "{deletion}");
        assert!(
            deletion.contains("grace_period=30s  (API server)"),
            "{deletion}"
        );
        let stop = text.lines().find(|l| l.contains("StopRequested")).unwrap();
        assert!(stop.contains("+100.0ms"), "{stop}");
        let overrun = text
            .lines()
            .find(|l| l.contains("GracePeriodOverrun"))
            .unwrap();
        assert!(overrun.contains("+30.100s"), "{overrun}");
    }

    #[test]
    fn control_characters_from_argv_and_comm_are_escaped() {
        let t = json!({
            "uid": "u", "namespace": "default", "name": "web\x1b[2J", "state": "Running",
            "containers": [],
            "events": [
                {"time": "2026-11-22T12:00:00.000000000Z", "type": "ExecStarted", "container": "app", "pid": 7, "argv": ["sh", "-c", "echo \x1b]0;x\x07\nFAKE"]},
                {"time": "2026-11-22T12:00:01.000000000Z", "type": "StopRequested", "container": "app", "signal": "SIGTERM", "pid": 7, "sender": {"pid": 9, "comm": "evil\x1b[1A\u{9b}"}}
            ]
        });
        let text = render(&t);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("web\\x1b[2J"), "{text}");
        assert!(
            text.contains("`sh -c echo \\x1b]0;x\\x07\\nFAKE`"),
            "{text}"
        );
        assert!(text.contains("from evil\\x1b[1A\\u{9b}(9)"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("FAKE")), "{text}");
    }
}
