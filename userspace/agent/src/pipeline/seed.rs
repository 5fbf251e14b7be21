//! What already runs when the agent starts, or after the kernel lost events: pod cgroups and
//! runtime shim trees found in cgroupfs and /proc, tracked in the kernel-side filter.

use std::path::Path;

use podlife_common::TRACK_BOOTSTRAP;
use tracing::warn;

use crate::capture::loader::Capture;
use crate::node::bootstrap;
use crate::node::cgroupfs::CgroupMounts;
use crate::pipeline::enrich;

/// Seed the kernel-side filter with what already runs: pod cgroups and runtime shim trees.
pub fn track_existing(
    capture: &mut Capture,
    mounts: &CgroupMounts,
) -> (Vec<bootstrap::FoundCgroup>, Vec<bootstrap::FoundProcess>) {
    let cgroups = mounts
        .v2
        .as_deref()
        .map(bootstrap::scan_cgroups)
        .unwrap_or_default();
    for c in &cgroups {
        if let Err(e) = capture.track_cgroup(c.id) {
            warn!("cannot track cgroup {}: {e}", c.path);
        }
    }
    let mut procs = bootstrap::scan_processes(Path::new("/proc"), mounts.v2.as_deref());
    if let Some(v2) = mounts.v2.as_deref() {
        bootstrap::place_by_cgroupfs(&mut procs, &cgroups, v2);
    }
    let root = bootstrap::node_root(&procs);
    bootstrap::read_pod_argv(&mut procs, Path::new("/proc"), |p| {
        p.cgroup_path
            .as_deref()
            .is_some_and(|c| podlife_core::cgroup_path::parse_under(c, root.as_deref()).is_some())
    });
    for p in enrich::runtime_trees(&procs) {
        if let Err(e) = capture.track_tgid(p, TRACK_BOOTSTRAP) {
            warn!("cannot track pid {p}: {e}");
        }
    }
    (cgroups, procs)
}
