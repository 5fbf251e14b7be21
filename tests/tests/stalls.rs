//! A part of the agent that stops making progress: the store's disk hangs (a frozen
//! filesystem: every write blocks, as on a dead network disk), or a thread is held still by
//! ptrace. A hung disk must stall only the store's writer: events keep flowing into the API,
//! /healthz stays up, the stall is exported, and the queued events reach the disk once it
//! answers again. A stalled reader or pipeline must make /healthz fail, naming it, so the
//! kubelet restarts the agent, and recover when the thread runs again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use podlife_e2e::agent::{metric, Agent};
use podlife_e2e::{pod_cgroups, store_files};

/// How long the agent lets a thread go without a loop before /healthz fails (progress.rs), and
/// the store writer before podlife_store_stalled says so.
const STALL: Duration = Duration::from_secs(10);

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small ext4 on a loop device, frozen on demand; thawed and unmounted on drop (before the
/// agent is killed: a process with a thread blocked on a frozen filesystem cannot exit).
struct FreezableDisk {
    dir: PathBuf,
    image: PathBuf,
    frozen: bool,
}

impl FreezableDisk {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let image = dir.with_extension("img");
        let _ = std::fs::remove_file(&image);
        run("truncate", &["-s", "64M", image.to_str().unwrap()]);
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        run(
            "mount",
            &["-o", "loop", image.to_str().unwrap(), dir.to_str().unwrap()],
        );
        Self {
            dir: dir.to_path_buf(),
            image,
            frozen: false,
        }
    }

    fn freeze(&mut self) {
        run("fsfreeze", &["--freeze", self.dir.to_str().unwrap()]);
        self.frozen = true;
    }

    fn thaw(&mut self) {
        if std::mem::take(&mut self.frozen) {
            run("fsfreeze", &["--unfreeze", self.dir.to_str().unwrap()]);
        }
    }
}

impl Drop for FreezableDisk {
    fn drop(&mut self) {
        if self.frozen {
            let _ = Command::new("fsfreeze")
                .arg("--unfreeze")
                .arg(&self.dir)
                .status();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn removed(agent: &Agent, uid: &str) -> bool {
    agent.timeline(uid)["events"]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["type"] == "PodRemoved"))
}

fn stored_removed(state: &Path, uids: &[String]) -> bool {
    let events = store_files::stored_events(state);
    uids.iter().all(|u| {
        events
            .iter()
            .any(|e| e["uid"] == u.as_str() && e["type"] == "PodRemoved")
    })
}

#[test]
fn a_hung_disk_stalls_only_the_store() {
    podlife_e2e::require_root();
    let scratch = podlife_e2e::Scratch::new("hung-disk");
    let mnt = scratch.0.join("disk");
    let state = mnt.join("state");
    let runtime = scratch.0.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    // Declared after the agent would be dropped first; here the disk is thawed first.
    let mut agent_slot: Option<Agent> = None;
    let mut disk = FreezableDisk::new(&mnt);
    let agent = agent_slot.insert(Agent::start_with(&runtime, Some(state.clone())));

    let early = pod_cgroups::churn(2, pod_cgroups::uids("b000"));
    agent.wait_until("the first events on disk", Duration::from_secs(20), || {
        stored_removed(&state, &early)
    });

    // From before the freeze: writers block as soon as it starts, and it returns only after
    // syncing the filesystem.
    let frozen_at = Instant::now();
    disk.freeze();
    let during = pod_cgroups::churn(20, pod_cgroups::uids("c000"));
    agent.wait_until(
        "the pods removed while the disk hangs, in the API",
        Duration::from_secs(20),
        || removed(agent, during.last().unwrap()),
    );
    // Past the stall limit: the store says it is stuck, the agent is still alive and ready,
    // and new events still arrive.
    agent.wait_until(
        "podlife_store_stalled 1",
        STALL + Duration::from_secs(20),
        || metric(&agent.metrics(), "podlife_store_stalled", &[]) == 1.0,
    );
    // The writer's last loop may end up to one flush period (250 ms) before the freeze.
    assert!(
        frozen_at.elapsed() >= STALL - Duration::from_secs(1),
        "stalled flagged after {:?}, before the limit",
        frozen_at.elapsed()
    );
    let (code, body) = agent.get("/healthz");
    assert_eq!(code, 200, "a hung disk must not fail liveness: {body}");
    assert_eq!(agent.get("/readyz").0, 200);
    let late = pod_cgroups::churn(5, pod_cgroups::uids("d000"));
    agent.wait_until(
        "pods removed after the stall, in the API",
        Duration::from_secs(20),
        || removed(agent, late.last().unwrap()),
    );
    let m = agent.metrics();
    assert_eq!(metric(&m, "podlife_ringbuf_events_lost_total", &[]), 0.0);
    assert!(
        !stored_removed(&state, &during[..1]),
        "written to a frozen filesystem?"
    );

    // The disk answers again: everything queued reaches it, and the stall is over.
    disk.thaw();
    agent.wait_until("the queued events on disk", Duration::from_secs(30), || {
        stored_removed(&state, &during) && stored_removed(&state, &late)
    });
    agent.wait_until("podlife_store_stalled 0", Duration::from_secs(10), || {
        metric(&agent.metrics(), "podlife_store_stalled", &[]) == 0.0
    });
    assert_eq!(
        metric(&agent.metrics(), "podlife_store_dropped_events_total", &[]),
        0.0,
        "the write queue (8 MiB) held the stall's events"
    );
    drop(agent_slot);
}

/// Holds one thread of another process still (PTRACE_SEIZE + PTRACE_INTERRUPT): only that
/// thread stops, unlike SIGSTOP, which stops them all. Released on drop.
struct HeldThread(libc::pid_t);

impl HeldThread {
    fn hold(tid: libc::pid_t) -> Self {
        // SAFETY: ptrace and waitpid on a thread id of our child; no memory is shared.
        unsafe {
            assert_eq!(
                libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0),
                0,
                "PTRACE_SEIZE {tid}: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0);
            let mut status = 0;
            assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid);
            assert!(
                libc::WIFSTOPPED(status),
                "thread {tid} not stopped: {status:#x}"
            );
        }
        Self(tid)
    }
}

