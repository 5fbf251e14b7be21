//! Prometheus metrics on an explicit registry. Label values are bounded: namespace, pod, uid,
//! container (KSM names, so series join with kube-state-metrics) and small enums. Never a pid,
//! container id, path or argv. A removed pod's series are deleted a few scrapes later.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use podlife_core::{LifecycleKind, RestartCause, ServedEvent};
use prometheus::{
    histogram_opts, opts, Encoder as _, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Registry, TextEncoder,
};

use super::pod_series::{Family, PodSeries};

/// Identity of the pod and container an event belongs to, as metric label values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PodLabels {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
}

/// `what` label values of podlife_evictions_total.
pub const EVICTED: [&str; 12] = [
    "pods",
    "containers",
    "processes",
    "cgroups",
    "events",
    "exec_sessions",
    "pending",
    "buffered_events",
    "probe_states",
    "probe_messages",
    "probe_lookup_pods",
    "history_pods",
];
/// `result` label values of podlife_kube_events_total.
pub const KUBE_EVENT_RESULTS: [&str; 4] = ["created", "patched", "aggregated", "failed"];
/// `reason` label values of podlife_kube_events_dropped_total.
pub const KUBE_EVENT_DROPS: [&str; 3] = ["rate_limited", "lagged", "series_evicted"];
/// `result` label values of podlife_probe_message_lookups_total.
pub const PROBE_LOOKUP_RESULTS: [&str; 3] = ["ok", "failed", "dropped"];
/// `reason` label values of podlife_http_refused_total.
pub const HTTP_REFUSED: [&str; 4] = ["connections", "requests", "streams", "timeouts"];

/// The `cause` label of restarts: every value of `ContainerRestarted.cause`, and this for null.
const UNKNOWN_CAUSE: &str = "unknown";
const RESTART_CAUSES: [&str; 7] = [
    "oom",
    "liveness_probe",
    "crash",
    "error_exit",
    "grace_overrun",
    "runtime_stop",
    UNKNOWN_CAUSE,
];

pub struct Metrics {
    pub registry: Registry,
    /// The per-pod families (starts, exits, restarts, ...), kept apart from the registry;
    /// shared with scrapes that encode outside the lock.
    pods: Arc<PodSeries>,
    termination_seconds: HistogramVec,
    exec_seconds: HistogramVec,
    startup_seconds: HistogramVec,
    /// Probe runs of the node (the engine's counts), by `probe_kind` and `result`.
    pub probe_runs: IntCounterVec,
    pub ringbuf_events: IntCounter,
    pub ringbuf_lost: IntCounter,
    pub decode_errors: IntCounter,
    pub attribution_failures: IntCounterVec,
    pub tracked_pods: IntGauge,
    pub tracked_processes: IntGauge,
    pub feature_enabled: IntGaugeVec,
    /// What the HTTP bounds refused, by `reason` (connections, requests, streams, timeouts).
    pub http_refused: IntCounterVec,
    /// What bounded maps and lists dropped to stay bounded, by `what`.
    pub evictions: IntCounterVec,
    /// Kubernetes Events written (--kube-events), by `result`.
    pub kube_events: IntCounterVec,
    /// Findings left out of Kubernetes Events, by `reason`.
    pub kube_events_dropped: IntCounterVec,
    /// Lookups of the kubelet's probe messages on the API server (--kube-api), by `result`.
    pub probe_lookups: IntCounterVec,
    /// OTLP log records (--otlp-endpoint), by `result`.
    pub otlp_records: IntCounterVec,
    pub otlp_failures: IntCounter,
    pub ready: IntGauge,
    pub store_errors: IntCounter,
    pub store_skipped_lines: IntCounter,
    pub store_unreadable_segments: IntCounter,
    pub store_dropped: IntCounter,
    pub store_stalled: IntGauge,
    pub metadata_rejected: IntCounter,
    /// Which of namespace, pod, uid, container are kept (`--metrics-pod-labels`); a dropped one
    /// is exported empty (absent for Prometheus), which folds its series together.
    keep: [bool; 4],
}

/// The pod label names, in the order of `PodLabels::values`.
pub const POD_LABELS: [&str; 4] = ["namespace", "pod", "uid", "container"];

impl Metrics {
    pub fn new(version: &str) -> Self {
        Self::with_pod_labels(version, &POD_LABELS)
    }

