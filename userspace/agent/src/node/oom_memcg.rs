//! What an OOM kill's memory cgroup says at the kill: whether the kernel kills the whole group
//! (`memory.oom.group`, cgroup v2 only), and the usage and limit of the cgroup whose limit
//! fired. Usage is the cgroup's peak (`memory.peak`, v2 since 5.19; `memory.max_usage_in_bytes`
//! on v1): `memory.current` read after the kill is the post-kill value, while a limit-hit OOM
//! happens at the peak.

use std::path::Path;

use podlife_core::OomMemcg;

use super::oom_scope::Scope;

/// Limits at or above this are "unlimited" (v1 reports PAGE_COUNTER_MAX rounded to pages).
const UNLIMITED: u64 = 1 << 62;

/// The facts of one memory cgroup, from whichever hierarchy has its memory controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemcgFacts {
    pub oom_group: bool,
    pub peak: Option<u64>,
    pub limit: Option<u64>,
}

fn number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl MemcgFacts {
    /// v2 files when the v2 directory has the memory controller's, else v1's. "max" and
    /// v1's huge number are no limit.
    pub fn read(v2_dir: Option<&Path>, v1_dir: Option<&Path>) -> Self {
        if let Some(d) = v2_dir.filter(|d| d.join("memory.max").exists()) {
            return Self {
                oom_group: number(&d.join("memory.oom.group")) == Some(1),
                peak: number(&d.join("memory.peak")),
                limit: number(&d.join("memory.max")),
            };
        }
        let Some(d) = v1_dir else {
            return Self::default();
        };
        Self {
            oom_group: false,
            peak: number(&d.join("memory.max_usage_in_bytes")),
            limit: number(&d.join("memory.limit_in_bytes")).filter(|l| *l < UNLIMITED),
        }
    }
}

/// The OOM-ing cgroup is the one whose limit fired (`scope`). The kernel kills the group when
/// `memory.oom.group` is set on any cgroup from the victim's up to the OOM-ing one (here:
/// the container's, or the pod's too when the pod's limit or the node's memory ran out).
pub fn at_kill(scope: Scope, container: &MemcgFacts, pod: &MemcgFacts) -> OomMemcg {
    let group_kill = container.oom_group || (scope != Scope::Container && pod.oom_group);
    let of = match scope {
        Scope::Container => Some(container),
        Scope::Pod => Some(pod),
        Scope::Node => None,
    };
    OomMemcg {
        group_kill,
        usage_bytes: of.and_then(|f| f.peak),
        limit_bytes: of.and_then(|f| f.limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup directory of files, removed when dropped.
    struct Tree(std::path::PathBuf);

    impl Tree {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(files: &[(&str, &str)]) -> Tree {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("podlife-memcg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        Tree(d)
    }

    #[test]
    fn v2_reads_group_peak_and_limit() {
        let c = tree(&[
            ("memory.max", "33554432\n"),
            ("memory.peak", "33550336\n"),
            ("memory.current", "4096\n"),
            ("memory.oom.group", "1\n"),
        ]);
        let p = tree(&[("memory.max", "max\n"), ("memory.oom.group", "0\n")]);
        let (c, p) = (
            MemcgFacts::read(Some(c.path()), None),
            MemcgFacts::read(Some(p.path()), None),
        );
        assert_eq!(
            c,
            MemcgFacts {
                oom_group: true,
                peak: Some(33_550_336),
                limit: Some(32 << 20)
            }
        );
        assert_eq!(p.limit, None, "max is no limit");
        let at = at_kill(Scope::Container, &c, &p);
        assert_eq!(
            at,
            OomMemcg {
                group_kill: true,
                usage_bytes: Some(33_550_336),
                limit_bytes: Some(32 << 20)
            }
        );
        // A node OOM: no cgroup limit fired, nothing to report but the group.
        assert_eq!(
            at_kill(Scope::Node, &c, &p),
            OomMemcg {
                group_kill: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn the_pods_group_counts_only_when_the_pods_limit_fired() {
        let c = MemcgFacts::default();
        let p = MemcgFacts {
            oom_group: true,
            peak: Some(64 << 20),
            limit: Some(64 << 20),
        };
        assert!(!at_kill(Scope::Container, &c, &p).group_kill);
        let pod = at_kill(Scope::Pod, &c, &p);
        assert!(pod.group_kill);
        assert_eq!(pod.limit_bytes, Some(64 << 20));
    }

    #[test]
    fn v1_has_no_group_and_reads_max_usage() {
        // A hybrid node: the unified directory exists without the memory controller's files.
        let unified = tree(&[("cgroup.procs", "")]);
        let v1 = tree(&[
            ("memory.limit_in_bytes", "16777216\n"),
            ("memory.max_usage_in_bytes", "16773120\n"),
            ("memory.usage_in_bytes", "8192\n"),
        ]);
        let f = MemcgFacts::read(Some(unified.path()), Some(v1.path()));
        assert_eq!(
            f,
            MemcgFacts {
                oom_group: false,
                peak: Some(16_773_120),
                limit: Some(16 << 20)
            }
        );
        let unlimited = tree(&[("memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(MemcgFacts::read(None, Some(unlimited.path())).limit, None);
        assert_eq!(MemcgFacts::read(None, None), MemcgFacts::default());
    }
}
