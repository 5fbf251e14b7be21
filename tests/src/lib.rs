//! The end-to-end harness: containerd + runc from Debian, driven through the CRI as the
//! kubelet drives them, and the real podlife agent, asserted only through its HTTP API.
//!
//! Everything a test starts is cleaned up on drop, also when the test panics.

pub mod agent;
pub mod containerd;
pub mod cri;
pub mod kubelet;

pub use agent::Agent;
pub use containerd::Containerd;
pub use kubelet::{Container, Env, Pod};

/// Tests need root (containerd, cgroups, eBPF): say so instead of failing obscurely.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("the end-to-end suite runs containerd and loads eBPF programs: run it as root (cargo xtask e2e)");
    }
}