    /// Keep only these pod labels on the per-pod families (cardinality control).
    pub fn with_pod_labels(version: &str, keep: &[&str]) -> Self {
        let keep = POD_LABELS.map(|l| keep.contains(&l));
        let registry = Registry::new_custom(Some("podlife".into()), None).expect("registry");
        let r = &registry;
        let reg = |c: Box<dyn prometheus::core::Collector>| r.register(c).expect("unique metric");
        let termination_seconds = HistogramVec::new(
            histogram_opts!(
                "termination_duration_seconds",
                "Time from a container's stop request to its exit",
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0]
            ),
            &[],
        )
        .expect("valid");
        reg(Box::new(termination_seconds.clone()));
        let exec_seconds = HistogramVec::new(
            histogram_opts!(
                "exec_duration_seconds",
                "Duration of exec sessions (probes and kubectl exec)",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
            ),
            &["kind"],
        )
        .expect("valid");
        reg(Box::new(exec_seconds.clone()));
        let startup_seconds = HistogramVec::new(
            histogram_opts!(
                "container_startup_seconds",
                "Time from a container's start to its first listener (stage listen) and to its \
                 first successful kubelet probe (stage probe_success)",
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
            ),
            &["stage"],
        )
        .expect("valid");
        reg(Box::new(startup_seconds.clone()));
        let probe_runs = IntCounterVec::new(
            opts!(
                "probe_runs_total",
                "Probe runs on the node, healthy ones included: exec probe sessions and kubelet \
                 connections to pod addresses, by probe_kind and result (success or the failure \
                 reason)"
            ),
            &["probe_kind", "result"],
        )
        .expect("valid");
        reg(Box::new(probe_runs.clone()));
        let int = |name: &str, help: &str| {
            let c = IntCounter::with_opts(opts!(name, help)).expect("valid");
            reg(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::with_opts(opts!(name, help)).expect("valid");
            reg(Box::new(g.clone()));
            g
        };
        let attribution_failures = IntCounterVec::new(
            opts!(
                "attribution_failures_total",
                "Kernel events that could not be tied to a pod, by stage"
            ),
            &["stage"],
        )
        .expect("valid");
        reg(Box::new(attribution_failures.clone()));
        let http_refused = IntCounterVec::new(
            opts!(
                "http_refused_total",
                "HTTP work the API's bounds refused: connections over the cap (closed), requests \
                 and live streams over their caps (429), requests past the timeout (503)"
            ),
            &["reason"],
        )
        .expect("valid");
        reg(Box::new(http_refused.clone()));
        let evictions = IntCounterVec::new(
            opts!(
                "evictions_total",
                "Entries the agent's bounded state dropped to stay within its limits, by what \
                 (engine pods, containers, processes, cgroups, events, exec sessions, pending \
                 facts, reorder buffer, probe states and messages; probe lookup pods; history pods)"
            ),
            &["what"],
        )
        .expect("valid");
        reg(Box::new(evictions.clone()));
        // Known from the start at 0, so rate() and alerts see the first increment.
        for what in EVICTED {
            evictions.with_label_values(&[what]);
        }
        for reason in HTTP_REFUSED {
            http_refused.with_label_values(&[reason]);
        }
        let kube_events = IntCounterVec::new(
            opts!(
                "kube_events_total",
                "Kubernetes Events about kernel-only findings (--kube-events), by result: created, \
                 patched (a series count), aggregated (a repeat joined a series), failed (the API \
                 server refused or did not answer)"
            ),
            &["result"],
        )
        .expect("valid");
        reg(Box::new(kube_events.clone()));
        let kube_events_dropped = IntCounterVec::new(
            opts!(
                "kube_events_dropped_total",
                "Findings left out of Kubernetes Events, by reason: rate_limited (per pod or per \
                 node), lagged (the writer fell behind the live events), series_evicted"
            ),
            &["reason"],
        )
        .expect("valid");
        reg(Box::new(kube_events_dropped.clone()));
        let probe_lookups = IntCounterVec::new(
            opts!(
                "probe_message_lookups_total",
                "Lookups of a pod's Unhealthy Events on the API server after a kubelet network \
                 probe failed (--kube-api), by result: ok, failed (refused, unreachable or timed \
                 out), dropped (the lookup queue was full)"
            ),
            &["result"],
        )
        .expect("valid");
        reg(Box::new(probe_lookups.clone()));
        for r in PROBE_LOOKUP_RESULTS {
            probe_lookups.with_label_values(&[r]);
        }
        let otlp_records = IntCounterVec::new(
            opts!(
                "otlp_records_total",
                "Lifecycle events for the OTLP receiver (--otlp-endpoint), by result: exported, \
                 expired (left the agent's retention before they were sent; counted once per gap)"
            ),
            &["result"],
        )
        .expect("valid");
        reg(Box::new(otlp_records.clone()));
        for r in ["exported", "expired"] {
            otlp_records.with_label_values(&[r]);
        }
        for r in KUBE_EVENT_RESULTS {
            kube_events.with_label_values(&[r]);
        }
        for r in KUBE_EVENT_DROPS {
            kube_events_dropped.with_label_values(&[r]);
        }
        let feature_enabled = IntGaugeVec::new(
            opts!(
                "feature_enabled",
                "1 when a feature works: capture features on this kernel, kube_api (--kube-api) when its watch lists"
            ),
            &["feature"],
        )
        .expect("valid");
        reg(Box::new(feature_enabled.clone()));
        let build_info = IntGaugeVec::new(opts!("build_info", "Build of the agent"), &["version"])
            .expect("valid");
        reg(Box::new(build_info.clone()));
        build_info.with_label_values(&[version]).set(1);
        Self {
            termination_seconds,
            exec_seconds,
            startup_seconds,
            probe_runs,
            ringbuf_events: int(
                "ringbuf_events_total",
                "Records read from the eBPF ring buffer",
            ),
            ringbuf_lost: int(
                "ringbuf_events_lost_total",
                "Records the kernel could not put on the ring buffer (full)",
            ),
            decode_errors: int(
                "decode_errors_total",
                "Ring-buffer records that failed to decode",
            ),
            store_errors: int("store_errors_total", "Failed writes of the history store"),
            store_skipped_lines: int(
                "store_skipped_lines_total",
                "Torn, corrupt or oversized lines, or events of a kind or value this agent does not know, skipped when loading the history store",
            ),
            store_unreadable_segments: int(
                "store_unreadable_segments_total",
                "History store segments that could not be read to their end at load",
            ),
            store_dropped: int(
                "store_dropped_events_total",
                "Events not written to the history store because its write queue was full",
            ),
            store_stalled: gauge(
                "store_stalled",
                "1 while the history store's writer has been blocked on the disk for over 10 s (a hung write or fsync); events are still served from memory",
            ),
            metadata_rejected: int(
                "metadata_rejected_total",
                "Runtime bundle values refused as names: not DNS-1123 or a uid, over 1 KiB, of another pod, or an oversized config.json",
            ),
            attribution_failures,
            tracked_pods: gauge("tracked_pods", "Pods the engine follows"),
            tracked_processes: gauge("tracked_processes", "Processes the engine follows"),
            feature_enabled,
            http_refused,
            evictions,
            kube_events,
            kube_events_dropped,
            probe_lookups,
            otlp_records,
            otlp_failures: int(
                "otlp_export_failures_total",
                "OTLP requests the receiver refused or did not answer (each is retried)",
            ),
            ready: gauge(
                "ready",
                "1 once programs are attached, bootstrap done and the ring buffer read",
            ),
            registry,
            pods: Arc::default(),
            keep,
        }
    }

