//! Read-only views of the engine's state for the API.

use serde::Serialize;

use super::network::secs;
use super::*;
use crate::cgroup_path::Qos;
use crate::termination::{summarize, ContainerInfo, Step};
use crate::timeline::{Timeline, TimelineContainer, TimelineEvent, WallClock};

#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    pub name: Option<String>,
    pub id: String,
    pub kind: Option<ContainerKind>,
    pub restarts: u32,
    pub state: ContainerState,
    pub pid: Option<u32>,
    /// ContainerStarted → its first ListenerOpened, in seconds.
    pub time_to_listen_s: Option<f64>,
    /// ContainerStarted → its first successful probe (kubelet connection or exec), in seconds.
    pub time_to_first_probe_success_s: Option<f64>,
    /// The kubelet's newest message for a failed probe of it (ProbeUnhealthy).
    pub last_probe_message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodSummary {
    pub uid: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub qos: Option<Qos>,
    /// The pod's controller (API server watch), null when unknown.
    pub owner: Option<Owner>,
    pub state: PodState,
    pub containers: Vec<ContainerSummary>,
    /// Monotonic time of the pod's first and last derived event.
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
    pub removed: bool,
}

impl Engine {
    pub fn pod_uids(&self) -> Vec<String> {
        self.pod_order.iter().cloned().collect()
    }

    pub fn pod_meta(&self, uid: &str) -> Option<PodMeta> {
        self.pods.get(uid).map(|p| p.meta.clone())
    }

    /// Kind of a container: from metadata, else inferred — a container that completed before
    /// a later one of the pod started is an init container.
    fn kind_of(&self, pod: &Pod, id: &str, c: &Container) -> Option<ContainerKind> {
        if let Some(k) = c.meta.kind {
            return Some(k);
        }
        c.started_ns?;
        // An init container runs to completion on its own (exit 0, no stop request) before
        // the next container of the pod starts.
        let completed = c.exit_code == Some(0) && c.stop.is_none();
        let completed_before_next = completed
            && c.exited_ns.is_some_and(|exit| {
                pod.containers
                    .iter()
                    .filter(|o| *o != id)
                    .filter_map(|o| self.containers.get(o))
                    .any(|o| !o.is_sandbox() && o.started_ns.is_some_and(|s| s >= exit))
            });
        Some(if completed_before_next {
            ContainerKind::Init
        } else {
            ContainerKind::App
        })
    }

    pub fn pod_summary(&self, uid: &str) -> Option<PodSummary> {
        let p = self.pods.get(uid)?;
        let containers = p
            .containers
            .iter()
            .filter_map(|id| self.containers.get(id).map(|c| (id, c)))
            .map(|(id, c)| ContainerSummary {
                name: c.meta.container_name.clone(),
                id: id.clone(),
                kind: self.kind_of(p, id, c),
                restarts: c.attempt,
                state: c.state(),
                pid: c.init_pid,
                time_to_listen_s: c
                    .started_ns
                    .zip(c.net.first_listen_ns)
                    .map(|(start, listen)| secs(start, listen)),
                time_to_first_probe_success_s: c
                    .started_ns
                    .zip(c.net.first_probe_ok_ns)
                    .map(|(start, ok)| secs(start, ok)),
                last_probe_message: self.last_probe_message(id),
            })
            .collect();
        Some(PodSummary {
            uid: uid.to_string(),
            namespace: p.meta.namespace.clone(),
            name: p.meta.name.clone(),
            qos: p.qos,
            owner: p.meta.owner.clone(),
            state: p.state,
            containers,
            first_ts_ns: p.events.iter().map(|e| e.ts_ns).min(),
            last_ts_ns: p.events.iter().map(|e| e.ts_ns).max(),
            removed: p.removed_ns.is_some(),
        })
    }

    /// The derived events of a pod as kept for its timeline (time order).
    pub fn timeline_events(&self, uid: &str) -> Vec<LifecycleEvent> {
        let mut v: Vec<LifecycleEvent> = self
            .pods
            .get(uid)
            .map(|p| p.events.iter().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|e| e.ts_ns);
        v
    }

    /// Every tracked pod, oldest first.
    pub fn pods(&self) -> Vec<PodSummary> {
        self.pod_order
            .iter()
            .filter_map(|u| self.pod_summary(u))
            .collect()
    }

    pub fn pod(&self, uid: &str) -> Option<PodSummary> {
        self.pod_summary(uid)
    }

