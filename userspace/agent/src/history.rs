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
    /// Served as `seq`: the cursor of `/events?after=`.
    pub seq: u64,
    pub ts_wall_ns: Option<i64>,
    /// The event's `type`, asked for without parsing.
    pub kind: Box<str>,
    json: Box<str>,
}

impl Stored {
    fn new(uid: Arc<str>, event: &Value) -> Self {
        Self {
            uid,
            seq: event.get("seq").and_then(Value::as_u64).unwrap_or(0),
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
    /// (namespace, name) of each pod, from its events: a removed pod keeps its names for as
    /// long as its events are kept, also after a restart (they are in the stored lines).
    names: HashMap<Arc<str>, (Box<str>, Box<str>)>,
    /// Order in which pods were first seen, for eviction of the oldest.
    pod_order: VecDeque<Arc<str>>,
    /// Every event in arrival order, for /events (bounded).
    log: VecDeque<Arc<Stored>>,
    max_pods: usize,
    max_events_per_pod: usize,
    max_log: usize,
    pub evicted_pods: u64,
    pub next_seq: u64,
    /// The newest seq no longer served (left the bounded log, or left on disk at start).
    expired_upto: Option<u64>,
}

impl History {
    pub fn new(max_pods: usize, max_events_per_pod: usize, max_log: usize) -> Self {
        Self {
            by_pod: HashMap::new(),
            names: HashMap::new(),
            pod_order: VecDeque::new(),
            log: VecDeque::new(),
            max_pods,
            max_events_per_pod,
            max_log,
            evicted_pods: 0,
            next_seq: 0,
            expired_upto: None,
        }
    }

    /// Ids continue from here (at least): the agent starts them at the wall clock in µs, so
    /// they increase across restarts even when the store was lost.
    pub fn start_ids_at(&mut self, floor: u64) {
        self.next_seq = self.next_seq.max(floor);
    }

    /// Add a rendered event (must have "uid" and "ts_wall_ns"). A new event gets the next
    /// sequence number (its `id` on the API); one restored from the store keeps its own, and
    /// later ones continue after it.
    pub fn push(&mut self, mut event: Value) -> Arc<Value> {
        let kept = event
            .get("seq")
            .and_then(Value::as_u64)
            .filter(|&s| s >= self.next_seq);
        let seq = kept.unwrap_or(self.next_seq);
        if let Some(obj) = event.as_object_mut() {
            obj.insert("seq".into(), seq.into());
            obj.insert("id".into(), seq.to_string().into());
        }
        self.next_seq = seq + 1;
        let name = event.get("uid").and_then(Value::as_str).unwrap_or("");
        let uid = match self.by_pod.get_key_value(name) {
            Some((known, _)) => known.clone(),
            None => {
                let uid: Arc<str> = Arc::from(name);
                self.pod_order.push_back(uid.clone());
                while self.pod_order.len() > self.max_pods {
                    if let Some(old) = self.pod_order.pop_front() {
                        self.by_pod.remove(&old);
                        self.names.remove(&old);
                        self.evicted_pods += 1;
                    }
                }
                uid
            }
        };
        if let (Some(ns), Some(name)) = (
            event.get("namespace").and_then(Value::as_str),
            event.get("pod").and_then(Value::as_str),
        ) {
            if !self.names.contains_key(&uid) {
                self.names.insert(uid.clone(), (ns.into(), name.into()));
            }
        }
        let stored = Arc::new(Stored::new(uid.clone(), &event));
        let events = self.by_pod.entry(uid).or_default();
        if events.len() >= self.max_events_per_pod {
            // Keep the start of the story and the most recent part; drop the middle.
            events.remove(self.max_events_per_pod / 2);
        }
        events.push(stored.clone());
        self.log.push_back(stored);
        while self.log.len() > self.max_log {
            if let Some(gone) = self.log.pop_front() {
                self.expired_upto = Some(gone.seq);
            }
        }
        Arc::new(event)
    }

    pub fn pod(&self, uid: &str) -> Option<&[Arc<Stored>]> {
        self.by_pod.get(uid).map(Vec::as_slice)
    }

    /// (namespace, name) of a pod as its events told them.
    pub fn names(&self, uid: &str) -> Option<(&str, &str)> {
        self.names.get(uid).map(|(ns, n)| (&**ns, &**n))
    }

    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.pod_order.iter().map(|u| &**u)
    }

    /// Events at or after `since_wall_ns`, oldest first, at most `limit` (the newest ones).
    pub fn since(&self, since_wall_ns: i128, uid: Option<&str>, limit: usize) -> Vec<Value> {
        let q = EventQuery {
            since_wall_ns,
            uid,
            after: None,
            limit,
        };
        self.select(&q).iter().map(|e| e.value()).collect()
    }

    /// The events a query asks for, oldest first, as shared handles (cheap to take under a
    /// lock; rendered after it). With `after`, the oldest `limit` events whose seq is larger;
    /// without, the newest `limit`.
    pub fn select(&self, q: &EventQuery<'_>) -> Vec<Arc<Stored>> {
        let keep = |e: &&Arc<Stored>| {
            e.ts_wall_ns.is_none_or(|t| t as i128 >= q.since_wall_ns)
                && q.uid.is_none_or(|u| *e.uid == *u)
        };
        match q.after {
            Some(after) => {
                // The log is in seq order: skip to the first event after the cursor.
                let start = self.log.partition_point(|e| e.seq <= after);
                self.log
                    .range(start..)
                    .filter(keep)
                    .take(q.limit)
                    .cloned()
                    .collect()
            }
            None => {
                let mut out: Vec<Arc<Stored>> = self
                    .log
                    .iter()
                    .rev()
                    .filter(keep)
                    .take(q.limit)
                    .cloned()
                    .collect();
                out.reverse();
                out
            }
        }
    }

    /// The seq of the oldest event still kept.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.log.front().map(|e| e.seq)
    }

