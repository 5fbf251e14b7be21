//! Pure parts of the plugin: merging the events of several nodes in time order and printing
//! them one per line. No IO here, so the order and the text are unit-tested.

use podlife_core::terminal::escape_controls;
use serde_json::Value;

/// An event as a node's agent served it, with the node it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvent {
    pub node: String,
    pub event: Value,
}

/// Every node's events in one list, oldest first. The agents write `time` as fixed-width UTC
/// RFC 3339 with nanoseconds, so comparing the strings compares the instants; ties keep a
/// stable order (node name, then the node's own event id).
pub fn merge(per_node: Vec<(String, Vec<Value>)>) -> Vec<NodeEvent> {
    let mut all: Vec<NodeEvent> = per_node
        .into_iter()
        .flat_map(|(node, events)| {
            events.into_iter().map(move |event| NodeEvent {
                node: node.clone(),
                event,
            })
        })
        .collect();
    all.sort_by(|a, b| {
        let key = |e: &NodeEvent| {
            (
                e.event["time"].as_str().unwrap_or("").to_string(),
                e.node.clone(),
                e.event["id"]
                    .as_str()
                    .and_then(|i| i.parse::<u64>().ok())
                    .unwrap_or(0),
            )
        };
        key(a).cmp(&key(b))
    });
    all
}

/// Fields every line shows in its own column, left out of the details.
const COLUMNS: &[&str] = &[
    "time",
    "type",
    "uid",
    "namespace",
    "pod",
    "container",
    "container_id",
    "id",
    "seq",
    "source",
];

/// `TIME  NODE  NAMESPACE/POD  CONTAINER  TYPE  key=value…`, control characters escaped
/// (argv is the tenant's: it must not drive the terminal).
pub fn event_line(e: &NodeEvent) -> String {
    let ev = &e.event;
    let s = |k: &str| ev[k].as_str().unwrap_or("");
    let pod = match (s("namespace"), s("pod")) {
        ("", "") => s("uid").to_string(),
        (ns, name) => format!("{ns}/{name}"),
    };
    let container = match s("container") {
        "" => "-",
        c => c,
    };
    let mut line = format!(
        "{}  {}  {}  {}  {}",
        s("time"),
        e.node,
        pod,
        container,
        s("type")
    );
    if let Some(obj) = ev.as_object() {
        for (k, v) in obj {
            if COLUMNS.contains(&k.as_str()) || v.is_null() {
                continue;
            }
            line.push_str("  ");
            line.push_str(k);
            line.push('=');
            match v {
                Value::String(t) => line.push_str(t),
                Value::Array(items) => {
                    let words: Vec<String> = items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                        .collect();
                    line.push_str(&format!("{words:?}"));
                }
                other => line.push_str(&other.to_string()),
            }
        }
    }
    escape_controls(&line).into_owned()
}

/// A warning for a node that did not answer: one line, whatever the error held.
pub fn warning(node: &str, err: &str) -> String {
    let first = err.lines().next().unwrap_or("");
    escape_controls(&format!("warning: node {node}: {first}")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(time: &str, id: &str, ty: &str) -> Value {
        json!({"time": time, "id": id, "type": ty, "namespace": "default", "pod": "web",
               "container": "app", "uid": "u1"})
    }

    #[test]
    fn events_of_nodes_interleave_by_time_not_by_node() {
        let a = vec![
            ev("2026-12-06T10:00:00.000000001Z", "1", "PodAdmitted"),
            ev("2026-12-06T10:00:03.000000000Z", "2", "ContainerExited"),
        ];
        let b = vec![ev("2026-12-06T10:00:02.000000000Z", "7", "OOMKill")];
        let order: Vec<String> = merge(vec![("a".into(), a), ("b".into(), b)])
            .iter()
            .map(|e| format!("{}:{}", e.node, e.event["type"].as_str().unwrap()))
            .collect();
        assert_eq!(order, ["a:PodAdmitted", "b:OOMKill", "a:ContainerExited"]);
    }

    #[test]
    fn equal_times_keep_node_then_id_order() {
        let t = "2026-12-06T10:00:00.000000000Z";
        let merged = merge(vec![
            ("b".into(), vec![ev(t, "1", "X")]),
            ("a".into(), vec![ev(t, "10", "Y"), ev(t, "9", "Z")]),
        ]);
        let ids: Vec<(&str, &str)> = merged
            .iter()
            .map(|e| (e.node.as_str(), e.event["id"].as_str().unwrap()))
            .collect();
        // Numeric ids: "9" before "10".
        assert_eq!(ids, [("a", "9"), ("a", "10"), ("b", "1")]);
    }

    #[test]
    fn a_line_has_the_columns_and_the_details_and_escapes_controls() {
        let mut e = ev("2026-12-06T10:00:00.000000000Z", "3", "ExecFinished");
        e["exit_code"] = json!(1);
        e["argv"] = json!(["sh", "-c", "echo \u{1b}[2Jgone"]);
        e["signal"] = Value::Null;
        let line = event_line(&NodeEvent {
            node: "node-a".into(),
            event: e,
        });
        assert!(
            line.starts_with(
                "2026-12-06T10:00:00.000000000Z  node-a  default/web  app  ExecFinished"
            ),
            "{line}"
        );
        assert!(line.contains("exit_code=1"), "{line}");
        assert!(
            !line.contains('\u{1b}'),
            "escape reached the terminal: {line}"
        );
        assert!(!line.contains("signal="), "nulls are left out: {line}");
        assert!(!line.contains("uid="), "columns are not repeated: {line}");
    }

    #[test]
    fn a_pod_without_names_shows_its_uid() {
        let line = event_line(&NodeEvent {
            node: "n".into(),
            event: json!({"time": "t", "type": "PodAdmitted", "uid": "8f3c"}),
        });
        assert_eq!(line, "t  n  8f3c  -  PodAdmitted");
    }

    #[test]
    fn a_warning_is_one_line() {
        assert_eq!(
            warning("node-b", "connection refused\nmore\x1b"),
            "warning: node node-b: connection refused"
        );
    }
}
