//! The end-to-end harness: containerd + runc from Debian, driven through the CRI as the
//! kubelet drives them, and the real podlife agent, asserted only through its HTTP API.
//!
//! Everything a test starts is cleaned up on drop, also when the test panics. A test that
//! cannot run (not root, containerd or the images missing, no agent binary) fails with the
//! reason: CI must never skip these suites silently.

pub mod agent;
pub mod apiserver;
pub mod containerd;
pub mod cri;
pub mod kubelet;
pub mod layout;
pub mod memcg;
pub mod pod_cgroups;
pub mod pod_net;
pub mod store_files;

pub use agent::Agent;
pub use containerd::Containerd;
pub use kubelet::{Container, CtrOpts, Env, Kubelet, Pod, PodOpts};

/// Tests need root (containerd, cgroups, eBPF): say so instead of failing obscurely.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("the end-to-end suite runs containerd and loads eBPF programs: run it as root (cargo xtask e2e, or sudo tests/run.sh)");
    }
}

/// How long a scenario waits for the agent to report what the kernel did.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The namespace inode link of a live process (`net:[4026531840]`), for cross-checks.
pub fn ns_of(pid: u64, ns: &str) -> String {
    read_ns(&format!("/proc/{pid}/ns/{ns}"))
}

/// The node's own namespace of a kind (this test process runs in the node's namespaces).
pub fn node_ns(ns: &str) -> String {
    read_ns(&format!("/proc/self/ns/{ns}"))
}

fn read_ns(path: &str) -> String {
    std::fs::read_link(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A directory under the temp dir for one test, removed on drop (also when the test panics).
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("podlife-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