    /// The pod's timeline with wall-clock times, events in time order.
    pub fn timeline(&self, uid: &str, clock: WallClock) -> Option<Timeline> {
        let s = self.pod_summary(uid)?;
        let p = self.pods.get(uid)?;
        let mut events: Vec<&LifecycleEvent> = p.events.iter().collect();
        events.sort_by_key(|e| e.ts_ns);
        let steps: Vec<Step> = events
            .iter()
            .map(|e| Step {
                ns: clock.wall_ns(e.ts_ns),
                container_id: e.container_id.as_deref(),
                kind: &e.kind,
            })
            .collect();
        let infos: Vec<ContainerInfo> = s
            .containers
            .iter()
            .map(|c| ContainerInfo {
                id: &c.id,
                name: c.name.as_deref(),
                kind: c.kind,
                grace_s: self.grace_of(&c.id),
            })
            .collect();
        let mut shutdown = summarize(&steps, &infos);
        Some(Timeline {
            uid: s.uid,
            namespace: s.namespace,
            name: s.name,
            qos: s.qos,
            owner: s.owner,
            node: self.cfg.node_name.clone(),
            state: s.state.as_str().to_string(),
            containers: s
                .containers
                .into_iter()
                .map(|c| TimelineContainer {
                    termination: shutdown.terminations.remove(&c.id),
                    name: c.name,
                    id: c.id,
                    kind: c.kind.map(|k| k.as_str().to_string()),
                    restarts: c.restarts,
                    state: c.state.as_str().to_string(),
                    time_to_listen_s: c.time_to_listen_s,
                    time_to_first_probe_success_s: c.time_to_first_probe_success_s,
                    last_probe_message: c.last_probe_message,
                })
                .collect(),
            shutdown_order: shutdown.order,
            sidecars_outlived_apps: shutdown.sidecars_outlived_apps,
            events: events
                .into_iter()
                .map(|e| TimelineEvent::new(e, clock))
                .collect(),
        })
    }

    /// The cgroup path (as the kernel names it, relative to a hierarchy root) of the container
    /// a process belongs to, and of its pod: the agent reads memory counters there.
    pub fn container_cgroup_of(&self, pid: u32, cgroup_id: u64) -> Option<(String, String)> {
        let cid = self
            .procs
            .get(&pid)
            .and_then(|p| p.container_id.clone())
            .or_else(|| self.container_of(pid, cgroup_id))?;
        let c = self.containers.get(&*cid)?;
        let pod = self.pods.get(&c.pod_uid)?;
        let qos = match pod.qos? {
            Qos::Guaranteed => "",
            Qos::Burstable => "burstable/",
            Qos::BestEffort => "besteffort/",
        };
        let pod_path = self
            .pod_paths
            .get(&c.pod_uid)
            .cloned()
            .unwrap_or_else(|| format!("/kubepods/{qos}pod{}", c.pod_uid));
        // The path the kernel reported: systemd-driver nodes name it `cri-containerd-<id>.scope`
        // (crio-, docker-), not `<id>`.
        let container_path = c
            .cgroup_path
            .clone()
            .unwrap_or_else(|| format!("{pod_path}/{cid}"));
        Some((container_path, pod_path))
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            pods: self.pods.len(),
            containers: self.containers.len(),
            processes: self.procs.len(),
            cgroups: self.cgroups.len(),
            exec_sessions: self.sessions.len(),
            buffered_events: self.buffer.len(),
            cgroup_mode: self.mode,
            evictions: self.evictions,
            attribution_failures: self.failures,
            probe_runs: self.probe_runs,
        }
    }

    /// The container startup stage an event completes, with its time from ContainerStarted:
    /// its first listener (`listen`) or its first successful kubelet probe (`probe_success`).
    pub fn startup_stage(&self, e: &LifecycleEvent) -> Option<(&'static str, f64)> {
        if e.source != Source::Kernel {
            return None;
        }
        let c = self.containers.get(e.container_id.as_deref()?)?;
        let start = c.started_ns?;
        let (stage, at) = match e.kind {
            LifecycleKind::ListenerOpened { .. } => ("listen", c.net.first_listen_ns?),
            LifecycleKind::ProbeSucceeded { first: true, .. } => {
                ("probe_success", c.net.first_probe_ok_ns?)
            }
            _ => return None,
        };
        (at == e.ts_ns).then(|| (stage, secs(start, at)))
    }
}
