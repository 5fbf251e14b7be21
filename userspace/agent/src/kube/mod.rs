//! The Kubernetes API: the pod watch (names, owners, probes, deletions) and the Events writer.

pub mod events;
pub mod pod_facts;
pub mod watch;
