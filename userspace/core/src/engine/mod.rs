//! The correlation engine: a synchronous state machine from kernel events to pod lifecycle
//! events. `apply` for each kernel event, `expire` on a timer; time only from the events and
//! the caller (no clock of its own), so tests replay recorded sequences without sleeping.
//!
//! Rule families live in their own files: `cgroups` (pods and containers from cgroup
//! directories), `namespaces` (sandbox vs app vs exec evidence), `start` (forks and execs:
//! containers and sandboxes starting, restarts), `exit` (container and sandbox ends),
//! `exec_session` (probes and kubectl exec), `prestop` (preStop hooks), `signals` (stop
//! requests, ignored stop signals, grace overruns, OOM kills), `network` (listeners, refused
//! connections), `bootstrap` (state found at agent start, metadata), `deletion` (the API
//! server's deletion request), `unhealthy` (the kubelet's probe messages from the API server), `restore`, `evict` (bounds and retention), `queries`.

mod bootstrap;
mod cgroups;
mod deletion;
mod evict;
mod exec_session;
mod exit;
pub mod model;
mod namespaces;
mod net_probe;
mod network;
mod prestop;
mod queries;
mod restore;
mod signals;
mod start;
mod unhealthy;

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt as _};

pub use model::*;
pub use network::MAX_POD_ADDRESSES;
pub use queries::{ContainerSummary, PodSummary};
pub use unhealthy::{ProbeMessages, UnhealthyEvent, MAX_PROBE_MESSAGES};

pub use crate::lifecycle::*;

use crate::kernel_event::{KernelEvent, KernelEventKind};