    fn inc(&mut self, family: Family, labels: &PodLabels, extra: &[&str]) {
        *self.series_of(family, labels, extra) += 1;
    }

    /// The counter of a pod's series, created at 0 if new.
    fn series_of(&mut self, family: Family, labels: &PodLabels, extra: &[&str]) -> &mut u64 {
        Arc::make_mut(&mut self.pods).series(family, labels, extra)
    }

    /// Count one lifecycle event (its JSON form, as served).
    /// Count one served event. Exhaustive: a new kind must say which metric it feeds.
    pub fn observe(&mut self, labels: &PodLabels, event: &ServedEvent) {
        match &event.kind {
            LifecycleKind::ContainerStarted { .. } => {
                self.inc(Family::Starts, labels, &[]);
                // Prometheus sees no increase from a series' first sample: a counter born at 1
                // hides its first increment from increase() and rate(), and the alerts on
                // restarts and overruns would fire one event late. Their label sets are known
                // from the start, so they are exported at 0 from then on.
                for family in [Family::Ignored, Family::Overrun] {
                    self.series_of(family, labels, &[]);
                }
                // Every cause: the first restart of any cause is then an increase.
                for cause in RESTART_CAUSES {
                    self.series_of(Family::Restarts, labels, &[cause]);
                }
            }
            LifecycleKind::ContainerExited {
                reason,
                termination_s,
                ..
            } => {
                self.inc(Family::Exits, labels, &[reason.as_str()]);
                if let Some(t) = termination_s {
                    self.observe_termination(*t);
                }
            }
            LifecycleKind::ContainerRestarted { cause, .. } => {
                let cause = cause.map_or(UNKNOWN_CAUSE, RestartCause::as_str);
                self.inc(Family::Restarts, labels, &[cause]);
            }
            LifecycleKind::OomKill {
                limit_scope,
                victim_is_init,
                ..
            } => {
                let victim = if *victim_is_init { "init" } else { "child" };
                self.inc(Family::Oom, labels, &[limit_scope.as_str(), victim]);
            }
            LifecycleKind::ExecFinished {
                exit_code,
                duration_ms,
                timed_out,
                probe,
                ..
            } => {
                let kind = if probe.is_some() { "probe" } else { "exec" };
                let result = if *timed_out {
                    "timeout"
                } else if *exit_code == Some(0) {
                    "success"
                } else {
                    "failure"
                };
                self.inc(Family::Exec, labels, &[kind, result]);
                self.exec_seconds
                    .with_label_values(&[kind])
                    .observe(duration_ms / 1000.0);
            }
            LifecycleKind::ProbeFailed {
                probe_kind, reason, ..
            } => {
                self.inc(
                    Family::ProbeFail,
                    labels,
                    &[probe_kind.as_str(), reason.as_str()],
                );
            }
            LifecycleKind::StopSignalIgnored { .. } => self.inc(Family::Ignored, labels, &[]),
            LifecycleKind::GracePeriodOverrun { .. } => self.inc(Family::Overrun, labels, &[]),
            LifecycleKind::ProcessCrashed { signal, .. } => {
                self.inc(Family::Crash, labels, &[signal]);
            }
            LifecycleKind::DeletionRequested { .. }
            | LifecycleKind::PodAdmitted
            | LifecycleKind::SandboxStarted { .. }
            | LifecycleKind::ContainerCreated { .. }
            | LifecycleKind::ExecStarted { .. }
            | LifecycleKind::PreStopStarted { .. }
            | LifecycleKind::PreStopFinished { .. }
            | LifecycleKind::StopRequested { .. }
            | LifecycleKind::SandboxStopped { .. }
            | LifecycleKind::PodRemoved
            | LifecycleKind::AgentStarted
            | LifecycleKind::AgentGap { .. }
            | LifecycleKind::EventsLost { .. }
            | LifecycleKind::ListenerOpened { .. }
            | LifecycleKind::ListenerClosed { .. }
            // Startup times: `observe_startup`; runs: the engine's counts (`probe_runs`).
            | LifecycleKind::ProbeSucceeded { .. }
            // The kernel's ProbeFailed already counts the failure; this adds its words.
            | LifecycleKind::ProbeUnhealthy { .. } => {}
            LifecycleKind::ConnectionsRefused { count, phase, .. } => {
                *self.series_of(Family::Refused, labels, &[phase.as_str()]) += u64::from(*count);
            }
        }
    }

