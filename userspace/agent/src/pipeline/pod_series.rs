//! The per-pod counter families (starts, exits, restarts, OOM kills, ...), held compactly and
//! written in the Prometheus text format at scrape time.
//!
//! Why not the prometheus crate's vectors: each of their series costs about 1 KB (label pairs,
//! descriptors, a hash map entry, our own copy of its labels to delete it later), and a
//! container has about a dozen series (the alerting counters exist at 0 from its start): the
//! metrics were most of the agent's memory per pod. Here a series is one small record in its
//! pod's list, its label values shared (interned) with every other pod's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::metrics::{PodLabels, POD_LABELS};

/// A per-pod counter family: name (without the `podlife_` prefix), help, extra label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Starts,
    Exits,
    Restarts,
    Oom,
    Exec,
    ProbeFail,
    Ignored,
    Overrun,
    Crash,
    Refused,
}

impl Family {
    pub const ALL: [Family; 10] = [
        Family::Starts,
        Family::Exits,
        Family::Restarts,
        Family::Oom,
        Family::Exec,
        Family::ProbeFail,
        Family::Ignored,
        Family::Overrun,
        Family::Crash,
        Family::Refused,
    ];

    fn def(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Family::Starts => ("container_starts_total", "Containers started", &[]),
            Family::Exits => (
                "container_exits_total",
                "Container exits by reason",
                &["reason"],
            ),
            Family::Restarts => (
                "container_restarts_total",
                "Container restarts by what ended the instance before (unknown: nothing did)",
                &["cause"],
            ),
            Family::Oom => (
                "container_oom_kills_total",
                "OOM kills by the limit that fired and whether the victim was the container init",
                &["limit_scope", "victim"],
            ),
            Family::Exec => (
                "exec_sessions_total",
                "Exec sessions (probes, kubectl exec) by result",
                &["kind", "result"],
            ),
            Family::ProbeFail => (
                "probe_failures_total",
                "Failed probes by probe_kind (exec, tcp, http, grpc) and reason (exit_code, \
                 timeout, connection_refused, reset)",
                &["probe_kind", "reason"],
            ),
            Family::Ignored => (
                "stop_signals_ignored_total",
                "Stop signals the container init ignored",
                &[],
            ),
            Family::Overrun => (
                "grace_period_overruns_total",
                "Containers SIGKILLed after their grace period",
                &[],
            ),
            Family::Crash => (
                "process_crashes_total",
                "Processes killed by a crash signal",
                &["signal"],
            ),
            Family::Refused => (
                "connections_refused_total",
                "Connections a pod address refused (nothing listened on the port), by the pod's \
                 phase: starting, running, terminating",
                &["phase"],
            ),
        }
    }
}

/// Extra label values of one family: at most two.
const MAX_EXTRA: usize = 2;

#[derive(Clone)]
struct Series {
    family: Family,
    container: Arc<str>,
    extra: [Option<Arc<str>>; MAX_EXTRA],
    value: u64,
}

#[derive(Clone)]
struct PodEntry {
    namespace: Arc<str>,
    pod: Arc<str>,
    uid: Arc<str>,
    series: Vec<Series>,
}

/// The per-pod series of every family, by pod uid. Cloned only when a scrape still encodes
/// the previous state as the pipeline changes it (`Arc::make_mut` in metrics.rs).
#[derive(Default, Clone)]
pub struct PodSeries {
    pods: HashMap<Arc<str>, PodEntry>,
    /// Label values shared between series (namespaces, container names, reasons, causes...).
    interned: HashSet<Arc<str>>,
}

impl PodSeries {
    fn intern(interned: &mut HashSet<Arc<str>>, s: &str) -> Arc<str> {
        if let Some(a) = interned.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        interned.insert(a.clone());
        a
    }

    /// The counter of a pod's series, created at 0 if new.
    pub fn series(&mut self, family: Family, labels: &PodLabels, extra: &[&str]) -> &mut u64 {
        debug_assert_eq!(extra.len(), family.def().2.len(), "{family:?}");
        let interned = &mut self.interned;
        if !self.pods.contains_key(labels.uid.as_str()) {
            let uid: Arc<str> = Arc::from(labels.uid.as_str());
            let e = PodEntry {
                namespace: Self::intern(interned, &labels.namespace),
                pod: Arc::from(labels.pod.as_str()),
                uid: uid.clone(),
                series: Vec::new(),
            };
            self.pods.insert(uid, e);
        }
        let entry = self
            .pods
            .get_mut(labels.uid.as_str())
            .expect("inserted above");
        // The pod's names may be learnt after its first series (metadata comes later).
        if *entry.namespace != *labels.namespace {
            entry.namespace = Self::intern(interned, &labels.namespace);
        }
        if *entry.pod != *labels.pod {
            entry.pod = Arc::from(labels.pod.as_str());
        }
        let same = |s: &Series| {
            s.family == family
                && *s.container == *labels.container
                && (0..MAX_EXTRA).all(|i| s.extra[i].as_deref() == extra.get(i).copied())
        };
        let at = match entry.series.iter().position(same) {
            Some(i) => i,
            None => {
                let mut x: [Option<Arc<str>>; MAX_EXTRA] = Default::default();
                for (slot, v) in x.iter_mut().zip(extra) {
                    *slot = Some(Self::intern(interned, v));
                }
                entry.series.push(Series {
                    family,
                    container: Self::intern(interned, &labels.container),
                    extra: x,
                    value: 0,
                });
                entry.series.len() - 1
            }
        };
        &mut entry.series[at].value
    }

