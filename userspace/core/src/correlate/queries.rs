//! Read-only views of the engine's state for the API.

use serde::Serialize;

use super::*;
use crate::cgroup_path::Qos;

#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    pub name: Option<String>,
    pub id: String,
    pub kind: Option<&'static str>,
    pub restarts: u32,
    pub state: &'static str,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodSummary {
    pub uid: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub qos: Option<Qos>,
    pub state: &'static str,
    pub containers: Vec<ContainerSummary>,
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
    fn kind_of(&self, pod: &Pod, id: &str, c: &Container) -> Option<&'static str> {
        if let Some(k) = c.meta.kind {
            return Some(k.as_str());
        }
        if c.is_sandbox() {
            return Some("sandbox");
        }
        c.started_ns?;
        let completed_before_next = c.exited_ns.is_some_and(|exit| {
            pod.containers
                .iter()
                .filter(|o| *o != id)
                .filter_map(|o| self.containers.get(o))
                .any(|o| !o.is_sandbox() && o.started_ns.is_some_and(|s| s >= exit))
        });
        Some(if completed_before_next { "init" } else { "app" })
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
            })
            .collect();
        Some(PodSummary {
            uid: uid.to_string(),
            namespace: p.meta.namespace.clone(),
            name: p.meta.name.clone(),
            qos: p.qos,
            state: p.state.as_str(),
            containers,
        })
    }

    /// The cgroup path (as the kernel names it, relative to a hierarchy root) of the container
    /// a process belongs to, and of its pod: the agent reads memory counters there.
    pub fn container_cgroup_of(&self, pid: u32, cgroup_id: u64) -> Option<(String, String)> {
        let cid = self
            .procs
            .get(&pid)
            .and_then(|p| p.container_id.clone())
            .or_else(|| {
                self.cgroups
                    .get(&cgroup_id)
                    .and_then(|c| c.container_id.clone())
            })?;
        let c = self.containers.get(&cid)?;
        let pod = self.pods.get(&c.pod_uid)?;
        let qos = match pod.qos? {
            Qos::Guaranteed => "",
            Qos::Burstable => "burstable/",
            Qos::BestEffort => "besteffort/",
        };
        let pod_path = self
            .cgroup_paths
            .get(&c.pod_uid)
            .cloned()
            .unwrap_or_else(|| format!("/kubepods/{qos}pod{}", c.pod_uid));
        Some((format!("{pod_path}/{cid}"), pod_path))
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            pods: self.pods.len(),
            containers: self.containers.len(),
            processes: self.procs.len(),
            cgroups: self.cgroups.len(),
            evictions: self.evictions,
            attribution_failures: self.failures,
        }
    }
}