    /// Observe a termination (stop request → exit) duration.
    pub fn observe_termination(&self, seconds: f64) {
        self.termination_seconds
            .with_label_values(&[] as &[&str])
            .observe(seconds);
    }

    /// Observe a container startup stage (`listen`, `probe_success`) from its start.
    pub fn observe_startup(&self, stage: &str, seconds: f64) {
        self.startup_seconds
            .with_label_values(&[stage])
            .observe(seconds);
    }

    /// Bring the probe runs counter up to the engine's counts (it only grows).
    pub fn sync_probe_runs(&self, runs: &podlife_core::ProbeRuns) {
        for (kind, result, now) in runs.iter() {
            let c = self.probe_runs.with_label_values(&[kind.as_str(), result]);
            c.inc_by(now.saturating_sub(c.get()));
        }
    }

    /// Delete every series of a pod (call a few scrape intervals after PodRemoved).
    pub fn forget_pod(&mut self, uid: &str) {
        Arc::make_mut(&mut self.pods).forget(uid);
    }

    pub fn encode(&self) -> String {
        self.snapshot().encode()
    }

    /// What a scrape needs, taken under the lock in O(1): the registry (its metrics are
    /// atomics) and the per-pod series as they are now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            registry: self.registry.clone(),
            pods: self.pods.clone(),
            keep: self.keep,
        }
    }
}

