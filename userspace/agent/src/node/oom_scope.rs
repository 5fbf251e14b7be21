//! Which memory limit fired for an OOM kill: the container's, the pod's, or none (the node
//! ran out). Decided from cgroupfs counters read at container start and again at the kill:
//! cgroup v2 `memory.events.local` "oom" (counts limit hits of exactly that cgroup), or on
//! cgroup v1 `memory.failcnt` plus `memory.max_usage_in_bytes` reaching `memory.limit_in_bytes`.

use std::path::Path;

/// Counters of one memory cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemCounters {
    /// v2: "oom" of memory.events.local.
    pub oom_local: Option<u64>,
    /// v1: memory.failcnt.
    pub failcnt: Option<u64>,
    /// v1: memory.limit_in_bytes (None when unlimited).
    pub limit: Option<u64>,
    /// v1: memory.max_usage_in_bytes.
    pub max_usage: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Container,
    Pod,
    Node,
}

impl Scope {
    pub fn limit_scope(self) -> podlife_core::LimitScope {
        match self {
            Scope::Container => podlife_core::LimitScope::Container,
            Scope::Pod => podlife_core::LimitScope::Pod,
            Scope::Node => podlife_core::LimitScope::Node,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Container => "container",
            Scope::Pod => "pod",
            Scope::Node => "node",
        }
    }
}

/// Parse "key value" lines (memory.events, memory.events.local).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Limits at or above this are "unlimited" (v1 reports PAGE_COUNTER_MAX rounded to pages).
const UNLIMITED: u64 = 1 << 62;

impl MemCounters {
    pub fn read(v2_dir: Option<&Path>, v1_dir: Option<&Path>) -> Self {
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let mut c = Self::default();
        if let Some(d) = v2_dir {
            c.oom_local = read(&d.join("memory.events.local")).and_then(|t| keyed(&t, "oom"));
        }
        if let Some(d) = v1_dir {
            c.failcnt = read(&d.join("memory.failcnt")).and_then(|t| number(&t));
            c.limit = read(&d.join("memory.limit_in_bytes"))
                .and_then(|t| number(&t))
                .filter(|l| *l < UNLIMITED);
            c.max_usage = read(&d.join("memory.max_usage_in_bytes")).and_then(|t| number(&t));
        }
        c
    }

    /// Whether this cgroup's own limit was hit between `before` and `self`.
    fn hit_since(&self, before: &MemCounters) -> bool {
        if let (Some(now), Some(then)) = (self.oom_local, before.oom_local) {
            return now > then;
        }
        // v1 has no per-cgroup "limit hit" counter: a limit that exists and a peak that reached
        // it, newly since the baseline (or with new failed charges; some kernels do not count
        // them). A failed huge-page charge leaves the peak up to 2 MiB under the limit.
        let Some(limit) = self.limit else {
            return false;
        };
        let at_limit =
            |peak: Option<u64>| peak.is_some_and(|p| p + (limit / 8).max(2 << 20) >= limit);
        let failed = match (self.failcnt, before.failcnt) {
            (Some(now), Some(then)) => now > then,
            _ => false,
        };
        at_limit(self.max_usage) && (failed || !at_limit(before.max_usage))
    }
}

/// The innermost level whose limit was hit wins; none means the node (global OOM).
pub fn classify(
    container: (&MemCounters, &MemCounters),
    pod: (&MemCounters, &MemCounters),
) -> Scope {
    if container.1.hit_since(container.0) {
        Scope::Container
    } else if pod.1.hit_since(pod.0) {
        Scope::Pod
    } else {
        Scope::Node
    }
}

/// How far apart the victims of one group kill can be marked. The kernel kills them in one
/// pass, microseconds apart natively; a slow console (every kill is logged) stretches that to
/// tens of milliseconds.
pub const GROUP_KILL_WINDOW_NS: u64 = 1_000_000_000;

