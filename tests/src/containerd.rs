//! containerd as a plain background daemon with its own config, root, state and socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
    child: Child,
}

fn images_dir() -> PathBuf {
    std::env::var_os("E2E_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".work/images"))
}

impl Containerd {
    pub fn start() -> Self {
        let dir = PathBuf::from(format!(
            "/tmp/podlife-e2e-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cni")).expect("e2e dir");
        let socket = dir.join("containerd.sock");
        let state = dir.join("state");
        // No gateway, no masquerade: pod traffic stays inside the node.
        std::fs::write(
            dir.join("cni/10-e2e.conflist"),
            r#"{"cniVersion":"0.4.0","name":"e2e","plugins":[{"type":"bridge","bridge":"e2e0","isGateway":false,"ipMasq":false,"ipam":{"type":"host-local","subnet":"10.231.0.0/16"}},{"type":"loopback"}]}"#,
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
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = dir.join("root").display(),
            state = state.display(),
            socket = socket.display(),
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
        let c = Self {
            dir,
            socket,
            state,
            child,
        };
        let t = Instant::now();
        while !c.ctr(&["version"]).status.success() {
            if t.elapsed() > Duration::from_secs(20) {
                panic!("containerd did not answer in 20 s; log:\n{}", c.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for name in ["pause", "busybox"] {
            let tar = images_dir().join(format!("{name}.tar"));
            assert!(
                tar.exists(),
                "{} missing: run tests/setup.sh",
                tar.display()
            );
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

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        log.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first (so shims exit), then the daemon, then its files and fixed-path leftovers.
        let tasks = self.ctr(&["task", "ls", "-q"]);
        for t in String::from_utf8_lossy(&tasks.stdout).lines() {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", t]);
        }
        std::thread::sleep(Duration::from_millis(200));
        for t in String::from_utf8_lossy(&tasks.stdout).lines() {
            let _ = self.ctr(&["task", "delete", "-f", t]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        let _ = Command::new("sh").args(["-c", "rm -rf /tmp/runc-process* /var/lib/cni/results/e2e-* /var/lib/cni/networks/e2e 2>/dev/null; ip link del e2e0 2>/dev/null"]).status();
    }
}
