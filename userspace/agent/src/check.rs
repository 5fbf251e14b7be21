//! `podlife check`: the preflight a user (and CI) runs before trusting the agent on a node.
//! It does what the agent does at start (BTF, tracefs, cgroup mode, load and attach every
//! program) plus the optional sources (runtime state, CRI socket, state dir), prints one line
//! per item with what is missing and what to do, and fails when the agent could not work.

use std::fmt;
use std::path::Path;

use crate::capture::loader::{Capture, LoadOptions};
use crate::capture::tracefs;
use crate::config::Args;
use crate::node::cgroupfs::CgroupMounts;

/// How bad a missing item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// The agent runs; the named feature is degraded.
    Warn,
    /// The agent cannot work on this node.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub level: Level,
    pub name: String,
    pub detail: String,
}

impl Item {
    fn new(level: Level, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            level,
            name: name.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{level:<5} {:<24} {}", self.name, self.detail)
    }
}

/// Every check, in the order the agent meets them at start.
pub async fn run(args: &Args) -> Vec<Item> {
    let mut items = vec![privileges(), btf(), tracefs_item()];
    let mounts = CgroupMounts::discover();
    items.push(cgroups(&mounts));
    items.extend(programs(args, &mounts));
    items.extend(runtime_state(&args.runtime_state));
    items.push(cri_socket(args.cri_socket.as_deref()).await);
    items.push(state_dir(&args.state_dir));
    items
}

/// Prints the report; Err when any item failed (the agent could not work).
pub async fn main(args: &Args) -> anyhow::Result<()> {
    let items = run(args).await;
    for item in &items {
        println!("{item}");
    }
    let failed = items.iter().filter(|i| i.level == Level::Fail).count();
    let warned = items.iter().filter(|i| i.level == Level::Warn).count();
    println!(
        "check: {} ok, {warned} degraded, {failed} failing",
        items.len() - failed - warned
    );
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed: podlife cannot work on this node as it is");
    }
    Ok(())
}

/// Effective capabilities from /proc/self/status: bpf() needs CAP_BPF + CAP_PERFMON (or
/// CAP_SYS_ADMIN on kernels < 5.8).
fn privileges() -> Item {
    const SYS_ADMIN: u32 = 21;
    const PERFMON: u32 = 38;
    const BPF: u32 = 39;
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |bit: u32| caps & (1 << bit) != 0;
    if has(BPF) && has(PERFMON) {
        Item::new(
            Level::Ok,
            "privileges",
            format!("CAP_BPF and CAP_PERFMON (CapEff {caps:#x})"),
        )
    } else if has(SYS_ADMIN) {
        Item::new(Level::Ok, "privileges", "CAP_SYS_ADMIN")
    } else {
        Item::new(
            Level::Fail,
            "privileges",
            format!(
                "CapEff {caps:#x} lacks CAP_BPF+CAP_PERFMON: run as root or give the DaemonSet \
                 those capabilities (deploy/)"
            ),
        )
    }
}

fn btf() -> Item {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    match std::fs::metadata(path) {
        Ok(m) => Item::new(
            Level::Ok,
            "btf",
            format!("{} ({} KiB)", path.display(), m.len() >> 10),
        ),
        Err(e) => Item::new(
            Level::Fail,
            "btf",
            format!(
                "{}: {e}: podlife needs a kernel >= 5.8 with CONFIG_DEBUG_INFO_BTF=y; in a \
                 DaemonSet mount /sys/kernel/btf read-only",
                path.display()
            ),
        ),
    }
}

fn tracefs_item() -> Item {
    match tracefs::find_tracefs() {
        Ok(p) => Item::new(Level::Ok, "tracefs", p.display().to_string()),
        Err(e) => Item::new(Level::Fail, "tracefs", e.to_string()),
    }
}

fn cgroups(m: &CgroupMounts) -> Item {
    match (&m.v2, &m.v1_memory) {
        (Some(v2), Some(mem)) => Item::new(
            Level::Ok,
            "cgroups",
            format!(
                "hybrid: cgroup v2 at {}, memory v1 at {}",
                v2.display(),
                mem.display()
            ),
        ),
        (Some(v2), None) => Item::new(
            Level::Ok,
            "cgroups",
            format!("cgroup v2 at {}", v2.display()),
        ),
        (None, Some(mem)) => Item::new(
            Level::Warn,
            "cgroups",
            format!(
                "no cgroup v2 mount (memory v1 at {}): attribution falls back on process trees; \
                 mount cgroup2 or give the DaemonSet /sys/fs/cgroup",
                mem.display()
            ),
        ),
        (None, None) => Item::new(
            Level::Fail,
            "cgroups",
            "no cgroup hierarchy in /proc/self/mountinfo: pods cannot be attributed; mount \
             /sys/fs/cgroup",
        ),
    }
}

