//! The state dir's disk fills up: the agent keeps serving from memory, counts the failed
//! writes, never leaves a torn or repeated line on disk, and writes what it held back once
//! space is free again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use podlife_e2e::agent::{metric, Agent};
use podlife_e2e::{pod_cgroups, store_files};

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount -t tmpfs on {}: {ok}", dir.display());
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Every stored line parses and no event is stored twice; the stored (uid, type) pairs.
fn stored(dir: &Path) -> HashSet<(String, String)> {
    let events = store_files::stored_events(dir);
    let mut ids = HashSet::new();
    for e in &events {
        let id = e["id"]
            .as_str()
            .unwrap_or_else(|| panic!("stored line without id: {e}"));
        assert!(ids.insert(id.to_string()), "event {id} stored twice: {e}");
    }
    events
        .iter()
        .map(|e| {
            (
                e["uid"].as_str().unwrap_or("").to_string(),
                e["type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_full_disk_is_counted_survived_and_caught_up_on() {
    podlife_e2e::require_root();
    let dir = std::env::temp_dir().join(format!("podlife-e2e-diskfull-{}", std::process::id()));
    let tmpfs = Tmpfs::mount(&dir, "2m");
    let state = dir.join("state");
    let scratch = podlife_e2e::Scratch::new("diskfull-runtime");
    let runtime = scratch.0.clone();
    let agent = Agent::start_with(&runtime, Some(state.clone()));

    // Some lines on disk first: the segment's last page keeps room, so the first write to the
    // full disk is a partial one (what must not leave a torn line behind).
    let early = pod_cgroups::churn(2, pod_cgroups::uids("e000"));
    agent.wait_until("the first events on disk", Duration::from_secs(20), || {
        let on_disk = stored(&state);
        early
            .iter()
            .all(|u| on_disk.contains(&(u.clone(), "PodRemoved".into())))
    });
    // Fill the disk to the last block.
    let filler = dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let errors = || metric(&agent.metrics(), "podlife_store_errors_total", &[]);
    let before = errors();
    let full = pod_cgroups::churn(100, pod_cgroups::uids("f000"));
    agent.wait_until("a failed store write", Duration::from_secs(20), || {
        errors() > before
    });

    // Still serving, from memory.
    assert_eq!(agent.get("/healthz").0, 200);
    assert_eq!(agent.get("/readyz").0, 200);
    let last = full.last().unwrap();
    let t = agent.wait_for(
        last,
        "the last pod's removal",
        Duration::from_secs(20),
        |t| {
            t["events"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["type"] == "PodRemoved"))
        },
    );
    assert_eq!(t["uid"], last.as_str(), "{t}");
    let on_disk = stored(&state);
    assert!(
        !on_disk.contains(&(last.clone(), "PodRemoved".into())),
        "written to a full disk?"
    );

    // Space again: the held-back batch and new events reach the disk, each once.
    std::fs::remove_file(&filler).unwrap();
    let freed_at = store_files::now_wall_ns();
    let after = pod_cgroups::churn(10, pod_cgroups::uids("a000"));
    agent.wait_until(
        "the held-back and new events on disk",
        Duration::from_secs(20),
        || {
            let on_disk = stored(&state);
            full.iter().chain(&after).all(|u| {
                on_disk.contains(&(u.clone(), "PodAdmitted".into()))
                    && on_disk.contains(&(u.clone(), "PodRemoved".into()))
            })
        },
    );
    let m = agent.metrics();
    assert_eq!(
        metric(&m, "podlife_store_dropped_events_total", &[]),
        0.0,
        "the write queue (8 MiB) was not full: nothing may be dropped"
    );
    // A heartbeat is written only after a whole successful flush: the store works again.
    agent.wait_until(
        "a heartbeat after the disk had space",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(state.join("heartbeat"))
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .is_some_and(|t| t > freed_at)
        },
    );
    drop(agent);
    drop(tmpfs);
}
