//! Glue between what the agent reads (bootstrap scans, runtime bundles, the store) and the
//! engine's inputs.

use std::collections::{HashMap, HashSet};

use podlife_common::RUNTIME_COMMS;
use podlife_core::{BootstrapProcess, Fields, LifecycleKind, ServedEvent, Source};

use crate::node::bootstrap::{FoundCgroup, FoundProcess};
use crate::pipeline::shared::Inner;
use crate::store::Loaded;

/// Runtime shims (containerd-shim*, conmon) and every descendant: the trees the kernel filter
/// follows.
pub fn runtime_trees(procs: &[FoundProcess]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.tgid);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<u32> = procs
        .iter()
        .filter(|p| {
            RUNTIME_COMMS
                .iter()
                .any(|c| p.comm.as_bytes().starts_with(c))
        })
        .map(|p| p.tgid)
        .collect();
    while let Some(t) = stack.pop() {
        if seen.insert(t) {
            out.push(t);
            stack.extend(children.get(&t).into_iter().flatten());
        }
    }
    out
}

/// Tell the engine about pods and processes that were there before the agent.
pub fn bootstrap_engine(
    inner: &mut Inner,
    cgroups: &[FoundCgroup],
    procs: &[FoundProcess],
    now_ns: u64,
) {
    let mut out = Vec::new();
    if let Some(root) = crate::node::bootstrap::node_root(procs) {
        inner.engine.set_node_root(Some(root));
    }
    for c in cgroups {
        out.extend(inner.engine.bootstrap_cgroup(c.id, &c.path, now_ns));
        // Before the processes: their ContainerStarted carries the container's name.
        inner.read_bundle(&c.path);
    }
    let ticks = clock_ticks();
    let boot_ns = |t: u64| t.saturating_mul(1_000_000_000) / ticks;
    let pod_procs: Vec<&FoundProcess> = procs
        .iter()
        .filter(|p| {
            p.cgroup_path
                .as_deref()
                .is_some_and(|c| inner.engine.parse_cgroup_path(c).is_some())
        })
        .collect();
    for p in pod_procs {
        out.extend(inner.engine.bootstrap_process(BootstrapProcess {
            tgid: p.tgid,
            ppid: p.ppid,
            cgroup_id: p.cgroup_id.unwrap_or(0),
            comm: p.comm.clone(),
            argv: p.argv.clone(),
            start_ns: boot_ns(p.start_ticks),
        }));
    }
    inner.publish(out);
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Serve what earlier runs wrote, and say on each affected timeline that the agent was down.
/// Stored events are handed to the history one by one as the store streams them; pods that
/// were still alive at the last write get an `AgentGap` for the time the agent was down.
#[derive(Default)]
pub struct Restore {
    alive: std::collections::BTreeSet<String>,
    /// The newest stored event's wall time: the agent was alive when it saw it, even when it
    /// died between writing a batch and writing the heartbeat after it.
    newest_ns: Option<i128>,
}

impl Restore {
    pub fn event(&mut self, history: &mut crate::pipeline::history::History, ev: ServedEvent) {
        self.newest_ns = self.newest_ns.max(Some(i128::from(ev.ts_wall_ns)));
        if matches!(ev.kind, LifecycleKind::PodRemoved) {
            self.alive.remove(&*ev.uid);
        } else if !self.alive.contains(&*ev.uid) {
            self.alive.insert(ev.uid.to_string());
        }
        history.push(ev);
    }

    pub fn finish(self, inner: &mut Inner, loaded: &Loaded, now_wall_ns: i128) {
        if loaded.unloaded_bytes > 0 {
            inner.history.mark_expired_before_oldest();
        }
        let Some(last) = self.last_alive_ns(loaded.last_alive_ns) else {
            return;
        };
        for uid in self.alive {
            let ev = ServedEvent {
                seq: 0,
                ts_wall_ns: last as i64,
                uid: uid.into(),
                names: None,
                container: None,
                container_id: None,
                source: Source::Agent,
                kind: LifecycleKind::AgentGap {
                    down_from: crate::node::clock::format_rfc3339(last),
                    down_until: crate::node::clock::format_rfc3339(now_wall_ns),
                    down_s: ((now_wall_ns - last) as f64 / 1e9),
                },
            };
            let kept = inner.history.push(ev);
            if let Some(store) = &inner.store {
                store.append(&kept.to_json(Fields::All));
            }
        }
    }

    /// When the previous run was last known alive: its heartbeat or its newest stored event,
    /// whichever is later (`None` orders before any `Some`).
    fn last_alive_ns(&self, heartbeat_ns: Option<i128>) -> Option<i128> {
        heartbeat_ns.max(self.newest_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(tgid: u32, ppid: u32, comm: &str) -> FoundProcess {
        FoundProcess {
            tgid,
            ppid,
            comm: comm.into(),
            argv: vec![],
            cgroup_path: None,
            cgroup_id: None,
            start_ticks: 0,
        }
    }

    #[test]
    fn shim_trees_are_followed() {
        let procs = vec![
            p(1, 0, "init"),
            p(10, 1, "containerd"),
            p(20, 1, "containerd-shim"),
            p(21, 20, "pause"),
            p(22, 20, "sh"),
            p(23, 22, "sleep"),
            p(30, 1, "conmon"),
            p(31, 30, "nginx"),
        ];
        let mut t = runtime_trees(&procs);
        t.sort();
        assert_eq!(t, vec![20, 21, 22, 23, 30, 31]);
    }

    fn stored(uid: &str, ts_wall_ns: i64, kind: LifecycleKind) -> ServedEvent {
        ServedEvent {
            seq: 0,
            ts_wall_ns,
            uid: uid.into(),
            names: None,
            container: None,
            container_id: None,
            source: Source::Kernel,
            kind,
        }
    }

    #[test]
    fn the_gap_starts_at_the_newest_stored_event_when_the_heartbeat_is_older() {
        let mut history = crate::pipeline::history::History::new(8, 8, 8);
        let mut r = Restore::default();
        assert_eq!(r.last_alive_ns(None), None, "nothing stored, no heartbeat");
        assert_eq!(r.last_alive_ns(Some(5)), Some(5));
        r.event(&mut history, stored("a", 300, LifecycleKind::PodAdmitted));
        r.event(&mut history, stored("b", 200, LifecycleKind::PodAdmitted));
        // Killed after a batch reached the disk but before the heartbeat that follows it.
        assert_eq!(r.last_alive_ns(Some(250)), Some(300));
        assert_eq!(r.last_alive_ns(Some(900)), Some(900));
        assert_eq!(
            r.last_alive_ns(None),
            Some(300),
            "a batch before the first heartbeat"
        );
        r.event(&mut history, stored("a", 100, LifecycleKind::PodRemoved));
        assert_eq!(r.alive.iter().collect::<Vec<_>>(), vec!["b"]);
    }
}
