//! A cgroup v1 memory cgroup with a limit, for running the agent under a pod's memory limit
//! (this node is hybrid: the v1 memory controller carries the limits). Removed on drop.

use std::path::PathBuf;

pub struct MemCg {
    pub dir: PathBuf,
}

const ROOT: &str = "/sys/fs/cgroup/memory";

impl MemCg {
    /// A new memory cgroup limited to `limit` bytes, swap off in it (no swap hides a leak).
    pub fn new(name: &str, limit: u64) -> Self {
        let root = PathBuf::from(ROOT);
        assert!(
            root.join("memory.limit_in_bytes").exists(),
            "{ROOT} is not a cgroup v1 memory hierarchy: this test needs the v1 memory controller"
        );
        let dir = root.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let cg = Self { dir };
        cg.write("memory.limit_in_bytes", &limit.to_string());
        cg.write("memory.swappiness", "0");
        cg
    }

    fn write(&self, file: &str, value: &str) {
        let p = self.dir.join(file);
        std::fs::write(&p, value).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    pub fn read(&self, file: &str) -> String {
        let p = self.dir.join(file);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    pub fn read_u64(&self, file: &str) -> u64 {
        self.read(file).trim().parse().unwrap()
    }

    /// The `oom_kill` count of memory.oom_control (kills in this cgroup).
    pub fn oom_kills(&self) -> u64 {
        self.read("memory.oom_control")
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .map(|v| v.trim().parse().unwrap())
            .expect("memory.oom_control has no oom_kill line (kernel < 4.13)")
    }

    /// A wrapper that moves the shell into this cgroup, then execs the command it is given,
    /// so the agent is charged from its first allocation.
    pub fn wrapper(&self) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                self.dir.display()
            ),
        ]
    }
}

impl Drop for MemCg {
    fn drop(&mut self) {
        // The agent was killed by its own drop first; its cgroup empties once it is reaped.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
