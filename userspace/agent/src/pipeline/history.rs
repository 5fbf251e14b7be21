//! Rendered lifecycle events by pod, in memory (bounded) and served from here: live events
//! and those an earlier run wrote to the store look the same.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use podlife_core::ServedEvent;

/// One kept event. Typed: a few hundred bytes, serialized only when served or stored.
pub type Stored = Arc<ServedEvent>;

pub struct History {
    by_pod: HashMap<Arc<str>, Vec<Stored>>,
    /// (namespace, name) of each pod, from its events: a removed pod keeps its names for as
    /// long as its events are kept, also after a restart (they are in the stored lines).
    names: HashMap<Arc<str>, (Box<str>, Box<str>)>,
    /// Order in which pods were first seen, for eviction of the oldest.
    pod_order: VecDeque<Arc<str>>,
    /// Every event in arrival order, for /events (bounded).
    log: VecDeque<Stored>,
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

    /// Add an event. A new one (seq 0) gets the next sequence number (its `id` on the API);
    /// one restored from the store keeps its own, and later ones continue after it.
    pub fn push(&mut self, mut event: ServedEvent) -> Stored {
        let seq = if event.seq >= self.next_seq {
            event.seq
        } else {
            self.next_seq
        };
        event.seq = seq;
        self.next_seq = seq + 1;
        let uid = match self.by_pod.get_key_value(&*event.uid) {
            Some((known, _)) => known.clone(),
            None => {
                let uid = event.uid.clone();
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
        // One allocation of the uid per pod, however many events it has.
        event.uid = uid.clone();
        if let Some((ns, name)) = &event.names {
            if !self.names.contains_key(&uid) {
                self.names.insert(uid.clone(), (ns.clone(), name.clone()));
            }
        }
        let stored = Arc::new(event);
        let events = self.by_pod.entry(uid).or_default();
        if events.len() >= self.max_events_per_pod {
            // Keep the start of the story and the most recent part; drop the middle.
            events.remove(self.max_events_per_pod / 2);
        }
        events.push(stored.clone());
        self.log.push_back(stored.clone());
        while self.log.len() > self.max_log {
            if let Some(gone) = self.log.pop_front() {
                self.expired_upto = Some(gone.seq);
            }
        }
        stored
    }

    pub fn pod(&self, uid: &str) -> Option<&[Stored]> {
        self.by_pod.get(uid).map(Vec::as_slice)
    }

    /// (namespace, name) of a pod as its events told them.
    pub fn names(&self, uid: &str) -> Option<(&str, &str)> {
        self.names.get(uid).map(|(ns, n)| (&**ns, &**n))
    }

    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.pod_order.iter().map(|u| &**u)
    }

    /// The events a query asks for, oldest first, as shared handles (cheap to take under a
    /// lock; rendered after it). With `after`, the oldest `limit` events whose seq is larger;
    /// without, the newest `limit`.
    pub fn select(&self, q: &EventQuery<'_>) -> Vec<Stored> {
        let keep = |e: &&Stored| {
            e.ts_wall_ns as i128 >= q.since_wall_ns && q.uid.is_none_or(|u| *e.uid == *u)
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
                let mut out: Vec<Stored> = self
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

/// An event for tests: `uid`'s exec of pid `n` at wall time `ts`.
#[cfg(test)]
pub fn test_event(uid: &str, n: u32, ts: i64) -> ServedEvent {
    ServedEvent {
        seq: 0,
        ts_wall_ns: ts,
        uid: Arc::from(uid),
        names: None,
        container: None,
        container_id: None,
        source: podlife_core::Source::Kernel,
        kind: podlife_core::LifecycleKind::ExecStarted {
            pid: n,
            argv: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podlife_core::LifecycleKind;

    /// The pid of a test event (its marker).
    fn n(e: &ServedEvent) -> u32 {
        match e.kind {
            LifecycleKind::ExecStarted { pid, .. } => pid,
            _ => u32::MAX,
        }
    }

    fn since(h: &History, since_wall_ns: i128, uid: Option<&str>, limit: usize) -> Vec<u32> {
        let q = EventQuery {
            since_wall_ns,
            uid,
            after: None,
            limit,
        };
        h.select(&q).iter().map(|e| n(e)).collect()
    }

    fn admitted(uid: &str, ts: i64) -> ServedEvent {
        ServedEvent {
            kind: LifecycleKind::PodAdmitted,
            ..test_event(uid, 0, ts)
        }
    }

    #[test]
    fn bounded_by_pods_and_events() {
        let mut h = History::new(2, 4, 5);
        for uid in ["a", "b", "c"] {
            h.push(admitted(uid, 1));
        }
        assert!(h.pod("a").is_none(), "oldest pod evicted");
        assert_eq!(h.evicted_pods, 1);
        for i in 0..10 {
            h.push(test_event("c", i, 10 + i64::from(i)));
        }
        let c = h.pod("c").unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[0].kind,
            LifecycleKind::PodAdmitted,
            "the start of the story is kept"
        );
        assert_eq!(n(&c[3]), 9);
        assert_eq!(c[3].seq, 12, "the sequence number is kept with the event");
        // The log (5) holds only c's last events here: filters are tested below.
        assert_eq!(since(&h, 0, None, 100), vec![5, 6, 7, 8, 9]);
    }

    #[test]
    fn since_filters_uid_and_time_then_keeps_the_newest() {
        // A log big enough to hold every pod's events: a log holding only the filtered events
        // cannot tell a filter from no filter. (Through the router: views/tests.rs.)
        let mut h = History::new(10, 100, 100);
        for i in 0..12u32 {
            let uid = ["a", "b", "c"][i as usize % 3];
            h.push(test_event(uid, i, 10 + i64::from(i)));
        }
        assert_eq!(since(&h, 0, Some("b"), 100), vec![1, 4, 7, 10]);
        assert_eq!(since(&h, 15, None, 100), vec![5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(since(&h, 15, Some("c"), 100), vec![5, 8, 11]);
        assert_eq!(since(&h, 0, None, 2), vec![10, 11]);
        assert_eq!(since(&h, 0, Some("a"), 2), vec![6, 9]);
        assert!(since(&h, 0, Some("d"), 100).is_empty());
    }

    #[test]
    fn after_a_cursor_pages_forward_and_without_one_takes_the_newest() {
        let mut h = History::new(10, 100, 100);
        for i in 0..10 {
            let uid = if i % 2 == 0 { "a" } else { "b" };
            h.push(test_event(uid, i, i64::from(i)));
        }
        let q = |after, uid, limit| EventQuery {
            since_wall_ns: i128::MIN,
            uid,
            after,
            limit,
        };
        let seqs = |v: Vec<Stored>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
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
        let stored: Vec<ServedEvent> = (0..5)
            .map(|i| (*first.push(test_event("a", i, i64::from(i)))).clone())
            .collect();
        assert_eq!(stored[0].seq, 1000);
        assert_eq!(
            stored[0].to_map(podlife_core::Fields::All).unwrap()["id"],
            "1000"
        );
        assert!(first.expired_after(1000), "two events left the 3-event log");
        assert!(!first.expired_after(1001));
        // A restart: stored events keep their ids, new ones continue after them even when
        // the clock floor is lower.
        let mut second = History::new(10, 100, 100);
        second.start_ids_at(10);
        for e in stored {
            second.push(e);
        }
        let next = second.push(test_event("a", 9, 9));
        assert_eq!(next.seq, 1005);
    }

    #[test]
    fn names_come_from_the_events_and_go_with_the_pod() {
        let mut h = History::new(1, 10, 10);
        h.push(admitted("a", 1));
        assert_eq!(h.names("a"), None);
        h.push(ServedEvent {
            kind: LifecycleKind::PodRemoved,
            names: Some(("shop".into(), "web".into())),
            ..test_event("a", 0, 2)
        });
        assert_eq!(h.names("a"), Some(("shop", "web")));
        h.push(admitted("b", 3));
        assert_eq!(h.names("a"), None, "evicted with its pod");
    }

    #[test]
    fn a_pod_s_events_share_one_uid() {
        let mut h = History::new(10, 10, 10);
        let one = h.push(test_event("a", 1, 1));
        let two = h.push(test_event("a", 2, 2));
        assert!(Arc::ptr_eq(&one.uid, &two.uid));
    }
}