pub struct Engine {
    cfg: EngineConfig,
    /// Boxed: a map slot is then a pointer, not the whole record, so the table's unused
    /// capacity (up to half of it after growing) costs little.
    pods: HashMap<String, Box<Pod>>,
    pod_order: VecDeque<String>,
    containers: HashMap<String, Box<Container>>,
    container_order: VecDeque<String>,
    cgroups: HashMap<u64, Cgroup>,
    cgroup_order: VecDeque<u64>,
    procs: HashMap<u32, Proc>,
    /// (pid, seq) in insertion order; stale entries are skipped at eviction.
    proc_order: VecDeque<(u32, u64)>,
    /// Recently exited pids → exit time (late forks and execs of them are not revived).
    exited: HashMap<u32, u64>,
    exited_order: VecDeque<(u32, u64)>,
    sessions: HashMap<u32, ExecSession>,
    /// Pod uid → its cgroup path as the kernel reported it (any driver's layout).
    pod_paths: HashMap<String, String>,
    /// Metadata of containers and pods not seen yet.
    pending_meta: HashMap<String, ContainerMeta>,
    pending_pod_meta: HashMap<String, PodMeta>,
    /// Deletion requests (monotonic ts, grace period) of pods not seen yet.
    pending_deletions: HashMap<String, (u64, Option<f64>)>,
    /// Scope of OOM kills by victim pid, told by the agent from cgroupfs counters.
    oom_scope_hints: HashMap<u32, LimitScope>,
    /// OOM kills derived without a scope hint: victim pid → (pod, ts), for a late hint.
    recent_ooms: HashMap<u32, (String, u64)>,
    /// Group kill, usage and limit of OOM kills by victim pid, read by the agent.
    oom_memcg_hints: HashMap<u32, OomMemcg>,
    /// Group kills under way: tgid of the task running the OOM killer → (ts, first victim).
    oom_groups: HashMap<u32, (u64, u32)>,
    /// Kernel events waiting for the reorder window, by (ts, arrival).
    /// Reorder window, ordered by (ts, arrival). Events come nearly in order: a deque with a
    /// binary-searched insert beats a tree (no node allocation per event).
    buffer: VecDeque<(u64, KernelEvent)>,
    mode: CgroupMode,
    /// The node's kubepods root when the agent knows it; else the first root in a path anchors.
    node_root: Option<String>,
    max_ts: u64,
    seq: u64,
    last_sweep_ns: u64,
    evictions: Evictions,
    probe_runs: ProbeRuns,
    failures: AttributionFailures,
    net: network::NetIndex,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            mode: cfg.cgroup_mode,
            cfg,
            pods: HashMap::new(),
            pod_order: VecDeque::new(),
            containers: HashMap::new(),
            container_order: VecDeque::new(),
            cgroups: HashMap::new(),
            cgroup_order: VecDeque::new(),
            procs: HashMap::new(),
            proc_order: VecDeque::new(),
            exited: HashMap::new(),
            exited_order: VecDeque::new(),
            sessions: HashMap::new(),
            pod_paths: HashMap::new(),
            pending_meta: HashMap::new(),
            pending_pod_meta: HashMap::new(),
            pending_deletions: HashMap::new(),
            oom_scope_hints: HashMap::new(),
            recent_ooms: HashMap::new(),
            oom_memcg_hints: HashMap::new(),
            oom_groups: HashMap::new(),
            buffer: VecDeque::new(),
            node_root: None,
            max_ts: 0,
            seq: 0,
            last_sweep_ns: 0,
            evictions: Evictions::default(),
            probe_runs: ProbeRuns::default(),
            failures: AttributionFailures::default(),
            net: network::NetIndex::default(),
        }
    }

    /// Take one kernel event. Returns the lifecycle events derived from the kernel events that
    /// left the reorder window with it, in order.
    pub fn apply(&mut self, ev: &KernelEvent) -> Vec<LifecycleEvent> {
        self.apply_owned(ev.clone())
    }

    /// [`Engine::apply`] for an event the caller gives away (no copy into the reorder window).
    pub fn apply_owned(&mut self, ev: KernelEvent) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        let ts = ev.ts_ns;
        self.max_ts = self.max_ts.max(ts);
        // After every buffered event of the same or an earlier time: arrival order among equals.
        if self.buffer.back().is_none_or(|(t, _)| *t <= ts) {
            self.buffer.push_back((ts, ev));
        } else {
            let at = self.buffer.partition_point(|(t, _)| *t <= ts);
            self.buffer.insert(at, (ts, ev));
        }
        let until = self.max_ts.saturating_sub(self.cfg.reorder_window_ns);
        self.release(until, self.max_ts, false, &mut out);
        while self.buffer.len() > self.cfg.max_buffered_events.max(1) {
            self.evictions.buffered_events += 1;
            if let Some((_, e)) = self.buffer.pop_front() {
                self.process(&e, &mut out);
            }
        }
        self.record(&out);
        out
    }

    /// Apply everything still held back (reorder window, v1 events waiting for a decision).
    pub fn flush(&mut self) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        self.release(u64::MAX, self.max_ts, true, &mut out);
        self.flush_refused(u64::MAX, &mut out);
        self.record(&out);
        out
    }

    /// When (monotonic ns) the oldest event held in the reorder window is due, if any: the agent
    /// calls [`Engine::expire`] then, so a lone event is not kept waiting for the next batch.
    pub fn next_release_ns(&self) -> Option<u64> {
        let (ts, first) = self.buffer.front()?;
        let mut due = ts.saturating_add(self.cfg.reorder_window_ns);
        // The holds of `release`: a v1 pod event while the cgroup mode is unsettled, the first
        // victim of a group kill.
        if self.mode == CgroupMode::Auto
            && self.is_pod_event(first, false)
            && !self.buffer.iter().any(|(_, e)| self.is_pod_event(e, true))
        {
            due = due.max(ts.saturating_add(self.cfg.v1_fallback_delay_ns));
        }
        if let Some(until) = self.group_hold_until(first, *ts) {
            due = due.max(until);
        }
        Some(due)
    }

    /// How long an event is held back for events of other CPUs that come later.
    pub fn reorder_window_ns(&self) -> u64 {
        self.cfg.reorder_window_ns
    }

    /// Kernel events held in the reorder window now.
    pub fn held_events(&self) -> usize {
        self.buffer.len()
    }

    /// Time-based work at `now_ns` (monotonic): release buffered events older than the reorder
    /// window, settle the cgroup mode, drop state past its retention.
    pub fn expire(&mut self, now_ns: u64) -> Vec<LifecycleEvent> {
        let mut out = Vec::new();
        let until = now_ns.saturating_sub(self.cfg.reorder_window_ns);
        self.release(until, now_ns.max(self.max_ts), false, &mut out);
        self.record(&out);
        self.release_pending_deletions(&mut out);
        self.flush_refused(now_ns, &mut out);
        self.sweep(now_ns);
        out
    }

    /// Apply buffered events up to `until`, in time order. In `Auto` cgroup mode a v1 pod
    /// cgroup event holds everything behind it until the mode is known: a v2 pod cgroup event
    /// in the buffer means v2 (v1 events are then duplicates), none within the fallback delay
    /// (or `force`) means a node without cgroup v2.
    fn release(&mut self, until: u64, now: u64, force: bool, out: &mut Vec<LifecycleEvent>) {
        while let Some((ts, first)) = self.buffer.front() {
            if *ts > until {
                break;
            }
            if self.mode == CgroupMode::Auto && self.is_pod_event(first, false) {
                if self.buffer.iter().any(|(_, e)| self.is_pod_event(e, true)) {
                    self.mode = CgroupMode::V2;
                } else if force || ts.saturating_add(self.cfg.v1_fallback_delay_ns) <= now {
                    self.mode = CgroupMode::V1;
                } else {
                    break;
                }
            }
            if !force && self.holds_for_its_group(first, *ts, now) {
                break;
            }
            if let Some((_, e)) = self.buffer.pop_front() {
                self.process(&e, out);
            }
        }
    }

    /// The first victim of a group kill waits until the others are in the window: a slow
    /// console (every kill is logged) can space one kernel pass over tens of milliseconds.
    fn holds_for_its_group(&self, ev: &KernelEvent, ts: u64, now: u64) -> bool {
        self.group_hold_until(ev, ts)
            .is_some_and(|until| until > now)
    }

    /// Until when [`Engine::holds_for_its_group`] holds `ev`, if it is such a first victim.
    fn group_hold_until(&self, ev: &KernelEvent, ts: u64) -> Option<u64> {
        const GROUP_HOLD_NS: u64 = 200_000_000;
        match ev.kind {
            KernelEventKind::OomVictim { pid, .. }
                if self.oom_memcg_hints.get(&pid).is_some_and(|m| m.group_kill) =>
            {
                Some(ts.saturating_add(GROUP_HOLD_NS))
            }
            _ => None,
        }
    }

    /// One kernel event, in order.
    fn process(&mut self, ev: &KernelEvent, out: &mut Vec<LifecycleEvent>) {
        match &ev.kind {
            KernelEventKind::CgroupMkdir { .. }
            | KernelEventKind::CgroupRmdir { .. }
            | KernelEventKind::CgroupAttach { .. } => self.on_cgroup(ev, out),
            KernelEventKind::Fork { child_tgid, .. } => self.on_fork(ev, *child_tgid),
            KernelEventKind::Exec { filename, argv, .. } => self.on_exec(ev, filename, argv, out),
            KernelEventKind::Exit { status } => self.on_exit(ev, *status, out),
            KernelEventKind::Setns { nstype, ret, .. } => self.on_setns(ev, *nstype, *ret, out),
            KernelEventKind::Unshare { flags } => self.on_unshare(ev, *flags),
            KernelEventKind::SignalGenerate { .. } => self.on_signal(ev, out),
            KernelEventKind::OomVictim { .. } => self.on_oom(ev, out),
            KernelEventKind::SignalDeliver { .. } => {}
            KernelEventKind::TcpState {
                sk,
                old,
                new,
                saddr,
                sport,
                ..
            } => self.on_tcp_state(ev, *sk, (*old, *new), (*saddr, *sport), out),
            KernelEventKind::TcpReset { saddr, sport, .. } => {
                self.on_tcp_reset(ev.ts_ns, (*saddr, *sport), out)
            }
            KernelEventKind::KubeletConn {
                addr,
                port,
                outcome,
                start_ns,
                ..
            } => self.on_kubelet_conn((*start_ns, ev.ts_ns), (*addr, *port), *outcome, out),
        }
    }

    /// Keep derived events on their pod's timeline (bounded per pod).
    fn record(&mut self, out: &[LifecycleEvent]) {
        let max = self.cfg.max_events_per_pod;
        if max == 0 {
            return;
        }
        for e in out {
            if let Some(p) = self.pods.get_mut(&e.pod_uid) {
                if p.events.len() >= max {
                    p.events.pop_front();
                    self.evictions.events += 1;
                }
                p.events.push_back(e.clone());
            }
        }
    }

    fn event(
        &self,
        ts_ns: u64,
        pod_uid: &str,
        container_id: Option<&str>,
        kind: LifecycleKind,
    ) -> LifecycleEvent {
        let container = container_id
            .and_then(|id| self.containers.get(id))
            .and_then(|c| c.meta.container_name.clone());
        LifecycleEvent {
            ts_ns,
            pod_uid: pod_uid.to_string(),
            container_id: container_id.map(str::to_string),
            container,
            source: Source::Kernel,
            kind,
        }
    }

    /// The container a kernel event's current task belongs to: its cgroup at the time of the
    /// event (v2), else what attach, fork and exec told about the process.
    fn container_of(&self, tgid: u32, cgroup_id: u64) -> Option<ContainerId> {
        let by_cgroup = || {
            (self.mode != CgroupMode::V1)
                .then(|| self.cgroups.get(&cgroup_id))
                .flatten()
                .and_then(|c| c.container_id.clone())
        };
        by_cgroup().or_else(|| self.procs.get(&tgid).and_then(|p| p.container_id.clone()))
    }

    /// The process entry of `tgid`, created (and the oldest evicted at the bound) if new.
    fn proc_mut(&mut self, tgid: u32, comm: &str, ts: u64) -> &mut Proc {
        if !self.procs.contains_key(&tgid) {
            while self.procs.len() >= self.cfg.max_processes.max(1) {
                if !self.evict_oldest_process() {
                    break;
                }
            }
            self.seq += 1;
            self.proc_order.push_back((tgid, self.seq));
            self.procs.insert(tgid, Proc::new(comm, ts, self.seq));
        }
        self.procs.get_mut(&tgid).expect("inserted above")
    }

    /// The agent read cgroupfs counters at an OOM kill and tells which limit fired
    /// (`container`, `pod`, `node`). Before the OOM event is applied it is used for it; after,
    /// it corrects the scope of the OOMKill already on the timeline.
    pub fn set_oom_scope_hint(&mut self, victim_pid: u32, scope: LimitScope) {
        if self.fix_oom_scope(victim_pid, scope) {
            return;
        }
        if self.oom_scope_hints.len() >= 1024 {
            self.oom_scope_hints.clear();
            self.evictions.pending += 1;
        }
        self.oom_scope_hints.insert(victim_pid, scope);
    }

    /// The agent read the OOM-ing memory cgroup at an OOM kill (memory.oom.group, peak usage,
    /// limit): used for the OOMKill of `victim_pid` when it is derived (within the reorder
    /// window, so the agent tells it before).
    pub fn set_oom_memcg_hint(&mut self, victim_pid: u32, memcg: OomMemcg) {
        if self.oom_memcg_hints.len() >= 1024 {
            self.oom_memcg_hints.clear();
            self.evictions.pending += 1;
        }
        self.oom_memcg_hints.insert(victim_pid, memcg);
    }
}
