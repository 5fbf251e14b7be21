//! The walking skeleton's kernel test: the real eBPF programs see a process we spawn in a
//! kubepods-named cgroup exec with its argv and exit with its code. Needs root.

mod support;

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use podlife::capture::convert::to_kernel_event;
use podlife::capture::loader::{Capture, LoadOptions};
use podlife_core::{KernelEvent, KernelEventKind};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("kernel tests load eBPF programs and need root: run `cargo xtask kernel` as root");
    }
}

struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn exec_and_exit_code_of_a_process_in_a_pod_cgroup() {
    require_root();
    let mut capture = Capture::load(&LoadOptions::default(), 0)
        .unwrap_or_else(|e| panic!("loading the eBPF programs: {e:?}"));
    // The unified hierarchy: /sys/fs/cgroup/unified on hybrid nodes, /sys/fs/cgroup on v2 ones.
    let dir = support::cgroup2_root().join(format!("podlife-test-kubepods-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let cg = TestCgroup(dir.clone());
    let procs = dir.join("cgroup.procs");
    let mut child = unsafe {
        std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .pre_exec(move || std::fs::write(&procs, std::process::id().to_string()))
            .spawn()
            .expect("spawn sh")
    };
    let pid = child.id();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(3));

    let mut seen: Vec<KernelEvent> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !seen
            .iter()
            .any(|e| matches!(e.kind, KernelEventKind::Exit { .. }))
    {
        capture.drain(|r| {
            let ev = to_kernel_event(&r.expect("decodable record"));
            if ev.tgid == pid {
                seen.push(ev);
            }
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    let cgroup_id = std::fs::metadata(&cg.0).expect("cgroup dir").ino();
    let exec = seen
        .iter()
        .find_map(|e| match &e.kind {
            KernelEventKind::Exec { argv, filename, .. } => {
                Some((e, argv.clone(), filename.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exec event for pid {pid}; saw {seen:?}"));
    assert_eq!(exec.1, vec!["sh", "-c", "exit 3"]);
    assert!(exec.2.ends_with("sh"), "filename {}", exec.2);
    assert_eq!(
        exec.0.cgroup_id, cgroup_id,
        "cgroup id is the directory's inode"
    );
    let exit = seen
        .iter()
        .find_map(|e| match &e.kind {
            KernelEventKind::Exit { status } => *status,
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exit with a status for pid {pid}; saw {seen:?}"));
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.signal, None);
}
