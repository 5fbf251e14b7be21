//! CRI v1 (`runtime.v1`) messages and the `RuntimeService` client, for the calls podlife makes
//! (ContainerStatus, PodSandboxStatus) and the calls its e2e suite makes as a kubelet would.
//! Generated at build time from proto/runtime_v1.proto; see that file for what is kept.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}