impl Drop for HeldThread {
    fn drop(&mut self) {
        // SAFETY: detaching our own tracee resumes it.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.0, 0, 0) };
    }
}

/// The thread of `pid` named `name` (its comm).
fn thread(pid: u32, name: &str) -> libc::pid_t {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let found = std::fs::read_dir(&tasks).unwrap().flatten().find(|t| {
        std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
    });
    let t = found.unwrap_or_else(|| panic!("no thread named {name} in {}", tasks.display()));
    t.file_name().to_str().unwrap().parse().unwrap()
}

#[test]
fn a_stalled_reader_or_pipeline_fails_healthz_until_it_runs_again() {
    podlife_e2e::require_root();
    let scratch = podlife_e2e::Scratch::new("stalled-threads");
    let agent = Agent::start(&scratch.0);
    for (name, said) in [
        ("pipeline", "pipeline"),
        ("ring-reader", "ring-buffer reader"),
    ] {
        assert_eq!(agent.get("/healthz").0, 200, "{name}: healthy before");
        let held = HeldThread::hold(thread(agent.pid(), name));
        let t = Instant::now();
        agent.wait_until(
            &format!("/healthz failing while the {name} thread is held"),
            STALL + Duration::from_secs(10),
            || agent.get("/healthz").0 == 503,
        );
        assert!(
            t.elapsed() >= STALL - Duration::from_secs(1),
            "{name}: failed after {:?}, before the stall limit",
            t.elapsed()
        );
        let (_, body) = agent.get("/healthz");
        assert!(body.contains(said), "{name}: /healthz names it: {body}");
        drop(held);
        agent.wait_until(
            &format!("/healthz ok once the {name} runs again"),
            Duration::from_secs(5),
            || agent.get("/healthz").0 == 200,
        );
    }
    // Nothing was lost meanwhile, and the agent still works end to end.
    let pods = pod_cgroups::churn(3, pod_cgroups::uids("e000"));
    agent.wait_until("pods after the stalls", Duration::from_secs(20), || {
        removed(&agent, pods.last().unwrap())
    });
}
