//! Metadata the OCI bundle does not carry, from the runtime's CRI socket: the kubelet's
//! container annotations (termination grace period, restart count). Optional: without a socket
//! everything else works.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use podlife_cri::v1::runtime_service_client::RuntimeServiceClient;
use podlife_cri::v1::ContainerStatusRequest;
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
}
