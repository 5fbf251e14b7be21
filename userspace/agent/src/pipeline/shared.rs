//! The agent's shared state: the engine, served history, metrics, the store. One lock: every
//! operation on it is short (apply a batch, render a timeline).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use podlife_core::redact::Redactor;
use podlife_core::{
    Engine, Fields, KernelEvent, KernelEventKind, LifecycleEvent, LifecycleKind, ServedEvent,
};
use tokio::sync::broadcast;
use tracing::warn;

use crate::node::cgroupfs::CgroupMounts;
use crate::node::clock::{format_rfc3339, WallClock};
use crate::node::cri::CriAsk;
use crate::node::metadata;
use crate::node::oom_memcg::{self, MemcgFacts};
use crate::node::oom_scope::{self, MemCounters};
use crate::pipeline::history::History;
use crate::pipeline::metrics::{Metrics, PodLabels};
use crate::pipeline::probe_lookups::{self, Offer, ProbeLookups};
use crate::store::writer::StoreSink;

/// One published event and its JSON: serialized once for the store line and the live stream.
#[derive(Debug, Clone)]
pub struct Published {
    pub event: Arc<ServedEvent>,
    pub json: Arc<str>,
}

impl Published {
    pub fn new(event: Arc<ServedEvent>) -> Self {
        let json = event.to_json(Fields::All).into();
        Self { event, json }
    }
}

/// Filters of GET /pods.
#[derive(Debug, Default)]
pub struct PodFilter {
    pub namespace: Option<String>,
    pub state: Option<String>,
}

pub struct Shared {
    inner: Mutex<Inner>,
    pub ready: AtomicBool,
    pub live: broadcast::Sender<Published>,
    /// Loops of the reader and pipeline threads, for /healthz.
    pub progress: Arc<crate::progress::Progress>,
    /// What the HTTP bounds refused (exported with /metrics).
    pub http_refused: Arc<crate::pipeline::metrics::Refused>,
    /// Metadata from the CRI and API tasks, applied by the pipeline.
    pub facts: crate::pipeline::facts::FactQueue,
}

impl Shared {
    pub fn new(inner: Inner) -> Arc<Self> {
        let (live, _) = broadcast::channel(4096);
        Arc::new(Self {
            inner: Mutex::new(inner),
            ready: AtomicBool::new(false),
            live,
            progress: Default::default(),
            http_refused: Default::default(),
            facts: Default::default(),
        })
    }

    /// A panic while holding the lock must not take the API down with it.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Inner {
    pub engine: Engine,
    pub history: History,
    pub metrics: Metrics,
    pub clock: WallClock,
    /// The history store's queue (its writer thread does the disk I/O).
    pub store: Option<StoreSink>,
    pub node: Option<String>,
    runtime_state: Vec<PathBuf>,
    mounts: CgroupMounts,
    /// Memory counters of pod and container cgroups at their creation (OOM limit scope).
    mem_baseline: HashMap<String, MemCounters>,
    /// (kernel ns, scope) of the last OOM kill classified per container cgroup: the other
    /// victims of a group kill (memory.oom.group) share its scope.
    last_oom: HashMap<String, (u64, oom_scope::Scope)>,
    /// Container ids whose runtime bundle was already looked up.
    meta_done: HashSet<String>,
    /// (wall ns when due, uid): pods whose metric series are deleted then.
    forget_at: Vec<(i128, String)>,
    /// Events not yet broadcast (sent outside the lock).
    pub outbox: Vec<Published>,
    /// Pods that were live while the kernel lost events: their timelines may miss some.
    pub incomplete: HashSet<String>,
    /// Grace periods from the CRI (kubelet annotations), by container id.
    pub cri_grace: HashMap<String, f64>,
    /// Facts the CRI and API tasks could not queue (Shared::facts), as of the last tick.
    pub facts_dropped: u64,
    /// Started containers whose CRI metadata is still to be asked for.
    pub cri_queue: Vec<CriAsk>,
    /// Pod addresses to add (true) to or remove from the kernel's reset filter, by the ticker.
    pub pod_addr_changes: Vec<(std::net::IpAddr, bool)>,
    /// Ring-buffer loss, grouped into episodes.
    loss: crate::pipeline::loss::LossEpisodes,
    /// Redacts argv before it is stored or served (built-in rules plus --redact-pattern).
    pub redactor: Redactor,
    /// Pods whose kubelet probe messages to read from the API server (`--kube-api`).
    pub probe_lookups: Option<ProbeLookups>,
}

