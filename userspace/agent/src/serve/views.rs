//! What the API serves, built from the engine's live state and the served history.

use podlife_core::termination::{summarize, ContainerInfo, Step};
use podlife_core::{Fields, LifecycleKind, Timeline, TimelineEvent};
use serde_json::{json, Map, Value};

use crate::pipeline::history::Stored;
use crate::pipeline::shared::{Inner, PodFilter};

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
            let removed = history.is_some_and(|h| {
                h.iter()
                    .any(|e| matches!(e.kind, LifecycleKind::PodRemoved))
            });
            obj.insert(
                "state".into(),
                if removed { "Removed" } else { "Unknown" }.into(),
            );
        }
        if obj.get("name").is_none_or(Value::is_null) {
            if let Some((ns, name)) = self.history.names(uid) {
                obj.insert("namespace".into(), ns.into());
                obj.insert("name".into(), name.into());
            }
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

    /// Live pods, then pods known only from history: O(pods).
    fn all_uids(&self) -> Vec<String> {
        let mut uids: Vec<String> = self.engine.pod_uids();
        let live: std::collections::HashSet<String> = uids.iter().cloned().collect();
        uids.extend(
            self.history
                .uids()
                .filter(|u| !u.is_empty() && !live.contains(*u))
                .map(str::to_string),
        );
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

    /// What a timeline answer needs, taken under the lock: the pod's summary, handles on its
    /// served events and the containers' grace periods. Sorting, the shutdown summary and
    /// rendering happen after the lock is released ([`TimelineSnapshot`]).
    pub fn timeline_snapshot(&self, uid: &str) -> Option<TimelineSnapshot> {
        let Value::Object(summary) = self.summary(uid)? else {
            return None;
        };
        let graces = summary["containers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| c["id"].as_str())
                    .map(|id| (id.to_string(), self.engine.grace_of(id)))
                    .collect()
            })
            .unwrap_or_default();
        Some(TimelineSnapshot {
            uid: uid.to_string(),
            node: self.node.clone(),
            summary,
            events: self
                .history
                .pod(uid)
                .map(<[Stored]>::to_vec)
                .unwrap_or_default(),
            graces,
            complete: !self.incomplete.contains(uid),
        })
    }

    pub fn timeline_json(&self, uid: &str) -> Option<Value> {
        Some(self.timeline_snapshot(uid)?.json())
    }
}

/// A pod's timeline as taken under the lock, rendered without it.
pub struct TimelineSnapshot {
    uid: String,
    node: Option<String>,
    summary: Map<String, Value>,
    events: Vec<Stored>,
    graces: Vec<(String, Option<f64>)>,
    complete: bool,
}

impl TimelineSnapshot {
    /// Kernel events of different CPUs, and events dated to an earlier fact (ContainerCreated
    /// at its cgroup's mkdir, a hook told at the stop signal), arrive out of order: timelines
    /// serve them in time order.
    fn sort(&mut self) {
        self.events.sort_by_key(|e| e.ts_wall_ns);
    }

    /// The summary with the shutdown: `termination` of each container (null while running),
    /// `shutdown_order` and `sidecars_outlived_apps`, from the served events.
    fn summary_with_shutdown(&self) -> Map<String, Value> {
        let mut obj = self.summary.clone();
        let steps: Vec<Step> = self
            .events
            .iter()
            .map(|e| Step {
                ns: e.ts_wall_ns.into(),
                container_id: e.container_id.as_deref(),
                kind: &e.kind,
            })
            .collect();
        let containers = obj["containers"].as_array().cloned().unwrap_or_default();
        let infos: Vec<ContainerInfo> = containers
            .iter()
            .filter_map(|c| {
                let id = c["id"].as_str()?;
                Some(ContainerInfo {
                    id,
                    name: c["name"].as_str(),
                    kind: serde_json::from_value(c["kind"].clone()).ok(),
                    grace_s: self
                        .graces
                        .iter()
                        .find(|(g, _)| g == id)
                        .and_then(|(_, s)| *s),
                })
            })
            .collect();
        let mut shutdown = summarize(&steps, &infos);
        if let Some(Value::Array(list)) = obj.get_mut("containers") {
            for c in list.iter_mut().filter_map(Value::as_object_mut) {
                let term = c["id"]
                    .as_str()
                    .and_then(|id| shutdown.terminations.remove(id));
                c.insert("termination".into(), json!(term));
            }
        }
        obj.insert("shutdown_order".into(), json!(shutdown.order));
        obj.insert(
            "sidecars_outlived_apps".into(),
            json!(shutdown.sidecars_outlived_apps),
        );
        obj
    }

