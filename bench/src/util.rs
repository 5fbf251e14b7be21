//! Helpers: a tracked (kubepods-named) cgroup, the agent process, HTTP GET, statistics.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

pub const V2: &str = "/sys/fs/cgroup/unified";

/// A cgroup v2 directory; "kubepods" in its path makes the agent's kernel filter follow it.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new(rel: &str) -> Result<Self> {
        let path = Path::new(V2).join(rel);
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Self { path })
    }

    /// `sh -c` command line that moves itself into this cgroup first.
    pub fn wrap(&self, cmd: &str) -> String {
        format!(
            "echo $$ > {}/cgroup.procs && exec {cmd}",
            self.path.display()
        )
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Remove the leaf and any empty parents we created under kubepods*.
        let mut p = self.path.clone();
        while p.starts_with(V2) && p != Path::new(V2) {
            if std::fs::remove_dir(&p).is_err() {
                break;
            }
            p.pop();
        }
    }
}

pub struct Agent {
    pub child: Child,
    pub port: u16,
    pub state: PathBuf,
}

pub fn agent_bin() -> PathBuf {
    std::env::var_os("PODLIFE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // Built next to this binary (`cargo xtask bench` builds both), whatever the target dir.
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("podlife")))
                .unwrap_or_else(|| PathBuf::from("podlife"))
        })
}

impl Agent {
    pub fn start(port: u16) -> Result<Self> {
        let state = std::env::temp_dir().join(format!("podlife-bench-{port}"));
        let _ = std::fs::remove_dir_all(&state);
        let child = Command::new(agent_bin())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
            .arg(&state)
            .env("PODLIFE_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", agent_bin().display()))?;
        let a = Self { child, port, state };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if get(port, "/readyz").is_ok_and(|(s, _)| s == 200) {
                return Ok(a);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("agent not ready after 20 s")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime of the agent in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = get(self.port, "/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Minimal HTTP/1.1 GET on loopback: (status, body).
pub fn get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}
