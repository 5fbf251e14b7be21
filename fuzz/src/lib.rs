//! What the fuzz targets share: the recorded kernel event sequences of the engine's replay
//! tests (real runc scenarios), parsed once.

pub mod events;

use std::sync::OnceLock;

use podlife_core::KernelEvent;

/// The fixtures, embedded so a target runs from any directory.
const FIXTURES: [(&str, &str); 4] = [
    (
        "ctr_lifecycle",
        include_str!("../../userspace/core/tests/fixtures/ctr_lifecycle.jsonl"),
    ),
    (
        "ctr_graceful",
        include_str!("../../userspace/core/tests/fixtures/ctr_graceful.jsonl"),
    ),
    (
        "ctr_oom",
        include_str!("../../userspace/core/tests/fixtures/ctr_oom.jsonl"),
    ),
    (
        "ctr_restart",
        include_str!("../../userspace/core/tests/fixtures/ctr_restart.jsonl"),
    ),
];

/// The recorded sequences, by fixture.
pub fn fixtures() -> &'static [Vec<KernelEvent>] {
    static PARSED: OnceLock<Vec<Vec<KernelEvent>>> = OnceLock::new();
    PARSED.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|(name, text)| {
                text.lines()
                    .enumerate()
                    .map(|(i, l)| {
                        serde_json::from_str(l)
                            .unwrap_or_else(|e| panic!("fixture {name}:{}: {e}", i + 1))
                    })
                    .collect()
            })
            .collect()
    })
}

/// Container ids named by the cgroup paths of a sequence, in order of appearance.
pub fn container_ids(events: &[KernelEvent]) -> Vec<String> {
    let mut ids = Vec::new();
    for e in events {
        if let podlife_core::KernelEventKind::CgroupMkdir { path, .. } = &e.kind {
            if let Some(id) = podlife_core::cgroup_path::parse(path).and_then(|p| p.container_id) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}