    /// Events older than the oldest kept one existed but are not served (the store held more
    /// than the load budget): a cursor before it has lost events.
    pub fn mark_expired_before_oldest(&mut self) {
        if let Some(oldest) = self.oldest_seq() {
            self.expired_upto = Some(oldest.saturating_sub(1));
        }
    }

    /// Whether events after `after` have left retention (the client missed some).
    pub fn expired_after(&self, after: u64) -> bool {
        self.expired_upto.is_some_and(|gone| gone > after)
    }
}

/// What `/events` asks the history for.
#[derive(Debug, Clone)]
pub struct EventQuery<'a> {
    pub since_wall_ns: i128,
    pub uid: Option<&'a str>,
    pub after: Option<u64>,
    pub limit: usize,
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

    #[test]
    fn after_a_cursor_pages_forward_and_without_one_takes_the_newest() {
        let mut h = History::new(10, 100, 100);
        for i in 0..10 {
            let uid = if i % 2 == 0 { "a" } else { "b" };
            h.push(json!({"uid": uid, "type": "ExecFinished", "n": i, "ts_wall_ns": i}));
        }
        let q = |after, uid, limit| EventQuery {
            since_wall_ns: i128::MIN,
            uid,
            after,
            limit,
        };
        let seqs = |v: Vec<Arc<Stored>>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(h.select(&q(None, None, 3))),
            [7, 8, 9],
            "newest, in order"
        );
        assert_eq!(
            seqs(h.select(&q(Some(2), None, 3))),
            [3, 4, 5],
            "oldest after 2"
        );
        assert_eq!(seqs(h.select(&q(Some(2), Some("a"), 2))), [4, 6]);
        assert_eq!(seqs(h.select(&q(Some(9), None, 3))), Vec::<u64>::new());
        assert_eq!(h.oldest_seq(), Some(0));
    }

    #[test]
    fn ids_survive_a_restore_and_continue_after_it_and_expiry_is_told() {
        let mut first = History::new(10, 100, 3);
        first.start_ids_at(1000);
        let stored: Vec<Value> = (0..5)
            .map(|i| {
                (*first.push(json!({"uid": "a", "type": "X", "n": i, "ts_wall_ns": i}))).clone()
            })
            .collect();
        assert_eq!(stored[0]["id"], "1000");
        assert!(first.expired_after(1000), "two events left the 3-event log");
        assert!(!first.expired_after(1001));
        // A restart: stored events keep their ids, new ones continue after them even when
        // the clock floor is lower.
        let mut second = History::new(10, 100, 100);
        second.start_ids_at(10);
        for e in stored {
            second.push(e);
        }
        let next = second.push(json!({"uid": "a", "type": "Y", "ts_wall_ns": 9}));
        assert_eq!(next["seq"], 1005);
        assert_eq!(next["id"], "1005");
    }

    #[test]
    fn names_come_from_the_events_and_go_with_the_pod() {
        let mut h = History::new(1, 10, 10);
        h.push(json!({"uid": "a", "type": "PodAdmitted", "ts_wall_ns": 1}));
        assert_eq!(h.names("a"), None);
        h.push(json!({"uid": "a", "type": "PodRemoved", "namespace": "shop", "pod": "web", "ts_wall_ns": 2}));
        assert_eq!(h.names("a"), Some(("shop", "web")));
        h.push(json!({"uid": "b", "type": "PodAdmitted", "ts_wall_ns": 3}));
        assert_eq!(h.names("a"), None, "evicted with its pod");
    }
}