/// The metrics of one scrape, encoded without the lock.
pub struct MetricsSnapshot {
    registry: Registry,
    pods: Arc<PodSeries>,
    keep: [bool; 4],
}

impl MetricsSnapshot {
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        self.pods.encode(self.keep, &mut text);
        text
    }
}

/// What the HTTP API's bounds refused (serve::http::limits counts, /metrics exports).
#[derive(Debug, Default)]
pub struct Refused {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub streams: AtomicU64,
    pub timeouts: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use podlife_core::{ExitReason, LimitScope};

    fn ev(kind: LifecycleKind) -> ServedEvent {
        ServedEvent {
            kind,
            ..crate::pipeline::history::test_event("u-1", 1, 1)
        }
    }

    fn started() -> ServedEvent {
        ev(LifecycleKind::ContainerStarted {
            pid: 1,
            argv: vec![],
            kind: None,
        })
    }

    fn exited(reason: ExitReason, termination_s: Option<f64>) -> ServedEvent {
        ev(LifecycleKind::ContainerExited {
            pid: 1,
            exit_code: None,
            signal: None,
            reason,
            killed_by: None,
            sender: None,
            termination_s,
        })
    }

    fn oom(limit_scope: LimitScope, victim_is_init: bool) -> ServedEvent {
        ev(LifecycleKind::OomKill {
            pid: 1,
            comm: None,
            victim_is_init,
            limit_scope,
            anon_rss_bytes: None,
            file_rss_bytes: None,
            shmem_rss_bytes: None,
            total_vm_bytes: None,
            oom_score_adj: None,
            group_kill: false,
            killed_with: Vec::new(),
            killed_with_more: 0,
            group_first_victim: None,
            trigger: None,
            usage_bytes: None,
            limit_bytes: None,
        })
    }

    fn exec(exit_code: i32, probe: Option<&str>, duration_ms: f64) -> ServedEvent {
        ev(LifecycleKind::ExecFinished {
            pid: 1,
            argv: vec![],
            exit_code: Some(exit_code),
            signal: None,
            duration_ms,
            timed_out: false,
            probe: probe.map(str::to_string),
        })
    }

    fn restarted() -> ServedEvent {
        ev(LifecycleKind::ContainerRestarted {
            attempt: 1,
            backoff_s: 10.0,
            crash_loop: false,
            cause: None,
        })
    }

    fn overrun() -> ServedEvent {
        ev(LifecycleKind::GracePeriodOverrun {
            observed_grace_s: 31.0,
            configured_grace_s: None,
        })
    }

    fn labels() -> PodLabels {
        PodLabels {
            namespace: "default".into(),
            pod: "web".into(),
            uid: "u-1".into(),
            container: "app".into(),
        }
    }

