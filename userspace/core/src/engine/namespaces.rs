//! Namespace evidence from the runtime's child (`runc:[1:CHILD]`):
//! - a sandbox's child **creates** IPC/UTS (and NET unless hostNetwork) with unshare;
//! - an app or init container's child **joins** the sandbox's IPC/UTS/NET (and PID when the pod
//!   shares its pid namespace) with setns, from inside the new container's cgroup;
//! - an exec session's child (`runc exec`) joins IPC/UTS/NET/PID **and MNT** while still outside
//!   the container's cgroup; it is attached to the cgroup only afterwards.

use super::*;
use crate::kernel_event::clone::{
    CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS,
};

const SANDBOX_NAMESPACES: u64 = CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET;
/// Joining these is app-container evidence. NET alone is not: a sandbox joins the network
/// namespace the runtime prepared for CNI before it creates its own IPC/UTS.
const JOINED_NAMESPACES: u64 = CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID;

impl Engine {
    pub(super) fn on_setns(
        &mut self,
        ev: &KernelEvent,
        nstype: u64,
        ret: i32,
        out: &mut Vec<LifecycleEvent>,
    ) {
        if ret != 0 {
            return;
        }
        if nstype & CLONE_NEWNS != 0 {
            // Joining another mount namespace is what runc exec does (and nsenter -m): the
            // process or its child will run a command in a container.
            let p = self.proc_mut(ev.tgid, &ev.comm, ev.ts_ns);
            p.placeholder = false;
            p.joined_ns |= nstype;
            if p.role == SessionRole::None {
                p.role = SessionRole::Candidate;
            }
            return;
        }
        let Some(cid) = self.container_of(ev.tgid, ev.cgroup_id) else {
            return;
        };
        let p = self.proc_mut(ev.tgid, &ev.comm, ev.ts_ns);
        p.placeholder = false;
        p.joined_ns |= nstype;
        if nstype & JOINED_NAMESPACES == 0 || p.role != SessionRole::None {
            return;
        }
        let Some(c) = self.containers.get_mut(&*cid) else {
            return;
        };
        if c.init_pid.is_some() {
            return;
        }
        c.joins_namespaces = true;
        self.container_created(&cid, out);
    }

    pub(super) fn on_unshare(&mut self, ev: &KernelEvent, flags: u64) {
        if flags & SANDBOX_NAMESPACES == 0 {
            return;
        }
        let Some(cid) = self.container_of(ev.tgid, ev.cgroup_id) else {
            return;
        };
        if let Some(c) = self.containers.get_mut(&*cid) {
            if c.init_pid.is_none() {
                c.creates_namespaces = true;
            }
        }
    }

    /// ContainerCreated for a container that is not a sandbox, once (at the cgroup's mkdir time).
    pub(super) fn container_created(&mut self, cid: &str, out: &mut Vec<LifecycleEvent>) {
        let Some(c) = self.containers.get_mut(cid) else {
            return;
        };
        if c.created_emitted || c.is_sandbox() {
            return;
        }
        c.created_emitted = true;
        let (uid, ts, kind) = (c.pod_uid.clone(), c.created_ns, c.meta.kind);
        out.push(self.event(
            ts,
            &uid,
            Some(cid),
            LifecycleKind::ContainerCreated { kind },
        ));
    }
}
