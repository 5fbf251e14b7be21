//! Sockets: a container's listeners opening and closing (ListenerOpened / ListenerClosed),
//! from sock:inet_sock_set_state in the listening process's context.

use std::net::IpAddr;

use super::*;
use crate::kernel_event::TcpState;

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
            LifecycleKind::ListenerOpened {
                pid: ev.tgid,
                comm: ev.comm.clone(),
                port,
                address: addr,
                family: IpFamily::of(&addr),
            }
        } else {
            let open = c.net.listeners.iter().position(|l| l.sk == sk);
            let opened_ns = open.map(|i| c.net.listeners.remove(i).opened_ns);
            LifecycleKind::ListenerClosed {
                pid: ev.tgid,
                comm: ev.comm.clone(),
                port,
                open_s: opened_ns.map(|o| secs(o, ts)),
                after_stop_s: c.stop.as_ref().map(|s| secs(s.ts, ts)),
            }
        };
        out.push(self.event(ts, &uid, Some(&cid), kind));
    }
}
