//! Helpers of the kernel suite: the real programs, a kubepods-named test cgroup, spawning into
//! it, and draining decoded events until a predicate holds.
#![allow(dead_code)]

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use podlife::kernel::convert::to_kernel_event;
use podlife::kernel::loader::{Capture, LoadOptions};
use podlife_core::KernelEvent;

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("kernel tests load eBPF programs and need root: run `cargo xtask kernel` as root");
    }
}

pub fn capture() -> Capture {
    capture_with(LoadOptions::default())
}

pub fn capture_with(opts: LoadOptions) -> Capture {
    require_root();
    Capture::load(&opts, 0).unwrap_or_else(|e| panic!("loading the eBPF programs: {e:?}"))
}

/// A cgroup v2 directory (and optionally its v1 memory twin) removed on drop.
pub struct TestCgroup {
    pub v2: PathBuf,
    pub memory: Option<PathBuf>,
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl TestCgroup {
    /// "kubepods" in the name makes the kernel filter follow it.
    pub fn new(tracked: bool) -> Self {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(
            "podlife-test-{}-{}-{n}",
            if tracked { "kubepods" } else { "host" },
            std::process::id()
        );
        let v2 = PathBuf::from("/sys/fs/cgroup/unified").join(&name);
        std::fs::create_dir_all(&v2).unwrap_or_else(|e| panic!("mkdir {}: {e}", v2.display()));
        Self { v2, memory: None }
    }

    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        let name = self.v2.file_name().unwrap().to_owned();
        let mem = PathBuf::from("/sys/fs/cgroup/memory").join(name);
        std::fs::create_dir_all(&mem).expect("v1 memory cgroup");
        std::fs::write(mem.join("memory.limit_in_bytes"), bytes.to_string()).expect("memory limit");
        self.memory = Some(mem);
        self
    }

    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&self.v2).expect("cgroup dir").ino()
    }

    /// Spawn `cmd` already inside this cgroup (it joins before exec).
    pub fn spawn(&self, cmd: &mut Command) -> Child {
        let v2 = self.v2.join("cgroup.procs");
        let mem = self.memory.as_ref().map(|m| m.join("cgroup.procs"));
        unsafe {
            cmd.pre_exec(move || {
                let me = std::process::id().to_string();
                std::fs::write(&v2, &me)?;
                if let Some(m) = &mem {
                    std::fs::write(m, &me)?;
                }
                Ok(())
            })
        }
        .spawn()
        .expect("spawn into test cgroup")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.v2);
        if let Some(m) = &self.memory {
            let _ = std::fs::remove_dir(m);
        }
    }
}

/// Drain until `done(all events so far)` or 5 s; returns everything seen.
pub fn drain_until(
    capture: &mut Capture,
    done: impl Fn(&[KernelEvent]) -> bool,
) -> Vec<KernelEvent> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        capture.drain(|r| seen.push(to_kernel_event(&r.expect("every record decodes"))));
        if done(&seen) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Drain for a fixed time (for asserting that nothing comes).
pub fn drain_for(capture: &mut Capture, d: Duration) -> Vec<KernelEvent> {
    let mut seen = Vec::new();
    let end = Instant::now() + d;
    while Instant::now() < end {
        capture.drain(|r| seen.push(to_kernel_event(&r.expect("every record decodes"))));
        std::thread::sleep(Duration::from_millis(5));
    }
    seen
}