/// Container ids whose bundle was read, remembered at most (then forgotten all at once).
const MAX_META_DONE: usize = 50_000;

/// Metric series of a removed pod outlive it by this much, so a few scrapes still see them.
const FORGET_AFTER_NS: i128 = 3 * 60 * 1_000_000_000;

impl Inner {
    pub fn new(
        engine: Engine,
        metrics: Metrics,
        clock: WallClock,
        store: Option<StoreSink>,
        node: Option<String>,
        runtime_state: Vec<PathBuf>,
        mounts: CgroupMounts,
    ) -> Self {
        let mut engine = engine;
        engine.set_wall_clock(podlife_core::WallClock::new(clock.offset_ns));
        Self {
            engine,
            history: History::new(10_000, 2_000, 200_000),
            metrics,
            clock,
            store,
            node,
            runtime_state,
            mounts,
            mem_baseline: HashMap::new(),
            last_oom: HashMap::new(),
            meta_done: HashSet::new(),
            forget_at: Vec::new(),
            outbox: Vec::new(),
            incomplete: HashSet::new(),
            cri_grace: HashMap::new(),
            facts_dropped: 0,
            cri_queue: Vec::new(),
            pod_addr_changes: Vec::new(),
            loss: Default::default(),
            redactor: Redactor::default(),
            probe_lookups: None,
        }
    }

    /// An agent state with nothing on the node: default engine, no store, no runtime state,
    /// wall time = monotonic time (tests).
    #[cfg(test)]
    pub fn for_tests(engine: Engine) -> Self {
        Self::new(
            engine,
            Metrics::new("test"),
            WallClock { offset_ns: 0 },
            None,
            None,
            Vec::new(),
            CgroupMounts::default(),
        )
    }

    /// Feed one kernel event through metadata enrichment and the engine.
    pub fn on_kernel_event(&mut self, ev: KernelEvent) {
        self.enrich(&ev);
        let out = self.engine.apply_owned(ev);
        self.publish(out);
    }

    /// Read the runtime bundle of a container the first time its cgroup shows up, memory
    /// baselines at cgroup creation, and the limit that fired at an OOM kill.
    fn enrich(&mut self, ev: &KernelEvent) {
        let path = match &ev.kind {
            KernelEventKind::CgroupMkdir { path, .. } => {
                self.snapshot_memory(path);
                path
            }
            KernelEventKind::CgroupAttach { path, .. } => path,
            KernelEventKind::OomVictim { pid, .. } => {
                let own = if ev.tgid == *pid { ev.cgroup_id } else { 0 };
                self.classify_oom(*pid, own, ev.ts_ns);
                return;
            }
            KernelEventKind::CgroupRmdir { path, .. } => {
                self.mem_baseline.remove(path.as_str());
                self.last_oom.remove(path.as_str());
                return;
            }
            _ => return,
        };
        self.read_bundle(path);
    }

    /// Names of the container a cgroup path names, from its runtime bundle: once per
    /// container. Also for containers found by a scan, whose mkdir the agent never saw.
    pub fn read_bundle(&mut self, path: &str) {
        let Some(parsed) = self.engine.parse_cgroup_path(path) else {
            return;
        };
        let Some(id) = parsed.container_id else {
            return;
        };
        if self.meta_done.contains(&id) {
            return;
        }
        if let Some(meta) = metadata::lookup(&self.runtime_state, &id) {
            // Bounded: forgetting costs at most one more bundle read per container.
            if self.meta_done.len() >= MAX_META_DONE {
                self.meta_done.clear();
            }
            self.meta_done.insert(id.clone());
            let meta = meta.of_pod(&parsed.pod_uid);
            self.metrics
                .metadata_rejected
                .inc_by(u64::from(meta.rejected));
            self.engine
                .set_container_metadata(&id, meta.container_meta());
        }
    }

