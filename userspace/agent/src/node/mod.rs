//! What the node itself tells: /proc and cgroupfs scans, runtime bundles, the CRI socket,
//! memory counters, pod addresses, clocks. Blocking reads, called off the reader thread.

pub mod bootstrap;
pub mod cgroupfs;
pub mod clock;
pub mod cri;
pub mod metadata;
pub mod oom_memcg;
pub mod oom_scope;
pub mod pod_net;
pub mod proc_argv;
pub mod sched;