/// The scope of a kill the counters call `Node` right after a kill in the same container
/// whose limit was hit: the rest of that OOM. With cgroup v2's `memory.oom.group` (the
/// kubelet's default there since 1.28) one limit hit kills every process of the container, and
/// the counters move once, for the first victim.
pub fn group_member(scope: Scope, previous: Option<(u64, Scope)>, ts_ns: u64) -> Scope {
    match previous {
        Some((at, prev))
            if scope == Scope::Node
                && prev != Scope::Node
                && ts_ns.saturating_sub(at) <= GROUP_KILL_WINDOW_NS =>
        {
            prev
        }
        _ => scope,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(failcnt: u64, limit: Option<u64>, peak: u64) -> MemCounters {
        MemCounters {
            failcnt: Some(failcnt),
            limit,
            max_usage: Some(peak),
            oom_local: None,
        }
    }

    #[test]
    fn the_other_victims_of_a_group_kill_share_its_scope() {
        let first = Some((1_000, Scope::Container));
        // The init, 20 ms after the child: the counters moved once, for the child.
        assert_eq!(
            group_member(Scope::Node, first, 20_001_000),
            Scope::Container
        );
        assert_eq!(
            group_member(Scope::Node, Some((1_000, Scope::Pod)), 2_000),
            Scope::Pod
        );
        // A node OOM much later in the same container is its own.
        assert_eq!(
            group_member(Scope::Node, first, 1_000 + 2 * GROUP_KILL_WINDOW_NS),
            Scope::Node
        );
        // New counters win; nothing before: as classified.
        assert_eq!(group_member(Scope::Pod, first, 2_000), Scope::Pod);
        assert_eq!(group_member(Scope::Node, None, 2_000), Scope::Node);
    }

    #[test]
    fn v2_local_oom_counter_decides() {
        let before = MemCounters {
            oom_local: Some(0),
            ..Default::default()
        };
        let hit = MemCounters {
            oom_local: Some(1),
            ..Default::default()
        };
        assert_eq!(
            classify((&before, &hit), (&before, &before)),
            Scope::Container
        );
        assert_eq!(classify((&before, &before), (&before, &hit)), Scope::Pod);
        assert_eq!(
            classify((&before, &before), (&before, &before)),
            Scope::Node
        );
        assert_eq!(
            keyed("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n", "oom"),
            Some(2)
        );
    }

    #[test]
    fn v1_needs_limit_peak_and_failures() {
        let mib32 = 32 << 20;
        let before = v1(0, Some(mib32), 0);
        assert_eq!(
            classify(
                (&before, &v1(120, Some(mib32), mib32)),
                (&v1(0, None, 0), &v1(0, None, mib32))
            ),
            Scope::Container
        );
        // Failed charges without the peak at the limit: not this level.
        assert_eq!(
            classify(
                (&before, &v1(3, Some(mib32), mib32 / 2)),
                (&v1(0, None, 0), &v1(0, None, 0))
            ),
            Scope::Node
        );
        // Kernels that do not count failed charges: the peak newly at the limit decides.
        assert_eq!(
            classify(
                (&v1(0, None, 0), &v1(0, Some(mib32), mib32)),
                (&v1(0, None, 0), &v1(0, None, mib32))
            ),
            Scope::Container
        );
        // A peak already at the limit at the last look, no new failures: not this level.
        assert_eq!(
            classify(
                (&v1(5, Some(mib32), mib32), &v1(5, Some(mib32), mib32)),
                (&v1(0, None, 0), &v1(0, None, 0))
            ),
            Scope::Node
        );
        // Unlimited container, pod at its limit.
        let pod_limit = 64 << 20;
        assert_eq!(
            classify(
                (&v1(0, None, 0), &v1(0, None, pod_limit)),
                (
                    &v1(0, Some(pod_limit), 0),
                    &v1(40, Some(pod_limit), pod_limit)
                )
            ),
            Scope::Pod
        );
    }
}
