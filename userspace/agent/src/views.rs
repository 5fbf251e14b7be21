//! What the API serves, built from the engine's live state and the served history.

use serde_json::{json, Map, Value};

use crate::shared::{Inner, PodFilter};

/// Fields of stored events that are bookkeeping, not API.
const INTERNAL: &[&str] = &["uid", "ts_wall_ns", "seq"];

impl Inner {
    /// Summary of one pod: live state from the engine, else what its history says.
    fn summary(&self, uid: &str) -> Option<Value> {
        let live = self
            .engine
            .pod_summary(uid)
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
        let history = self.history.pod(uid);
        if live.is_none() && history.is_none() {
            return None;
        }
        let mut obj = match live {
            Some(Value::Object(m)) => m,
            _ => {
                let mut m = Map::new();
                m.insert("uid".into(), uid.into());
                m
            }
        };
        if !obj.contains_key("state") || obj["state"].is_null() {
            let removed = history.is_some_and(|h| h.iter().any(|e| &*e.kind == "PodRemoved"));
            obj.insert(
                "state".into(),
                if removed { "Removed" } else { "Unknown" }.into(),
            );
        }
        for k in ["namespace", "name", "qos", "owner"] {
            obj.entry(k).or_insert(Value::Null);
        }
        obj.insert(
            "node".into(),
            self.node.clone().map_or(Value::Null, Value::from),
        );
        obj.entry("containers").or_insert_with(|| json!([]));
        Some(Value::Object(obj))
    }

    fn all_uids(&self) -> Vec<String> {
        let mut uids: Vec<String> = self.engine.pod_uids();
        for u in self.history.uids() {
            if !u.is_empty() && !uids.iter().any(|k| k == u) {
                uids.push(u.to_string());
            }
        }
        uids
    }

    pub fn pods_json(&self, f: &PodFilter) -> Value {
        let pods: Vec<Value> = self
            .all_uids()
            .iter()
            .filter_map(|u| self.summary(u))
            .filter(|p| f.namespace.as_deref().is_none_or(|n| p["namespace"] == n))
            .filter(|p| {
                f.state.as_deref().is_none_or(|s| {
                    p["state"]
                        .as_str()
                        .is_some_and(|ps| ps.eq_ignore_ascii_case(s))
                })
            })
            .collect();
        json!({"pods": pods})
    }

    pub fn pod_json(&self, uid: &str) -> Option<Value> {
        self.summary(uid)
    }

    pub fn find_uid(&self, namespace: &str, name: &str) -> Option<String> {
        // The newest pod of that name wins (a re-created pod has a new uid).
        self.all_uids().into_iter().rev().find(|u| {
            self.summary(u)
                .is_some_and(|p| p["namespace"] == namespace && p["name"] == name)
        })
    }

    pub fn timeline_json(&self, uid: &str) -> Option<Value> {
        let mut obj = match self.summary(uid)? {
            Value::Object(m) => m,
            _ => return None,
        };
        // Kernel events of different CPUs, and events dated to an earlier fact (ContainerCreated
        // at its cgroup's mkdir), arrive out of order: serve them in time order.
        let mut stored: Vec<_> = self.history.pod(uid).unwrap_or(&[]).iter().collect();
        stored.sort_by_key(|e| e.ts_wall_ns.unwrap_or(i64::MAX));
        let events: Vec<Value> = stored
            .into_iter()
            .map(|e| {
                let mut e = e.value();
                if let Some(m) = e.as_object_mut() {
                    for k in INTERNAL {
                        m.remove(*k);
                    }
                }
                e
            })
            .collect();
        obj.insert("events".into(), Value::Array(events));
        obj.insert("complete".into(), (!self.incomplete.contains(uid)).into());
        Some(Value::Object(obj))
    }

    pub fn timeline_text(&self, uid: &str) -> Option<String> {
        let t = self.timeline_json(uid)?;
        Some(crate::text::render(&t))
    }

    pub fn events_since(&self, since_wall_ns: i128, uid: Option<&str>, limit: usize) -> Vec<Value> {
        self.history
            .since(since_wall_ns, uid, limit)
            .into_iter()
            .map(|mut e| {
                if let Some(m) = e.as_object_mut() {
                    m.remove("ts_wall_ns");
                }
                e
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
