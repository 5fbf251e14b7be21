//! Sockets: a container's listeners opening and closing (ListenerOpened / ListenerClosed),
//! from sock:inet_sock_set_state in the listening process's context; connections refused by a
//! pod address (ConnectionsRefused, per pod and port and second), from tcp:tcp_send_reset.

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;
use crate::kernel_event::TcpState;
use crate::timeline::WallClock;

/// Seconds between two monotonic timestamps, to the microsecond.
pub(super) fn secs(from: u64, to: u64) -> f64 {
    (to.saturating_sub(from) as f64 / 1e3).round() / 1e6
}

impl Engine {
    pub(super) fn on_tcp_state(
        &mut self,
        ev: &KernelEvent,
        sk: u64,
        (old, new): (TcpState, TcpState),
        (addr, port): (IpAddr, u16),
        out: &mut Vec<LifecycleEvent>,
    ) {
        let opened = (old, new) == (TcpState::Close, TcpState::Listen);
        let closed = (old, new) == (TcpState::Listen, TcpState::Close);
        if !opened && !closed {
            return;
        }
        // Both transitions run in the listener's own context: its cgroup names the container.
        let Some(cid) = self.container_of(ev.tgid, ev.cgroup_id) else {
            return;
        };
        let Some(c) = self.containers.get_mut(&*cid) else {
            return;
        };
        let uid = c.pod_uid.clone();
        let ts = ev.ts_ns;
        let kind = if opened {
            if c.net.listeners.len() >= MAX_LISTENERS {
                c.net.listeners.remove(0);
            }
            c.net.listeners.push(Listener {
                sk,
                port,
                opened_ns: ts,
            });
            c.net.first_listen_ns.get_or_insert(ts);
            if !c.net.ports.contains(&port) && c.net.ports.len() < MAX_LISTENERS {
                c.net.ports.push(port);
            }
            LifecycleKind::ListenerOpened {
                pid: ev.tgid,
                comm: ev.comm.to_string(),
                port,
                address: addr,
                family: IpFamily::of(&addr),
            }
        } else {
            let open = c.net.listeners.iter().position(|l| l.sk == sk);
            let opened_ns = open.map(|i| c.net.listeners.remove(i).opened_ns);
            LifecycleKind::ListenerClosed {
                pid: ev.tgid,
                comm: ev.comm.to_string(),
                port,
                open_s: opened_ns.map(|o| secs(o, ts)),
                after_stop_s: c.stop.as_ref().map(|s| secs(s.ts, ts)),
            }
        };
        out.push(self.event(ts, &uid, Some(&cid), kind));
    }
}

/// Pod addresses the agent told, and refused connections not yet reported.
#[derive(Default)]
pub(super) struct NetIndex {
    /// Pod address → pod uid, bounded by [`MAX_POD_ADDRESSES`].
    pub(super) addrs: HashMap<IpAddr, String>,
    /// Resets of one pod port within the current second, reported when the second is over.
    refused: HashMap<(String, u16), Refused>,
    /// Renders `first` / `last` of ConnectionsRefused (the agent's offset; tests fix one).
    wall: WallClock,
    /// Kubelet probes of pod ports (net_probe.rs).
    pub(super) probes: super::net_probe::ProbeStates,
}

struct Refused {
    first: u64,
    last: u64,
    count: u32,
    phase: ConnPhase,
    container: Option<ContainerId>,
}

/// Pod addresses kept (the kernel map holds as many).
pub const MAX_POD_ADDRESSES: usize = 4096;
/// Pod ports with refused connections waiting for the end of their second.
const MAX_PENDING_REFUSED: usize = 1024;
/// One ConnectionsRefused per pod and port per second at most.
const REFUSED_WINDOW_NS: u64 = 1_000_000_000;

impl Engine {
    /// The pod's sandbox has this address (its network namespace's): resets from it are
    /// refused connections of the pod. False when the bound is reached.
    pub fn set_pod_address(&mut self, uid: &str, addr: IpAddr) -> bool {
        let addrs = &mut self.net.addrs;
        if addrs.len() >= MAX_POD_ADDRESSES && !addrs.contains_key(&addr) {
            return false;
        }
        addrs.insert(addr, uid.to_string());
        true
    }

    /// Forget the pod's addresses (it was removed: they may go to another pod); returns them.
    pub fn forget_pod_addresses(&mut self, uid: &str) -> Vec<IpAddr> {
        let gone: Vec<IpAddr> = (self.net.addrs.iter())
            .filter(|(_, u)| u.as_str() == uid)
            .map(|(a, _)| *a)
            .collect();
        for a in &gone {
            self.net.addrs.remove(a);
        }
        self.forget_probes(uid);
        gone
    }

    /// realtime − monotonic, for the wall-clock `first` / `last` of ConnectionsRefused.
    pub fn set_wall_clock(&mut self, wall: WallClock) {
        self.net.wall = wall;
    }

    pub(super) fn on_tcp_reset(
        &mut self,
        ts: u64,
        (addr, port): (IpAddr, u16),
        out: &mut Vec<LifecycleEvent>,
    ) {
        let Some(uid) = self.net.addrs.get(&addr).cloned() else {
            return;
        };
        let Some(pod) = self.pods.get(&uid).filter(|p| p.removed_ns.is_none()) else {
            return;
        };
        let stopping = pod.state == PodState::Terminating
            || pod.containers.iter().any(|id| {
                self.containers
                    .get(id.as_str())
                    .is_some_and(|c| c.stop.is_some() && !c.is_sandbox())
            });
        let listened = pod.containers.iter().find(|id| {
            self.containers
                .get(id.as_str())
                .is_some_and(|c| c.net.ports.contains(&port))
        });
        let phase = match (stopping, listened) {
            (true, _) => ConnPhase::Terminating,
            (false, Some(_)) => ConnPhase::Running,
            (false, None) => ConnPhase::Starting,
        };
        let container = listened.map(|id| ContainerId::from(id.as_str()));
        let key = (uid, port);
        if let Some(r) = self.net.refused.get_mut(&key) {
            if ts < r.first + REFUSED_WINDOW_NS && r.phase == phase {
                r.count += 1;
                r.last = r.last.max(ts);
                return;
            }
            let r = self.net.refused.remove(&key).expect("present");
            out.push(self.refused_event(&key, r));
        }
        if self.net.refused.len() >= MAX_PENDING_REFUSED {
            self.flush_refused(u64::MAX, out);
        }
        let r = Refused {
            first: ts,
            last: ts,
            count: 1,
            phase,
            container,
        };
        self.net.refused.insert(key, r);
    }

    /// Report the refused connections whose second ended before `now`.
    pub(super) fn flush_refused(&mut self, now: u64, out: &mut Vec<LifecycleEvent>) {
        let mut due: Vec<(String, u16)> = (self.net.refused.iter())
            .filter(|(_, r)| r.first.saturating_add(REFUSED_WINDOW_NS) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort_by_key(|k| self.net.refused[k].first);
        for key in due {
            if let Some(r) = self.net.refused.remove(&key) {
                out.push(self.refused_event(&key, r));
            }
        }
    }

    fn refused_event(&self, (uid, port): &(String, u16), r: Refused) -> LifecycleEvent {
        let kind = LifecycleKind::ConnectionsRefused {
            port: *port,
            count: r.count,
            first: self.net.wall.rfc3339(r.first),
            last: self.net.wall.rfc3339(r.last),
            phase: r.phase,
        };
        self.event(r.first, uid, r.container.as_deref(), kind)
    }
}