    pub fn json(mut self) -> Value {
        self.sort();
        let mut obj = self.summary_with_shutdown();
        let events: Vec<Value> = self
            .events
            .iter()
            .filter_map(|e| e.to_map(Fields::Timeline).ok().map(Value::Object))
            .collect();
        obj.insert("events".into(), Value::Array(events));
        obj.insert("complete".into(), self.complete.into());
        Value::Object(obj)
    }

    /// The timeline as text, by core's renderer: the header from the pod's summary (the
    /// same fields as the JSON timeline), then its served events.
    pub fn text(mut self) -> String {
        self.sort();
        let mut summary = self.summary_with_shutdown();
        summary.insert("events".into(), json!([]));
        let fallback = || Timeline {
            uid: self.uid.clone(),
            namespace: None,
            name: None,
            qos: None,
            owner: None,
            node: self.node.clone(),
            state: "Unknown".into(),
            containers: Vec::new(),
            shutdown_order: Vec::new(),
            sidecars_outlived_apps: None,
            events: Vec::new(),
        };
        // The summary is built from typed values: it reads back; the fallback still serves the
        // events should it not.
        let mut t: Timeline =
            serde_json::from_value(Value::Object(summary)).unwrap_or_else(|_| fallback());
        t.events = self
            .events
            .iter()
            .map(|e| TimelineEvent::served(e))
            .collect();
        podlife_core::text::to_text(&t)
    }
}

/// One `/events` page as JSON text, at most `max_bytes` of events: `{"events": [...],
/// "next": <id of the last event served, the cursor for ?after=>, "more": <whether more
/// matching events were left out, by the byte bound or the limit>}`. Built outside any lock
/// from the handles `History::select` took. Without a cursor the newest events are kept when
/// the bound cuts; with one, the oldest. `expired_after`: the cursor is older than what is
/// kept, so the page starts with an `EventsExpired` marker instead of silently skipping.
pub fn events_page(
    picked: &[Stored],
    cursor: bool,
    limit: usize,
    max_bytes: usize,
    expired_after: Option<u64>,
) -> String {
    // Two passes: the sizes first (each event's text dropped at once), then the chosen events
    // written into one buffer of the right size. The page is then the only large allocation:
    // holding every event's text until the end doubled the peak.
    let mut bytes = 0;
    let mut fits = |e: &Stored, taken: usize| {
        let len = e.to_json(Fields::Events).len() + 1;
        if bytes + len > max_bytes && taken > 0 {
            return false;
        }
        bytes += len;
        true
    };
    let chosen: &[Stored] = if cursor {
        let n = (0..picked.len())
            .take_while(|&i| fits(&picked[i], i))
            .count();
        &picked[..n]
    } else {
        let n = (0..picked.len())
            .take_while(|&i| fits(&picked[picked.len() - 1 - i], i))
            .count();
        &picked[picked.len() - n..]
    };
    let more = chosen.len() < picked.len() || (cursor && picked.len() >= limit);
    let next = chosen.last().map(|e| e.seq);
    let mut out = String::with_capacity(bytes + 256);
    out.push_str("{\"events\":[");
    if let Some(after) = expired_after {
        let marker = json!({
            "type": "EventsExpired",
            "source": "agent",
            "after": after.to_string(),
            "message": "events after this id have left retention; the page resumes at the oldest kept",
        });
        out.push_str(&marker.to_string());
        if !chosen.is_empty() {
            out.push(',');
        }
    }
    for (i, e) in chosen.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&e.to_json(Fields::Events));
    }
    out.push_str("],\"next\":");
    out.push_str(&next.map_or("null".to_string(), |n| format!("\"{n}\"")));
    out.push_str(",\"more\":");
    out.push_str(if more { "true" } else { "false" });
    out.push('}');
    out
}

#[cfg(test)]
mod tests;
