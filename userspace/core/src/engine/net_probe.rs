//! Network probes: a kubelet connection to a pod address (tcpSocket, httpGet, grpc probes) is
//! a probe attempt. Failures (refused, timed out, reset) give ProbeFailed each, with the count
//! in a row; a success gives ProbeSucceeded only when it is the first since the container
//! started or the first after failures, so a healthy pod's probes add nothing.

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;
use crate::kernel_event::ConnOutcome;

/// Pod ports with probe state (a pod's probes use a few ports); at the bound the state of
/// every pod is dropped and counted (`evictions.probe_states`).
const MAX_PROBE_STATES: usize = 4096;

/// Probe attempts of one pod port.
#[derive(Debug, Default)]
pub(super) struct ProbeState {
    /// Failures since the last success.
    consecutive: u32,
    /// A success was seen (for `first` when no container is known).
    ever_ok: bool,
}

/// State of the pod ports the kubelet probes, by (pod uid, port).
pub(super) type ProbeStates = HashMap<(String, u16), ProbeState>;

/// What the pod spec says of the probes on a port: kind and liveness/readiness/startup.
fn spec_of(meta: &PodMeta, port: u16) -> (ProbeKind, Option<String>, Option<String>) {
    let mut specs = meta.net_probes.iter().filter(|p| p.port == port);
    let Some(first) = specs.next() else {
        // No spec: the kernel sees a TCP connection, not what ran over it.
        return (ProbeKind::Tcp, None, None);
    };
    let mut kind = first.kind;
    let mut probe = Some(first.probe_type.clone());
    for p in specs {
        // Two probes on one port cannot be told apart by their connections.
        if p.kind != kind {
            kind = ProbeKind::Tcp;
        }
        if probe.as_deref() != Some(p.probe_type.as_str()) {
            probe = None;
        }
    }
    (kind, probe, Some(first.container.clone()))
}

impl Engine {
    pub(super) fn on_kubelet_conn(
        &mut self,
        (start, ts): (u64, u64),
        (addr, port): (IpAddr, u16),
        outcome: ConnOutcome,
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(uid) = self.net.addrs.get(&addr).cloned() else {
            return;
        };
        if self.http_prestop_conn(&uid, port, (start, ts), outcome, out) {
            return;
        }
        let Some(pod) = self.pods.get(&uid).filter(|p| p.removed_ns.is_none()) else {
            return;
        };
        let (probe_kind, probe, spec_container) = spec_of(&pod.meta, port);
        let cid = self.probed_container(pod, port, spec_container.as_deref());
        let key = (uid.clone(), port);
        if self.net.probes.len() >= MAX_PROBE_STATES && !self.net.probes.contains_key(&key) {
            self.net.probes.clear();
            self.evictions.probe_states += 1;
        }
        let reason = match outcome {
            ConnOutcome::Closed => None,
            ConnOutcome::Refused => Some(ProbeFailReason::ConnectionRefused),
            ConnOutcome::Timeout => Some(ProbeFailReason::Timeout),
            ConnOutcome::Reset => Some(ProbeFailReason::Reset),
        };
        self.probe_runs.add(probe_kind, reason);
        let st = self.net.probes.entry(key).or_default();
        let kind = if let Some(reason) = reason {
            st.consecutive = st.consecutive.saturating_add(1);
            LifecycleKind::ProbeFailed {
                argv: Vec::new(),
                exit_code: None,
                timed_out: reason == ProbeFailReason::Timeout,
                probe,
                consecutive_failures: st.consecutive,
                probe_kind,
                port: Some(port),
                reason,
            }
        } else {
            let after_failures = std::mem::take(&mut st.consecutive);
            let ever_ok = std::mem::replace(&mut st.ever_ok, true);
            let container = cid.as_deref().and_then(|id| self.containers.get_mut(id));
            let first = match container {
                Some(c) => {
                    let first = c.net.first_probe_ok_ns.is_none();
                    c.net.first_probe_ok_ns.get_or_insert(ts);
                    first
                }
                None => !ever_ok,
            };
            if !first && after_failures == 0 {
                return;
            }
            LifecycleKind::ProbeSucceeded {
                probe_kind,
                port: Some(port),
                probe,
                first,
                after_failures,
            }
        };
        out.push(self.event(ts, &uid, cid.as_deref(), kind));
    }

    /// The container a probe of `port` is for: the running container that listens on the port,
    /// else the one the spec names, else one that listened on it before.
    fn probed_container(&self, pod: &Pod, port: u16, spec: Option<&str>) -> Option<String> {
        let containers = || {
            pod.containers
                .iter()
                .rev()
                .filter_map(|id| self.containers.get(id).map(|c| (id, c)))
                .filter(|(_, c)| !c.is_sandbox())
        };
        let listens = |c: &Container| c.net.listeners.iter().any(|l| l.port == port);
        containers()
            .find(|(_, c)| c.running() && listens(c))
            .or_else(|| {
                spec.and_then(|name| {
                    containers().find(|(_, c)| {
                        c.exited_ns.is_none() && c.meta.container_name.as_deref() == Some(name)
                    })
                })
            })
            .or_else(|| containers().find(|(_, c)| c.net.ports.contains(&port)))
            .map(|(id, _)| id.clone())
    }

    /// Forget the probe state of a pod's ports (the pod is gone).
    pub(super) fn forget_probes(&mut self, uid: &str) {
        self.net.probes.retain(|(u, _), _| u != uid);
    }
}