    /// The cgroup's directories in the v2 and v1 memory hierarchies.
    fn memcg_dirs(&self, path: &str) -> (Option<PathBuf>, Option<PathBuf>) {
        let rel = path.trim_start_matches('/');
        let at = |m: &Option<PathBuf>| m.as_ref().map(|m| m.join(rel));
        (at(&self.mounts.v2), at(&self.mounts.v1_memory))
    }

    fn read_memory(&self, path: &str) -> MemCounters {
        let (v2, v1) = self.memcg_dirs(path);
        MemCounters::read(v2.as_deref(), v1.as_deref())
    }

    fn snapshot_memory(&mut self, path: &str) {
        if self.mem_baseline.len() < 100_000 && self.engine.parse_cgroup_path(path).is_some() {
            let c = self.read_memory(path);
            self.mem_baseline.insert(path.to_string(), c);
        }
    }

    fn classify_oom(&mut self, pid: u32, cgroup_id: u64, ts_ns: u64) {
        let Some((container, pod)) = self.engine.container_cgroup_of(pid, cgroup_id) else {
            return;
        };
        let zero = MemCounters {
            oom_local: Some(0),
            failcnt: Some(0),
            ..Default::default()
        };
        let (c_now, p_now) = (self.read_memory(&container), self.read_memory(&pod));
        let c_then = self.mem_baseline.get(&container).copied().unwrap_or(zero);
        let p_then = self.mem_baseline.get(&pod).copied().unwrap_or(zero);
        let scope = oom_scope::classify((&c_then, &c_now), (&p_then, &p_now));
        let scope = oom_scope::group_member(scope, self.last_oom.get(&container).copied(), ts_ns);
        if self.last_oom.len() < 100_000 {
            self.last_oom.insert(container.clone(), (ts_ns, scope));
        }
        tracing::info!(pid, scope = scope.as_str(), container = %container, ?c_then, ?c_now, ?p_then, ?p_now, "OOM kill: limit scope from memory counters");
        let facts = |path: &str| {
            let (v2, v1) = self.memcg_dirs(path);
            MemcgFacts::read(v2.as_deref(), v1.as_deref())
        };
        let memcg = oom_memcg::at_kill(scope, &facts(&container), &facts(&pod));
        tracing::info!(pid, ?memcg, "OOM kill: the OOM-ing memory cgroup");
        self.mem_baseline.insert(container, c_now);
        self.mem_baseline.insert(pod, p_now);
        self.engine.set_oom_scope_hint(pid, scope.limit_scope());
        self.engine.set_oom_memcg_hint(pid, memcg);
    }

    /// Type derived events as served, count them, keep them, persist them, queue them for
    /// streaming.
    pub fn publish(&mut self, events: Vec<LifecycleEvent>) {
        for e in events {
            if let Some((stage, secs)) = self.engine.startup_stage(&e) {
                self.metrics.observe_startup(stage, secs);
            }
            let wall = self.clock.wall_ns(e.ts_ns);
            let (mono, lookup) = (e.ts_ns, probe_lookups::wants_lookup(&e));
            let mut ev = ServedEvent::new(e, wall as i64);
            // Also for a sandbox found again after a restart: the new kernel map is empty.
            self.track_pod_addresses(&ev);
            // Found again after a restart (bootstrap scan, API watch re-list): not news.
            let refound = matches!(
                ev.source,
                podlife_core::Source::Bootstrap | podlife_core::Source::Api
            );
            if refound && self.already_known(&ev) {
                continue;
            }
            ev.redact(&self.redactor);
            ev.fill_configured_grace(|id| self.cri_grace.get(id).copied());
            if self.cri_queue.len() < 1024 {
                match (&ev.kind, &ev.container_id) {
                    (LifecycleKind::ContainerStarted { .. }, Some(id)) => {
                        self.cri_queue.push(CriAsk::Container(id.clone()))
                    }
                    (LifecycleKind::SandboxStarted { .. }, Some(id)) => {
                        self.cri_queue.push(CriAsk::Sandbox {
                            id: id.clone(),
                            uid: ev.uid.to_string(),
                        })
                    }
                    _ => {}
                }
            }
            let labels = self.labels(&ev);
            // Names travel with the event (and into the store), so a removed pod keeps them
            // in history for as long as its events are kept, across restarts too.
            if !labels.namespace.is_empty() && !labels.pod.is_empty() {
                ev.names = Some((labels.namespace.as_str().into(), labels.pod.as_str().into()));
            }
            self.metrics.observe(&labels, &ev);
            if lookup && !labels.namespace.is_empty() {
                self.offer_lookup(&labels, mono);
            }
            if matches!(ev.kind, LifecycleKind::PodRemoved) {
                let due = i128::from(ev.ts_wall_ns) + FORGET_AFTER_NS;
                self.forget_at.push((due, labels.uid.clone()));
            }
            self.keep(ev);
        }
    }

