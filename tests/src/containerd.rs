//! containerd as a plain background daemon with its own config, root, state, runc root, CNI
//! network and socket, all under one per-run directory; the test images imported on start.
//! Dropping it stops every task, the daemon, and removes what it leaves behind, including
//! containerd 1.6's fixed-path leftovers — only this run's, so parallel runs do not collide.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The images tests/setup.sh builds; imported as `localhost/e2e/<name>:latest`.
pub const IMAGES: [&str; 4] = ["pause", "busybox", "memhog", "crasher"];

pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
    /// CNI network name of this run (results files and host-local leases are keyed by it).
    pub network: String,
    /// The bridge of this run's CNI network.
    pub bridge: String,
    child: Child,
}

pub fn images_dir() -> PathBuf {
    std::env::var_os("E2E_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".work/images"))
}

/// Everything a run needs that tests/setup.sh provides; panics with what to do.
pub fn preflight() {
    crate::require_root();
    let mut missing = Vec::new();
    for bin in ["containerd", "ctr", "runc", "containerd-shim-runc-v2"] {
        if which(bin).is_none() {
            missing.push(format!("{bin} (not in PATH)"));
        }
    }
    for plugin in ["bridge", "host-local", "loopback"] {
        let p = Path::new(CNI_BIN).join(plugin);
        if !p.exists() {
            missing.push(p.display().to_string());
        }
    }
    for name in IMAGES {
        let tar = images_dir().join(format!("{name}.tar"));
        if !tar.exists() {
            missing.push(tar.display().to_string());
        }
    }
    if !Path::new("/sys/kernel/tracing/events").exists() {
        missing.push("tracefs at /sys/kernel/tracing".into());
    }
    assert!(
        missing.is_empty(),
        "the end-to-end suite cannot run, missing: {}.\nRun `sudo bash tests/setup.sh` (or `cargo xtask e2e`) first.",
        missing.join(", ")
    );
}

const CNI_BIN: &str = "/usr/lib/cni";

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Containerd {
    pub fn start() -> Self {
        preflight();
        let n = unique();
        let tag = format!("{:x}{n:x}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/podlife-e2e-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cni")).expect("e2e dir");
        let runc_binary = match crate::layout::Layout::from_env().runc_binary(&dir) {
            Some(bin) => format!("\n        BinaryName = \"{}\"", bin.display()),
            None => String::new(),
        };
        let socket = dir.join("containerd.sock");
        let state = dir.join("state");
        let network = format!("e2e-{tag}");
        // Linux caps interface names at 15 bytes.
        let bridge: String = format!("pl{tag}").chars().take(15).collect();
        // One /24 per run, from the pid and the run number: concurrent runs on one node get
        // their own bridge and subnet. No gateway, no masquerade: pod traffic stays on the node.
        let subnet = (std::process::id() as u64 * 7 + n as u64) % 250 + 1;
        std::fs::write(
            dir.join("cni/10-e2e.conflist"),
            format!(
                r#"{{"cniVersion":"0.4.0","name":"{network}","plugins":[{{"type":"bridge","bridge":"{bridge}","isGateway":false,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.231.{subnet}.0/24"}}}},{{"type":"loopback"}}]}}"#
            ),
        )
        .expect("cni config");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/e2e/pause:latest"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc_root}"{runc_binary}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni}"
"#,
            root = dir.join("root").display(),
            state = state.display(),
            socket = socket.display(),
            runc_root = dir.join("runc").display(),
            cni = dir.join("cni").display(),
        );
        std::fs::write(dir.join("config.toml"), config).expect("containerd config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting containerd (run tests/setup.sh): {e}"));
        let mut c = Self {
            dir,
            socket,
            state,
            network,
            bridge,
            child,
        };
        let t = Instant::now();
        while !c.ctr(&["version"]).status.success() {
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("containerd exited ({status}); log:\n{}", c.log_tail());
            }
            if t.elapsed() > Duration::from_secs(20) {
                panic!("containerd did not answer in 20 s; log:\n{}", c.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for name in IMAGES {
            let tar = images_dir().join(format!("{name}.tar"));
            let out = c.ctr(&[
                "images",
                "import",
                "--base-name",
                &format!("localhost/e2e/{name}"),
                tar.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "importing {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        c
    }

    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("running ctr")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), 30)
    }

    /// Processes whose command line names this run's directory (shims carry `-address
    /// <socket>`, runc `--root <dir>/runc`); empty once everything is cleaned up.
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_mentioning(&self.dir.to_string_lossy())
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// (pid, command line) of live processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(needle).then_some((pid, cmd))
        })
        .collect()
}

/// Unix socket paths some process has bound (/proc/net/unix).
fn bound_unix_sockets() -> std::collections::HashSet<String> {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7).map(str::to_string))
        .collect()
}

/// containerd 1.6's fixed-path leftovers that belong to no live process: shim sockets in
/// /run/containerd/s/ nobody listens on, and runc exec process files older than a minute.
fn remove_stale_fixed_paths() {
    let bound = bound_unix_sockets();
    for e in std::fs::read_dir("/run/containerd/s")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if !bound.contains(p.to_string_lossy().as_ref()) {
            let _ = std::fs::remove_file(&p);
        }
    }
    for e in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        if old && e.file_name().to_string_lossy().starts_with("runc-process") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first (so shims exit), then the daemon, then its files and leftovers.
        let tasks = self.ctr(&["task", "ls", "-q"]);
        let tasks = String::from_utf8_lossy(&tasks.stdout).to_string();
        for t in tasks.lines() {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", t]);
        }
        if !tasks.trim().is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
        for t in tasks.lines() {
            let _ = self.ctr(&["task", "delete", "-f", t]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims of this run that outlived their tasks.
        for (pid, cmd) in self.processes() {
            if cmd.contains("containerd-shim") {
                // SAFETY: kill(2) on a pid we just read; at worst it is gone (ESRCH).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.dir.to_string_lossy().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for m in points {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let results = Path::new("/var/lib/cni/results");
        for e in std::fs::read_dir(results).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{}-", self.network))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&self.network));
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        remove_stale_fixed_paths();
    }
}
