//! Rebuild timelines from persisted lifecycle events after an agent restart.

use super::start::restart_keys;
use super::*;

impl Engine {
    /// Put events an earlier run derived back on their timelines and recover what they say
    /// about containers (names, kinds, init pids, exits, restart attempts).
    pub fn restore(&mut self, mut events: Vec<LifecycleEvent>) {
        events.sort_by_key(|e| e.ts_ns);
        for e in events {
            if !self.pods.contains_key(&e.pod_uid) {
                self.new_pod(&e.pod_uid, None, e.ts_ns);
            }
            if let Some(cid) = &e.container_id {
                if !self.containers.contains_key(cid) {
                    self.ensure_container(cid, &e.pod_uid, e.ts_ns);
                }
                if let Some(c) = self.containers.get_mut(cid) {
                    if c.meta.container_name.is_none() {
                        c.meta.container_name.clone_from(&e.container);
                    }
                }
            }
            self.restore_facts(&e);
            if let Some(p) = self.pods.get_mut(&e.pod_uid) {
                if !p.events.contains(&e) {
                    p.events.push_back(e);
                }
                while p.events.len() > self.cfg.max_events_per_pod {
                    p.events.pop_front();
                    self.evictions.events += 1;
                }
            }
        }
    }

    fn restore_facts(&mut self, e: &LifecycleEvent) {
        let cid = e.container_id.as_deref().unwrap_or("");
        let uid = e.pod_uid.as_str();
        match &e.kind {
            LifecycleKind::SandboxStarted { pid } => {
                if let Some(c) = self.containers.get_mut(cid) {
                    c.meta.kind = Some(ContainerKind::Sandbox);
                    c.init_pid = Some(*pid);
                    c.started_ns = Some(e.ts_ns);
                }
                if let Some(p) = self.pods.get_mut(uid) {
                    p.sandbox_id = Some(cid.to_string());
                    p.state = PodState::Running;
                }
            }
            LifecycleKind::ContainerStarted { pid, argv, .. } => {
                if let Some(c) = self.containers.get_mut(cid) {
                    c.created_emitted = true;
                    c.init_pid = Some(*pid);
                    c.started_ns = Some(e.ts_ns);
                    c.argv.clone_from(argv);
                }
                if let Some(p) = self.pods.get_mut(uid) {
                    p.state = PodState::Running;
                }
            }
            LifecycleKind::ContainerRestarted { attempt, .. } => {
                if let Some(c) = self.containers.get_mut(cid) {
                    c.attempt = *attempt;
                }
            }
            LifecycleKind::ContainerExited { exit_code, .. }
            | LifecycleKind::SandboxStopped { exit_code, .. } => {
                let Some(c) = self.containers.get_mut(cid) else {
                    return;
                };
                c.exited_ns = Some(e.ts_ns);
                c.exit_code = *exit_code;
                let (keys, attempt) = (restart_keys(c), c.attempt);
                let sandbox = c.is_sandbox();
                if let Some(p) = self.pods.get_mut(uid) {
                    if sandbox {
                        if p.removed_ns.is_none() {
                            p.state = PodState::Stopped;
                        }
                    } else {
                        for k in keys {
                            let r = p.restarts.entry(k).or_default();
                            r.last_exit_ns = Some(e.ts_ns);
                            r.attempt = attempt;
                        }
                    }
                }
            }
            LifecycleKind::DeletionRequested { .. } => {
                // Not derived again when the watch lists the pod after the restart.
                if let Some(p) = self.pods.get_mut(uid) {
                    p.deletion_ns = Some(e.ts_ns);
                }
            }
            LifecycleKind::PodRemoved => {
                if let Some(p) = self.pods.get_mut(uid) {
                    p.removed_ns = Some(e.ts_ns);
                    p.state = PodState::Removed;
                }
            }
            _ => {}
        }
    }
}