    /// Ask the API server for the kubelet's message of a failed network probe (bounded, rate
    /// limited per pod; never waits).
    fn offer_lookup(&mut self, labels: &PodLabels, mono_ns: u64) {
        let Some(lookups) = self.probe_lookups.as_mut() else {
            return;
        };
        if lookups.offer(&labels.namespace, &labels.uid, mono_ns) == Offer::Dropped {
            self.metrics
                .probe_lookups
                .with_label_values(&["dropped"])
                .inc();
        }
    }

    /// A started sandbox's addresses become the pod's (engine, and the kernel's reset filter
    /// at the next tick); a removed pod's are dropped.
    fn track_pod_addresses(&mut self, ev: &ServedEvent) {
        let changes = match ev.kind {
            LifecycleKind::SandboxStarted { pid } => crate::node::pod_net::sandbox_addresses(pid)
                .into_iter()
                .filter(|a| self.engine.set_pod_address(&ev.uid, *a))
                .map(|a| (a, true))
                .collect(),
            LifecycleKind::PodRemoved => (self.engine.forget_pod_addresses(&ev.uid).into_iter())
                .map(|a| (a, false))
                .collect(),
            _ => Vec::new(),
        };
        // Bounded: the kernel map holds MAX_POD_ADDRESSES; changes wait here one tick at most.
        if self.pod_addr_changes.len() + changes.len() <= podlife_core::MAX_POD_ADDRESSES {
            self.pod_addr_changes.extend(changes);
        }
    }

    /// Into history (which gives the event its id, kept by the store), the store and the
    /// outbox.
    fn keep(&mut self, ev: ServedEvent) {
        let published = Published::new(self.history.push(ev));
        if let Some(store) = &self.store {
            store.append(&published.json);
        }
        self.outbox.push(published);
    }

