//! Metadata the OCI bundle does not carry, from the runtime's CRI socket: the kubelet's
//! container annotations (termination grace period, restart count, preStop handler), and a pod's names from
//! `PodSandboxStatus`, which the runtime keeps from the kubelet's `RunPodSandbox` request (the
//! API server's pod, never a tenant's annotation) and which so win over the bundle's.
//! Optional: without a socket everything else works.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use podlife_core::names::{is_dns1123_label, is_dns1123_subdomain, is_pod_uid};
use podlife_core::{PreStop, PRESTOP_ANNOTATION};
use podlife_cri::v1::runtime_service_client::RuntimeServiceClient;
use podlife_cri::v1::{ContainerStatusRequest, PodSandboxMetadata, PodSandboxStatusRequest};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Kubelet annotations of one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CriMeta {
    pub grace_period_s: Option<f64>,
    pub restart_count: Option<u32>,
    pub prestop: Option<PreStop>,
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
        prestop: a.get(PRESTOP_ANNOTATION).and_then(|v| {
            PreStop::from_annotation(v)
                .map_err(|e| tracing::debug!("{e}"))
                .ok()
        }),
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

/// A runtime that hangs (a stuck containerd, a socket nobody answers) must not stall the
/// metadata task for ever: connecting and each call give up after these.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Cri {
    client: RuntimeServiceClient<Channel>,
    call_timeout: Duration,
}

impl Cri {
    /// Lazy connection: it is made on the first call, so a runtime started after the agent works.
    pub fn new(socket: PathBuf) -> Result<Self, tonic::transport::Error> {
        Self::with_timeouts(socket, CONNECT_TIMEOUT, CALL_TIMEOUT)
    }

    pub fn with_timeouts(
        socket: PathBuf,
        connect: Duration,
        call: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::try_from("http://[::]:50051")?
            .connect_timeout(connect)
            .timeout(call)
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = socket.clone();
                async move {
                    // The timeout here too: tonic's may not wrap a custom connector.
                    let stream = tokio::time::timeout(connect, UnixStream::connect(path))
                        .await
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }));
        Ok(Self {
            client: RuntimeServiceClient::new(channel),
            call_timeout: call,
        })
    }

    pub async fn container(&mut self, id: &str) -> Result<CriMeta, tonic::Status> {
        let call = self.client.container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        });
        // Bounded whatever the transport does (connect, HTTP/2 handshake, the call itself).
        let status = tokio::time::timeout(self.call_timeout, call)
            .await
            .map_err(|_| {
                tonic::Status::deadline_exceeded(format!(
                    "the CRI runtime did not answer within {:?}",
                    self.call_timeout
                ))
            })??
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
            (
                PRESTOP_ANNOTATION,
                r#"{"exec":{"command":["sh","-c","sleep 1"]}}"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        assert_eq!(
            parse_annotations(&a),
            CriMeta {
                grace_period_s: Some(30.0),
                restart_count: Some(2),
                prestop: Some(PreStop::Exec {
                    argv: vec!["sh".into(), "-c".into(), "sleep 1".into()]
                }),
            }
        );
        assert_eq!(parse_annotations(&HashMap::new()), CriMeta::default());
        // A handler the agent cannot read is left out, the rest is kept.
        let bad: HashMap<String, String> = [
            ("io.kubernetes.pod.terminationGracePeriod", "5"),
            (PRESTOP_ANNOTATION, "{\"exec\":"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        assert_eq!(parse_annotations(&bad).prestop, None);
        assert_eq!(parse_annotations(&bad).grace_period_s, Some(5.0));
    }

    #[tokio::test]
    async fn a_runtime_that_never_answers_is_given_up_on() {
        // A socket that accepts and then says nothing, like a hung runtime. Before, the call
        // waited for ever and every later metadata lookup queued behind it.
        let path =
            std::env::temp_dir().join(format!("podlife-cri-hung-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let t = Duration::from_millis(300);
        let mut cri = Cri::with_timeouts(path.clone(), t, t).expect("endpoint");
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), cri.container("abc"))
            .await
            .expect("the call gives up by itself");
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        held.abort();
        let _ = std::fs::remove_file(&path);
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