    #[test]
    fn exposition_has_ksm_labels_and_deletes_removed_pods() {
        let mut m = Metrics::new("test");
        m.observe(&labels(), &oom(LimitScope::Container, true));
        m.observe(&labels(), &exited(ExitReason::OomKilled, None));
        m.observe(&labels(), &exec(1, None, 4.0));
        let text = m.encode();
        assert!(text.contains(r#"podlife_container_oom_kills_total{container="app",limit_scope="container",namespace="default",pod="web",uid="u-1",victim="init"} 1"#), "{text}");
        assert!(text.contains(r#"podlife_container_exits_total{container="app",namespace="default",pod="web",reason="OOMKilled",uid="u-1"} 1"#));
        assert!(text.contains(r#"podlife_exec_sessions_total{container="app",kind="exec",namespace="default",pod="web",result="failure",uid="u-1"} 1"#));
        assert!(text.contains("podlife_build_info{version=\"test\"} 1"));
        m.forget_pod("u-1");
        let text = m.encode();
        assert!(
            !text.contains("uid=\"u-1\""),
            "series of a removed pod remain:\n{text}"
        );
    }

    #[test]
    fn dropped_pod_labels_fold_series() {
        let mut m = Metrics::with_pod_labels("test", &["namespace", "pod"]);
        let mut other = labels();
        other.uid = "u-2".into();
        other.container = "sidecar".into();
        for l in [labels(), other] {
            m.observe(&l, &started());
        }
        let text = m.encode();
        assert!(
            text.contains(r#"podlife_container_starts_total{container="",namespace="default",pod="web",uid=""} 2"#),
            "{text}"
        );
    }

    /// The value of a series as exported, None when the series is absent.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn per_container_counters_read_by_alerts_are_exported_at_zero_from_the_start() {
        let mut m = Metrics::new("test");
        let l = r#"{container="app",namespace="default",pod="web",uid="u-1"}"#;
        let restarts = format!(
            "podlife_container_restarts_total{{cause=\"unknown\",{}",
            &l[1..]
        );
        let oom_restarts = restarts.replace("unknown", "oom");
        let ignored = format!("podlife_stop_signals_ignored_total{l}");
        let overruns = format!("podlife_grace_period_overruns_total{l}");
        assert_eq!(
            sample(&m.encode(), &restarts),
            None,
            "nothing before the start"
        );
        m.observe(&labels(), &started());
        let text = m.encode();
        assert_eq!(
            sample(&text, &format!("podlife_container_starts_total{l}")),
            Some(1.0)
        );
        for s in [&restarts, &oom_restarts, &ignored, &overruns] {
            assert_eq!(
                sample(&text, s),
                Some(0.0),
                "{s} at 0 from the start:\n{text}"
            );
        }
        m.observe(&labels(), &restarted());
        m.observe(&labels(), &started());
        m.observe(&labels(), &overrun());
        let text = m.encode();
        assert_eq!(sample(&text, &restarts), Some(1.0), "{text}");
        assert_eq!(sample(&text, &overruns), Some(1.0), "{text}");
        assert_eq!(sample(&text, &ignored), Some(0.0), "{text}");
        m.forget_pod("u-1");
        let text = m.encode();
        assert!(!text.contains("uid=\"u-1\""), "{text}");
    }

    #[test]
    fn every_restart_cause_has_its_label_value() {
        for c in RestartCause::ALL {
            assert!(RESTART_CAUSES.contains(&c.as_str()), "{c}");
        }
        assert_eq!(RESTART_CAUSES.len(), RestartCause::ALL.len() + 1);
    }

    /// Every family of the registry with one sample each: one event of every kind it counts.
    fn refused(count: u32) -> ServedEvent {
        ev(LifecycleKind::ConnectionsRefused {
            port: 8080,
            count,
            first: String::new(),
            last: String::new(),
            phase: podlife_core::ConnPhase::Terminating,
        })
    }

    #[test]
    fn refused_connections_count_each_connection_by_phase() {
        let mut m = Metrics::new("test");
        m.observe(&labels(), &refused(14));
        m.observe(&labels(), &refused(3));
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("podlife_connections_refused_total{"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.contains("phase=\"terminating\"") && line.ends_with(" 17"),
            "{line}"
        );
    }

    fn every_family() -> Metrics {
        let mut m = Metrics::new("test");
        for event in [
            started(),
            exited(ExitReason::Error, Some(0.5)),
            restarted(),
            oom(LimitScope::Pod, false),
            exec(0, Some("liveness"), 3.0),
            ev(LifecycleKind::ProbeFailed {
                argv: vec![],
                exit_code: None,
                timed_out: true,
                probe: None,
                consecutive_failures: 1,
                probe_kind: podlife_core::ProbeKind::Tcp,
                port: Some(8080),
                reason: podlife_core::ProbeFailReason::Timeout,
            }),
            ev(LifecycleKind::StopSignalIgnored {
                signal: "SIGTERM".into(),
                pid: 1,
            }),
            overrun(),
            ev(LifecycleKind::ProcessCrashed {
                pid: 1,
                comm: "x".into(),
                signal: "SIGSEGV".into(),
                core_dumped: false,
                is_init: false,
            }),
            refused(14),
        ] {
            m.observe(&labels(), &event);
        }
        m.attribution_failures
            .with_label_values(&["unknown_cgroup"])
            .inc();
        m.feature_enabled.with_label_values(&["kube_api"]).set(1);
        m.observe_startup("listen", 0.3);
        let mut runs = podlife_core::ProbeRuns::default();
        runs.add(podlife_core::ProbeKind::Http, None);
        m.sync_probe_runs(&runs);
        m
    }

    #[test]
    fn probe_runs_follow_the_engine_counts_and_failures_carry_kind_and_reason() {
        let m = Metrics::new("test");
        let mut runs = podlife_core::ProbeRuns::default();
        for _ in 0..3 {
            runs.add(podlife_core::ProbeKind::Tcp, None);
        }
        m.sync_probe_runs(&runs);
        runs.add(podlife_core::ProbeKind::Tcp, None);
        runs.add(
            podlife_core::ProbeKind::Tcp,
            Some(podlife_core::ProbeFailReason::ConnectionRefused),
        );
        m.sync_probe_runs(&runs);
        m.sync_probe_runs(&runs);
        let text = m.encode();
        let ok = "podlife_probe_runs_total{probe_kind=\"tcp\",result=\"success\"}";
        let refused = "podlife_probe_runs_total{probe_kind=\"tcp\",result=\"connection_refused\"}";
        assert_eq!(sample(&text, ok), Some(4.0), "{text}");
        assert_eq!(sample(&text, refused), Some(1.0), "{text}");
        let mut m = every_family();
        m.observe(
            &labels(),
            &ev(LifecycleKind::ProbeFailed {
                argv: vec!["true".into()],
                exit_code: Some(1),
                timed_out: false,
                probe: Some("liveness".into()),
                consecutive_failures: 1,
                probe_kind: podlife_core::ProbeKind::Exec,
                port: None,
                reason: podlife_core::ProbeFailReason::ExitCode,
            }),
        );
        let text = m.encode();
        assert!(
            text.lines()
                .any(|l| l.starts_with("podlife_probe_failures_total{")
                    && l.contains("probe_kind=\"exec\"")
                    && l.contains("reason=\"exit_code\"")
                    && l.ends_with(" 1")),
            "{text}"
        );
    }

    /// `name type label,label` per family of an exposition, sorted.
    fn families(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').unwrap();
            let mut labels: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let series = l.split_once(' ')?.0;
                    let (n, labels) = series.split_once('{').unwrap_or((series, ""));
                    let base = n.strip_suffix("_bucket").unwrap_or(n);
                    (n == name || (kind == "histogram" && base == name)).then_some(labels)
                })
                .flat_map(|labels| labels.trim_end_matches('}').split(','))
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
                .filter(|k| *k != "le")
                .collect();
            labels.sort_unstable();
            labels.dedup();
            out.push(
                format!("{name} {kind} {}", labels.join(","))
                    .trim_end()
                    .to_string(),
            );
        }
        out.sort();
        out
    }

    const FAMILIES_FILE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dashboards/agent-metrics.txt"
    );
    const FAMILIES_HEADER: &str = "\
# The metric families the agent exports and their label names (`le` aside), written from its
# registry by `PODLIFE_BLESS=1 cargo test -p podlife --lib metrics::tests::families`. That test
# fails when this file and the registry differ; dashboards/check.py checks every query and rule
# against this file.
";

    #[test]
    fn families_listed_for_the_dashboards_are_the_registry() {
        let families = families(&every_family().encode());
        assert!(
            families.len() >= 20
                && families.contains(&"podlife_store_errors_total counter".to_string())
                && families.contains(&"podlife_exec_duration_seconds histogram kind".to_string()),
            "{families:#?}"
        );
        let text = format!("{FAMILIES_HEADER}{}\n", families.join("\n"));
        if std::env::var_os("PODLIFE_BLESS").is_some() {
            std::fs::write(FAMILIES_FILE, &text).expect("write dashboards/agent-metrics.txt");
        }
        let file = std::fs::read_to_string(FAMILIES_FILE).unwrap_or_default();
        assert!(
            file == text,
            "dashboards/agent-metrics.txt differs from the agent's registry: run \
             `PODLIFE_BLESS=1 cargo test -p podlife --lib metrics::tests::families`, then fix \
             the dashboards and rules that dashboards/check.sh flags.\nregistry:\n{text}"
        );
    }
}
