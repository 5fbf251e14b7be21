//! Metadata the OCI bundle does not carry, from the runtime's CRI socket: the kubelet's
//! container annotations (termination grace period, restart count), and a pod's names from
//! `PodSandboxStatus`, which the runtime keeps from the kubelet's `RunPodSandbox` request (the
//! API server's pod, never a tenant's annotation) and which so win over the bundle's.
//! Optional: without a socket everything else works.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ContainerStatusRequest, PodSandboxMetadata, PodSandboxStatusRequest};
use podlife_core::names::{is_dns1123_label, is_dns1123_subdomain, is_pod_uid};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Kubelet annotations of one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CriMeta {
    pub grace_period_s: Option<f64>,
    pub restart_count: Option<u32>,
}

/// Pick out what podlife uses from a container's CRI annotations.
pub fn parse_annotations(a: &HashMap<String, String>) -> CriMeta {
    CriMeta {
        grace_period_s: a
            .get("io.kubernetes.pod.terminationGracePeriod")
            .and_then(|v| v.parse().ok()),
        restart_count: a
            .get("io.kubernetes.container.restartCount")
            .and_then(|v| v.parse().ok()),
    }
}

/// What the runtime is asked, off the reader's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriAsk {
    /// Kubelet annotations of a container.
    Container(String),
    /// Names of the pod whose sandbox this is; `uid` is the pod the cgroup path names.
    Sandbox { id: String, uid: String },
}

/// A pod's names as the CRI holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNames {
    pub uid: String,
    pub name: String,
    pub namespace: String,
}

/// The names of a sandbox's metadata, if each is what the API server could have issued.
pub fn sandbox_names(m: &PodSandboxMetadata) -> Option<SandboxNames> {
    let valid = m.uid.len() <= 64
        && is_pod_uid(&m.uid)
        && is_dns1123_subdomain(&m.name)
        && is_dns1123_label(&m.namespace);
    valid.then(|| SandboxNames {
        uid: m.uid.clone(),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
    })
}

/// The CRI socket to use: the flag, else the first of the usual ones that exists.
pub fn find_socket(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    ["/run/containerd/containerd.sock", "/var/run/crio/crio.sock"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub struct Cri {
    client: RuntimeServiceClient<Channel>,
}

impl Cri {
    /// Lazy connection: it is made on the first call, so a runtime started after the agent works.
    pub fn new(socket: PathBuf) -> Result<Self, tonic::transport::Error> {
        let channel =
            Endpoint::try_from("http://[::]:50051")?.connect_with_connector_lazy(
                tower::service_fn(move |_: Uri| {
                    let path = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }),
            );
        Ok(Self {
            client: RuntimeServiceClient::new(channel),
        })
    }

    pub async fn container(&mut self, id: &str) -> Result<CriMeta, tonic::Status> {
        let status = self
            .client
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap_or_default();
        Ok(parse_annotations(&status.annotations))
    }

    /// `Ok(None)`: the runtime answered with no or invalid names.
    pub async fn sandbox(&mut self, id: &str) -> Result<Option<SandboxNames>, tonic::Status> {
        let status = self
            .client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap_or_default();
        Ok(status.metadata.as_ref().and_then(sandbox_names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_annotations() {
        let a: HashMap<String, String> = [
            ("io.kubernetes.pod.terminationGracePeriod", "30"),
            ("io.kubernetes.container.restartCount", "2"),
            ("io.kubernetes.container.hash", "abc"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        assert_eq!(
            parse_annotations(&a),
            CriMeta {
                grace_period_s: Some(30.0),
                restart_count: Some(2)
            }
        );
        assert_eq!(parse_annotations(&HashMap::new()), CriMeta::default());
    }

    #[test]
    fn sandbox_names_are_validated() {
        let m = |name: &str, namespace: &str, uid: &str| PodSandboxMetadata {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
            attempt: 0,
        };
        let uid = "8f3c2a1e-1111-4a4a-9b9b-000000000001";
        assert_eq!(
            sandbox_names(&m("web-0", "tenant-a", uid)),
            Some(SandboxNames {
                uid: uid.into(),
                name: "web-0".into(),
                namespace: "tenant-a".into()
            })
        );
        assert_eq!(sandbox_names(&m("web-0", "Tenant", uid)), None);
        assert_eq!(sandbox_names(&m("web\n0", "tenant-a", uid)), None);
        assert_eq!(sandbox_names(&m("web-0", "tenant-a", "u1")), None);
    }
}
