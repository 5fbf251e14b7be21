//! Helpers of the kernel suite: prerequisites that fail loudly, the real programs, a
//! kubepods-named test cgroup (v2, plus its v1 memory twin when asked), spawning into it, and
//! draining decoded events until a predicate holds.
//!
//! Every test binary of the suite loads its own copy of the programs, and every loaded copy sees
//! every process on the node: assertions always filter by the pids the test made.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use podlife::capture::convert::to_kernel_event;
use podlife::capture::loader::{Capture, LoadOptions, FIELD_FEATURES};
use podlife_core::{ExitStatus, KernelEvent, KernelEventKind as K};

/// How long a test waits for the events it provoked.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Panic with the reason when this machine cannot run the kernel suite. Never a silent skip.
pub fn require_kernel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "the kernel suite loads eBPF programs and needs root: run `sudo cargo xtask kernel` \
             (or `cargo test -p podlife --tests -- --test-threads=1` as root)"
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        panic!(
            "/sys/kernel/btf/vmlinux is missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF=y), \
             which podlife needs for task_struct.exit_code; use a kernel >= 5.8 with BTF"
        );
    }
    if ![
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|p| Path::new(p).is_dir())
    {
        panic!(
            "tracefs is not mounted (no /sys/kernel/tracing/events): \
             `mount -t tracefs tracefs /sys/kernel/tracing` or run `cargo xtask kernel`"
        );
    }
    let _ = cgroup2_root();
}

/// Whether this kernel's tracepoint `cat:name` has `field`, from its tracefs `format` file read
/// directly (not through the agent's parser): what a test may expect where kernels differ.
pub fn tracepoint_has_field(cat: &str, name: &str, field: &str) -> bool {
    let path = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(|t| format!("{t}/events/{cat}/{name}/format"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("no tracefs format file for {cat}:{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines().any(|l| {
        l.trim().strip_prefix("field:").is_some_and(|decl| {
            decl.split(';')
                .next()
                .is_some_and(|d| d.rsplit([' ', '*']).next().is_some_and(|n| n == field))
        })
    })
}

/// Mount point of the cgroup v2 (unified) hierarchy: /sys/fs/cgroup/unified on hybrid nodes,
/// /sys/fs/cgroup on pure v2 ones.
pub fn cgroup2_root() -> PathBuf {
    mount_of(|fstype, _| fstype == "cgroup2").unwrap_or_else(|| {
        panic!("no cgroup2 mount in /proc/self/mountinfo: the suite needs cgroup v2 or hybrid")
    })
}

/// Mount point of the v1 memory controller, if this node has one (hybrid or v1).
pub fn memory_v1_root() -> Option<PathBuf> {
    mount_of(|fstype, opts| fstype == "cgroup" && opts.split(',').any(|o| o == "memory"))
}

fn mount_of(want: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        let mut r = right.split_whitespace();
        let fstype = r.next()?;
        let _source = r.next()?;
        let super_opts = r.next().unwrap_or("");
        want(fstype, super_opts).then(|| PathBuf::from(mount_point))
    })
}

pub fn capture() -> Capture {
    capture_with(LoadOptions::default())
}