    /// Drop every series of a pod.
    pub fn forget(&mut self, uid: &str) {
        self.pods.remove(uid);
        // Values no series uses any more (only the table holds them).
        if self.pods.is_empty() || self.interned.len() > 4 * self.pods.len() + 64 {
            self.interned.retain(|a| Arc::strong_count(a) > 1);
        }
    }

    /// The families in the text exposition format, names sorted as the prometheus crate does.
    /// `keep` says which pod labels are exported; a dropped one is written empty, which folds
    /// the series that differ only by it into one (their values summed).
    pub fn encode(&self, keep: [bool; 4], out: &mut String) {
        let mut families: Vec<Family> = Family::ALL.to_vec();
        families.sort_by_key(|f| f.def().0);
        for family in families {
            let (name, help, extra_names) = family.def();
            // Label names in alphabetical order, as positions into [pod labels.., extras..].
            let mut order: Vec<(&str, usize)> = POD_LABELS
                .iter()
                .chain(extra_names)
                .enumerate()
                .map(|(i, n)| (*n, i))
                .collect();
            order.sort_unstable();
            let mut folded: BTreeMap<Vec<&str>, u64> = BTreeMap::new();
            for p in self.pods.values() {
                for s in p.series.iter().filter(|s| s.family == family) {
                    let pod = [&*p.namespace, &*p.pod, &*p.uid, &*s.container];
                    let values: Vec<&str> = order
                        .iter()
                        .map(|(_, i)| match *i {
                            i if i < 4 => {
                                if keep[i] {
                                    pod[i]
                                } else {
                                    ""
                                }
                            }
                            i => s.extra[i - 4].as_deref().unwrap_or(""),
                        })
                        .collect();
                    *folded.entry(values).or_default() += s.value;
                }
            }
            if folded.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP podlife_{name} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE podlife_{name} counter");
            for (values, v) in folded {
                let _ = write!(out, "podlife_{name}{{");
                for (k, ((label, _), value)) in order.iter().zip(values).enumerate() {
                    let sep = if k == 0 { "" } else { "," };
                    let _ = write!(out, "{sep}{label}=\"{}\"", escape_value(value));
                }
                let _ = writeln!(out, "}} {v}");
            }
        }
    }

    /// Series held (for tests and the memory benchmark's arithmetic).
    pub fn len(&self) -> usize {
        self.pods.values().map(|p| p.series.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return s.into();
    }
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(uid: &str, container: &str) -> PodLabels {
        PodLabels {
            namespace: "default".into(),
            pod: format!("web-{uid}"),
            uid: uid.into(),
            container: container.into(),
        }
    }

    #[test]
    fn a_series_is_found_again_by_its_labels() {
        let mut s = PodSeries::default();
        *s.series(Family::Exits, &labels("u1", "app"), &["Error"]) += 1;
        *s.series(Family::Exits, &labels("u1", "app"), &["Error"]) += 1;
        *s.series(Family::Exits, &labels("u1", "app"), &["Completed"]) += 1;
        *s.series(Family::Exits, &labels("u1", "side"), &["Error"]) += 1;
        assert_eq!(s.len(), 3);
        let mut text = String::new();
        s.encode([true; 4], &mut text);
        assert!(text.contains(
            "podlife_container_exits_total{container=\"app\",namespace=\"default\",pod=\"web-u1\",reason=\"Error\",uid=\"u1\"} 2\n"
        ), "{text}");
        assert_eq!(
            text.matches("# TYPE podlife_container_exits_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = PodSeries::default();
        *s.series(Family::Starts, &labels("u1", "a\"b\\c\nd"), &[]) += 1;
        let mut text = String::new();
        s.encode([true; 4], &mut text);
        assert!(text.contains(r#"container="a\"b\\c\nd""#), "{text}");
    }

    #[test]
    fn forgetting_a_pod_drops_its_series_and_unused_values() {
        let mut s = PodSeries::default();
        *s.series(Family::Crash, &labels("u1", "app"), &["SIGSEGV"]) += 1;
        *s.series(Family::Crash, &labels("u2", "app"), &["SIGABRT"]) += 1;
        s.forget("u1");
        s.forget("u2");
        assert!(s.is_empty());
        assert!(
            s.interned.is_empty(),
            "interned values outlive their series"
        );
        let mut text = String::new();
        s.encode([true; 4], &mut text);
        assert_eq!(text, "");
    }
}
