//! The Kubernetes API: the pod watch (names, owners, probes, deletions), the kubelet's probe messages and the Events writer.

pub mod events;
pub mod pod_facts;
pub mod unhealthy;
pub mod watch;