    /// A bootstrap or API finding that the restored history already tells (the pod was seen by
    /// an earlier run) is not news.
    fn already_known(&self, event: &ServedEvent) -> bool {
        self.history.pod(&event.uid).is_some_and(|h| {
            h.iter().any(|old| {
                let same = match (&old.kind, &event.kind) {
                    // A container has many messages: each is news once.
                    (
                        LifecycleKind::ProbeUnhealthy { message: a, .. },
                        LifecycleKind::ProbeUnhealthy { message: b, .. },
                    ) => a == b,
                    (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
                };
                same && old.container_id == event.container_id
            })
        })
    }

    fn labels(&self, event: &ServedEvent) -> PodLabels {
        let uid = event.uid.to_string();
        let pod = self.engine.pod_meta(&uid);
        PodLabels {
            namespace: pod
                .as_ref()
                .and_then(|p| p.namespace.clone())
                .unwrap_or_default(),
            pod: pod
                .as_ref()
                .and_then(|p| p.name.clone())
                .unwrap_or_default(),
            container: event.container.clone().unwrap_or_default(),
            uid,
        }
    }

    /// Time-based rules, metric series of long-removed pods, store flush.
    pub fn tick(&mut self, now_mono_ns: u64) {
        if self.clock.refresh() {
            tracing::info!("wall clock moved: new monotonic-to-wall offset");
        }
        self.engine
            .set_wall_clock(podlife_core::WallClock::new(self.clock.offset_ns));
        let out = self.engine.expire(now_mono_ns);
        self.publish(out);
        let now_wall = self.clock.wall_ns(now_mono_ns);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.forget_at)
            .into_iter()
            .partition(|(t, _)| *t <= now_wall);
        self.forget_at = later;
        for (_, uid) in due {
            self.metrics.forget_pod(&uid);
        }
        // A pod leaves the incomplete set with the last trace of it.
        if !self.incomplete.is_empty() {
            let (engine, history) = (&self.engine, &self.history);
            self.incomplete
                .retain(|u| history.pod(u).is_some() || engine.pod_summary(u).is_some());
        }
        let stats = self.engine.stats();
        let f = stats.attribution_failures;
        self.metrics.sync_probe_runs(&stats.probe_runs);
        let e = stats.evictions;
        for (what, now) in [
            ("pods", e.pods),
            ("containers", e.containers),
            ("processes", e.processes),
            ("cgroups", e.cgroups),
            ("events", e.events),
            ("exec_sessions", e.exec_sessions),
            ("pending", e.pending),
            ("buffered_events", e.buffered_events),
            ("probe_states", e.probe_states),
            ("probe_messages", e.probe_messages),
            (
                "probe_lookup_pods",
                self.probe_lookups.as_ref().map_or(0, |l| l.evicted),
            ),
            ("history_pods", self.history.evicted_pods),
            ("facts", self.facts_dropped),
        ] {
            let c = self.metrics.evictions.with_label_values(&[what]);
            c.inc_by(now.saturating_sub(c.get()));
        }
        for (stage, now) in [
            ("unknown_cgroup", f.unknown_cgroup),
            ("unknown_process", f.unknown_process),
            ("oom_unattributed", f.oom_unattributed),
            ("unparsed_path", f.unparsed_path),
        ] {
            let c = self
                .metrics
                .attribution_failures
                .with_label_values(&[stage]);
            c.inc_by(now.saturating_sub(c.get()));
        }
        self.metrics.tracked_pods.set(stats.pods as i64);
        self.metrics.tracked_processes.set(stats.processes as i64);
        if let Some(store) = &self.store {
            let stats = store.stats();
            for (counter, now) in [
                (&self.metrics.store_dropped, &stats.dropped),
                (&self.metrics.store_errors, &stats.errors),
            ] {
                counter.inc_by(now.load(Ordering::Relaxed).saturating_sub(counter.get()));
            }
            let last = stats.last_loop_ns.load(Ordering::Relaxed);
            let idle = now_mono_ns.saturating_sub(last);
            let stalled = last != 0 && idle > crate::progress::STALL_NS;
            if stalled && self.metrics.store_stalled.get() == 0 {
                warn!(
                    idle_s = idle / 1_000_000_000,
                    "history store: the disk does not answer (write or fsync blocked); events are kept in memory and served, the store drops what its queue cannot hold"
                );
            }
            self.metrics.store_stalled.set(i64::from(stalled));
        }
    }

    /// One tick of ring-buffer loss accounting (`lost` records since the last tick): pods live
    /// during a loss episode are marked incomplete at once and get one `EventsLost` when the
    /// episode ends (loss::QUIET_NS without loss), never one per tick.
    pub fn loss_tick(&mut self, lost: u64, now_mono_ns: u64) {
        let engine = &self.engine;
        let (joined, ended) = self.loss.tick(lost, now_mono_ns, || {
            engine
                .pod_uids()
                .into_iter()
                .filter(|uid| {
                    engine
                        .pod_summary(uid)
                        .is_some_and(|p| p.state != podlife_core::PodState::Removed)
                })
                .collect()
        });
        self.incomplete.extend(joined);
        if let Some(episode) = ended {
            self.tell_loss(episode);
        }
    }

    /// At shutdown: pods of a loss episode still open are told before the agent stops.
    pub fn finish_loss(&mut self) {
        if let Some(episode) = self.loss.finish() {
            self.tell_loss(episode);
        }
    }

    fn tell_loss(&mut self, ep: crate::pipeline::loss::Episode) {
        let first = self.clock.wall_ns(ep.first_mono_ns);
        let last = self.clock.wall_ns(ep.last_mono_ns);
        for uid in ep.pods {
            self.keep(ServedEvent {
                seq: 0,
                ts_wall_ns: first as i64,
                uid: uid.into(),
                names: None,
                container: None,
                container_id: None,
                source: podlife_core::Source::Agent,
                kind: LifecycleKind::EventsLost {
                    lost: ep.lost,
                    first: format_rfc3339(first),
                    last: format_rfc3339(last),
                },
            });
        }
    }
}
