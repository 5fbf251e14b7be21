//! Rendered lifecycle events by pod, in memory (bounded) and served from here: live events
//! and those an earlier run wrote to the store look the same.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

/// One kept event as compact JSON text (parsed again when served): a third of the memory of a
/// `serde_json::Value`, and most events are never asked for.
#[derive(Debug)]
pub struct Stored {
    /// The pod's uid, shared with the other events of the pod: filters need no parse.
    pub uid: Arc<str>,
    pub ts_wall_ns: Option<i64>,
    /// The event's `type`, asked for without parsing.
    pub kind: Box<str>,
    json: Box<str>,
}

impl Stored {
    fn new(uid: Arc<str>, event: &Value) -> Self {
        Self {
            uid,
            ts_wall_ns: event.get("ts_wall_ns").and_then(Value::as_i64),
            kind: event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            json: event.to_string().into(),
        }
    }

    pub fn value(&self) -> Value {
        // Written by `new` from a Value: it parses.
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

pub struct History {
    by_pod: HashMap<Arc<str>, Vec<Arc<Stored>>>,
    /// Order in which pods were first seen, for eviction of the oldest.
    pod_order: VecDeque<Arc<str>>,
    /// Every event in arrival order, for /events (bounded).
    log: VecDeque<Arc<Stored>>,
    max_pods: usize,
    max_events_per_pod: usize,
    max_log: usize,
    pub evicted_pods: u64,
    pub next_seq: u64,
}

impl History {
    pub fn new(max_pods: usize, max_events_per_pod: usize, max_log: usize) -> Self {
        Self {
            by_pod: HashMap::new(),
            pod_order: VecDeque::new(),
            log: VecDeque::new(),
            max_pods,
            max_events_per_pod,
            max_log,
            evicted_pods: 0,
            next_seq: 0,
        }
    }

    /// Add a rendered event (must have "uid" and "ts_wall_ns"); gives it a sequence number.
    pub fn push(&mut self, mut event: Value) -> Arc<Value> {
        if let Some(obj) = event.as_object_mut() {
            obj.insert("seq".into(), self.next_seq.into());
        }
        self.next_seq += 1;
        let name = event.get("uid").and_then(Value::as_str).unwrap_or("");
        let uid = match self.by_pod.get_key_value(name) {
            Some((known, _)) => known.clone(),
            None => {
                let uid: Arc<str> = Arc::from(name);
                self.pod_order.push_back(uid.clone());
                while self.pod_order.len() > self.max_pods {
                    if let Some(old) = self.pod_order.pop_front() {
                        self.by_pod.remove(&old);
                        self.evicted_pods += 1;
                    }
                }
                uid
            }
        };
        let stored = Arc::new(Stored::new(uid.clone(), &event));
        let events = self.by_pod.entry(uid).or_default();
        if events.len() >= self.max_events_per_pod {
            // Keep the start of the story and the most recent part; drop the middle.
            events.remove(self.max_events_per_pod / 2);
        }
        events.push(stored.clone());
        self.log.push_back(stored);
        while self.log.len() > self.max_log {
            self.log.pop_front();
        }
        Arc::new(event)
    }

    pub fn pod(&self, uid: &str) -> Option<&[Arc<Stored>]> {
        self.by_pod.get(uid).map(Vec::as_slice)
    }

    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.pod_order.iter().map(|u| &**u)
    }

    /// Events at or after `since_wall_ns`, oldest first, at most `limit` (the newest ones).
    pub fn since(&self, since_wall_ns: i128, uid: Option<&str>, limit: usize) -> Vec<Value> {
        let mut out: Vec<Value> = self
            .log
            .iter()
            .rev()
            .filter(|e| e.ts_wall_ns.is_none_or(|t| t as i128 >= since_wall_ns))
            .filter(|e| uid.is_none_or(|u| *e.uid == *u))
            .take(limit)
            .map(|e| e.value())
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounded_by_pods_and_events() {
        let mut h = History::new(2, 4, 5);
        for uid in ["a", "b", "c"] {
            h.push(json!({"uid": uid, "type": "PodAdmitted", "ts_wall_ns": 1}));
        }
        assert!(h.pod("a").is_none(), "oldest pod evicted");
        assert_eq!(h.evicted_pods, 1);
        for i in 0..10 {
            h.push(json!({"uid": "c", "type": "ExecFinished", "n": i, "ts_wall_ns": 10 + i}));
        }
        let c = h.pod("c").unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(&*c[0].kind, "PodAdmitted", "the start of the story is kept");
        assert_eq!(c[3].value()["n"], 9);
        assert_eq!(
            c[3].value()["seq"],
            12,
            "the sequence number is kept with the event"
        );
        // The log (5) holds only c's last events here: filters are tested below.
        let kept: Vec<i64> = h
            .since(0, None, 100)
            .iter()
            .map(|e| e["n"].as_i64().unwrap())
            .collect();
        assert_eq!(kept, vec![5, 6, 7, 8, 9]);
    }

    #[test]
    fn since_filters_uid_and_time_then_keeps_the_newest() {
        // A log big enough to hold every pod's events: a log holding only the filtered events
        // cannot tell a filter from no filter. (Through the router: views/tests.rs.)
        let mut h = History::new(10, 100, 100);
        for n in 0..12i64 {
            let uid = ["a", "b", "c"][n as usize % 3];
            h.push(json!({"uid": uid, "n": n, "ts_wall_ns": 10 + n}));
        }
        let got =
            |v: Vec<Value>| -> Vec<i64> { v.iter().map(|e| e["n"].as_i64().unwrap()).collect() };
        assert_eq!(got(h.since(0, Some("b"), 100)), vec![1, 4, 7, 10]);
        assert_eq!(got(h.since(15, None, 100)), vec![5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(got(h.since(15, Some("c"), 100)), vec![5, 8, 11]);
        assert_eq!(got(h.since(0, None, 2)), vec![10, 11]);
        assert_eq!(got(h.since(0, Some("a"), 2)), vec![6, 9]);
        assert!(h.since(0, Some("d"), 100).is_empty());
    }
}