pub fn capture_with(opts: LoadOptions) -> Capture {
    require_kernel();
    let cap = Capture::load(&opts, 0).unwrap_or_else(|e| panic!("loading the eBPF programs: {e}"));
    // Field-level features follow the kernel's own tracepoint formats (older kernels lack
    // some fields); every other feature must be live.
    for &(name, tp, field, _) in FIELD_FEATURES {
        let (cat, tp) = tp.split_once('/').unwrap();
        let f = cap.features.iter().find(|f| f.name == name);
        assert_eq!(
            f.map(|f| f.enabled),
            Some(tracepoint_has_field(cat, tp, field)),
            "feature {name} must be on exactly when {cat}:{tp} has {field}: {f:?}"
        );
    }
    let degraded: Vec<_> = cap
        .features
        .iter()
        .filter(|f| !f.enabled && !FIELD_FEATURES.iter().any(|ff| ff.0 == f.name))
        .collect();
    assert!(
        degraded.is_empty(),
        "the suite expects every feature on this kernel; degraded: {degraded:?}"
    );
    cap
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A scratch cgroup: a v2 directory (and optionally its v1 memory twin), emptied and removed on
/// drop.
pub struct TestCgroup {
    pub v2: PathBuf,
    pub memory: Option<PathBuf>,
}

impl TestCgroup {
    /// A cgroup whose v2 path contains "kubepods", so the kernel filter follows it.
    pub fn pod() -> Self {
        Self::named("kubepods")
    }

    /// A cgroup outside pods: nothing in it is reported.
    pub fn host() -> Self {
        Self::named("host")
    }

    fn named(kind: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("podlife-test-{kind}-{}-{n}", std::process::id());
        let v2 = cgroup2_root().join(name);
        std::fs::create_dir(&v2).unwrap_or_else(|e| panic!("mkdir {}: {e}", v2.display()));
        Self { v2, memory: None }
    }

    /// The directory's name, also the last component of the path the kernel reports.
    pub fn name(&self) -> String {
        self.v2.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// Add a memory limit: in the v1 memory controller where there is one (hybrid nodes),
    /// else `memory.max` of the v2 directory.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        match memory_v1_root() {
            Some(root) => {
                let mem = root.join(self.name());
                std::fs::create_dir(&mem)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", mem.display()));
                self.memory = Some(mem.clone());
                write(&mem.join("memory.limit_in_bytes"), &bytes.to_string());
                // No swap: the limit must end in an OOM kill, not in swapping.
                let _ = std::fs::write(mem.join("memory.swappiness"), "0");
            }
            None => {
                write(&self.v2.join("memory.max"), &bytes.to_string());
                let _ = std::fs::write(self.v2.join("memory.swap.max"), "0");
            }
        }
        self
    }

    /// cgroup v2 id: the inode of the directory (what `bpf_get_current_cgroup_id` returns).
    pub fn id(&self) -> u64 {
        std::fs::metadata(&self.v2).expect("cgroup dir").ino()
    }

    /// Spawn `cmd` already inside this cgroup: the child joins before exec.
    pub fn spawn(&self, cmd: &mut Command) -> Child {
        let v2 = self.v2.join("cgroup.procs");
        let mem = self.memory.as_ref().map(|m| m.join("cgroup.procs"));
        // SAFETY: the closure only writes files (open/write/close), async-signal-safe enough
        // for a freshly forked child of a test process.
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
        .unwrap_or_else(|e| panic!("spawning {cmd:?} into {}: {e}", self.v2.display()))
    }

    fn procs(dir: &Path) -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let dirs: Vec<PathBuf> = std::iter::once(self.v2.clone())
            .chain(self.memory.clone())
            .collect();
        for dir in &dirs {
            for _ in 0..100 {
                let left = Self::procs(dir);
                if left.is_empty() {
                    break;
                }
                for pid in left {
                    // SAFETY: plain kill(2) of a process the test put into its own cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()))
}

/// Every decoded event read so far, with lookups by pid.
#[derive(Default)]
pub struct Seen(pub Vec<KernelEvent>);

impl Seen {
    /// Events whose current task belongs to `tgid`.
    pub fn of(&self, tgid: u32) -> Vec<&KernelEvent> {
        self.0.iter().filter(|e| e.tgid == tgid).collect()
    }

    pub fn exit_of(&self, tgid: u32) -> Option<ExitStatus> {
        self.0.iter().find_map(|e| match &e.kind {
            K::Exit { status } if e.tgid == tgid => *status,
            _ => None,
        })
    }

    pub fn has_exit(&self, tgid: u32) -> bool {
        self.0
            .iter()
            .any(|e| e.tgid == tgid && matches!(e.kind, K::Exit { .. }))
    }

    /// Every event of these pids, for failure messages.
    pub fn dump(&self, pids: &[u32]) -> String {
        self.0
            .iter()
            .filter(|e| pids.contains(&e.tgid))
            .map(|e| format!("\n  {e:?}"))
            .collect()
    }
}

fn read_into(capture: &mut Capture, seen: &mut Seen) {
    capture.drain(|r| {
        let record = r.unwrap_or_else(|e| panic!("a record from the kernel did not decode: {e}"));
        seen.0.push(to_kernel_event(&record));
    });
}

/// Drain until `done` holds; panics after [`DEADLINE`] naming `what` and the events of `pids`.
pub fn drain_until(
    capture: &mut Capture,
    what: &str,
    pids: &[u32],
    done: impl Fn(&Seen) -> bool,
) -> Seen {
    let mut seen = Seen::default();
    let deadline = Instant::now() + DEADLINE;
    loop {
        read_into(capture, &mut seen);
        if done(&seen) {
            return seen;
        }
        if Instant::now() > deadline {
            panic!(
                "waited {DEADLINE:?} for {what}; {} events read, those of {pids:?}:{}",
                seen.0.len(),
                seen.dump(pids)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Drain for a fixed time (to assert that something does not come).
pub fn drain_for(capture: &mut Capture, d: Duration) -> Seen {
    let mut seen = Seen::default();
    let end = Instant::now() + d;
    while Instant::now() < end {
        read_into(capture, &mut seen);
        std::thread::sleep(Duration::from_millis(5));
    }
    read_into(capture, &mut seen);
    seen
}

/// Children of a process from /proc (the pid 1 of a new pid namespace, say); waits for one.
pub fn first_child(pid: u32) -> u32 {
    for _ in 0..300 {
        let kids =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = kids.split_whitespace().find_map(|p| p.parse().ok()) {
            return c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never got a child");
}

/// Wait until `pid` has exec'd something whose comm is `comm` (so its handlers are set up).
pub fn wait_comm(pid: u32, comm: &str) {
    for _ in 0..300 {
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never became {comm}");
}

/// SIGCHLD wait for a child, with its raw status.
pub fn wait(child: &mut Child) -> std::process::ExitStatus {
    child
        .wait()
        .unwrap_or_else(|e| panic!("wait {}: {e}", child.id()))
}

/// kill(2), panicking on failure.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: plain kill(2).
    if unsafe { libc::kill(pid as i32, sig) } != 0 {
        panic!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }
}

/// The next line a child with piped stdout prints (a "ready" handshake).
pub fn read_line(child: &mut Child) -> String {
    use std::io::Read as _;
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).expect("read from the child") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}