/// Loads and attaches the real programs (then detaches them), one line per capture feature.
fn programs(args: &Args, mounts: &CgroupMounts) -> Vec<Item> {
    let opts = LoadOptions {
        ringbuf_bytes: args.ringbuf_bytes,
        kubelet_comm: args.kubelet_comm.clone(),
        ..Default::default()
    };
    match Capture::load(&opts, mounts.event_root()) {
        Ok(capture) => {
            let mut items = vec![Item::new(
                Level::Ok,
                "ebpf",
                "programs loaded and attached (detached again by this check)",
            )];
            items.extend(capture.features.iter().map(|f| match &f.reason {
                None if f.enabled => Item::new(Level::Ok, format!("feature {}", f.name), "live"),
                reason => Item::new(
                    Level::Warn,
                    format!("feature {}", f.name),
                    reason.clone().unwrap_or_else(|| "disabled".into()),
                ),
            }));
            items
        }
        Err(e) => vec![Item::new(Level::Fail, "ebpf", format!("{e}"))],
    }
}

fn runtime_state(dirs: &[std::path::PathBuf]) -> Vec<Item> {
    let found: Vec<String> = dirs
        .iter()
        .filter(|d| d.is_dir())
        .map(|d| d.display().to_string())
        .collect();
    let item = if found.is_empty() {
        Item::new(
            Level::Warn,
            "runtime state",
            format!(
                "none of {} exists: container names come only from the CRI socket or \
                 --kube-api; set --runtime-state or mount the runtime's state dir",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        Item::new(Level::Ok, "runtime state", found.join(", "))
    };
    vec![item]
}

async fn cri_socket(flag: Option<&Path>) -> Item {
    let Some(socket) = crate::node::cri::find_socket(flag) else {
        return Item::new(
            Level::Warn,
            "cri socket",
            "no runtime socket found (/run/containerd/containerd.sock, /var/run/crio/crio.sock): \
             grace periods and restart counts come only from bundles or --kube-api; set \
             --cri-socket",
        );
    };
    let connect = tokio::net::UnixStream::connect(&socket);
    match tokio::time::timeout(std::time::Duration::from_secs(2), connect).await {
        Ok(Ok(_)) => Item::new(Level::Ok, "cri socket", socket.display().to_string()),
        Ok(Err(e)) => Item::new(
            Level::Warn,
            "cri socket",
            format!("{}: {e}: is the runtime running?", socket.display()),
        ),
        Err(_) => Item::new(
            Level::Warn,
            "cri socket",
            format!("{}: no answer in 2 s", socket.display()),
        ),
    }
}

/// The store's directory must be writable for history to survive restarts (the agent runs
/// without it, with a warning).
fn state_dir(dir: &Path) -> Item {
    let probe = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        match dir.ancestors().find(|a| a.is_dir()) {
            Some(a) => a.to_path_buf(),
            None => dir.to_path_buf(),
        }
    };
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: access(2) with a valid NUL-terminated path.
    let writable = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
    if writable {
        Item::new(Level::Ok, "state dir", dir.display().to_string())
    } else {
        Item::new(
            Level::Warn,
            "state dir",
            format!(
                "{} is not writable: timelines will not survive a restart; give the DaemonSet \
                 a writable hostPath (or --state-dir)",
                probe.display()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_without_cgroups_fails_and_v1_only_is_degraded() {
        assert_eq!(cgroups(&CgroupMounts::default()).level, Level::Fail);
        let v1 = CgroupMounts {
            v2: None,
            v1_memory: Some("/sys/fs/cgroup/memory".into()),
        };
        assert_eq!(cgroups(&v1).level, Level::Warn);
    }

    #[test]
    fn missing_runtime_state_is_a_warning_naming_the_flag() {
        let items = runtime_state(&["/nonexistent/podlife-check".into()]);
        assert_eq!(items[0].level, Level::Warn);
        assert!(items[0].detail.contains("--runtime-state"), "{}", items[0]);
    }

    #[test]
    fn report_lines_carry_level_name_and_detail() {
        let line = Item::new(Level::Fail, "btf", "missing").to_string();
        assert!(line.starts_with("FAIL  btf "), "{line}");
    }
}
