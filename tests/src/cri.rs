//! A blocking CRI v1 client over containerd's unix socket (podlife-cri + tonic).

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use podlife_cri::v1::runtime_service_client::RuntimeServiceClient;
use podlife_cri::v1::*;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    /// containerd's log, quoted when a call fails.
    log: Option<PathBuf>,
}

impl Cri {
    /// A client of the runtime at `socket`; `log` (the runtime's log file) is quoted in the
    /// panic message of a failed call.
    pub fn connect(socket: &Path, log: Option<PathBuf>) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let path: PathBuf = socket.to_path_buf();
        let channel = rt
            .block_on(
                Endpoint::try_from("http://[::]:50051")
                    .expect("endpoint")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                        }
                    })),
            )
            .unwrap_or_else(|e| panic!("connecting to the CRI at {}: {e}", socket.display()));
        Self {
            rt,
            client: RuntimeServiceClient::new(channel).max_decoding_message_size(64 << 20),
            log,
        }
    }

    fn fail(&self, call: &str, e: tonic::Status) -> ! {
        let tail = self
            .log
            .as_deref()
            .map(|p| crate::containerd::tail(p, 20))
            .unwrap_or_default();
        panic!("{call}: {e}\ncontainerd log (tail):\n{tail}")
    }

    pub fn run_pod_sandbox(&mut self, config: PodSandboxConfig) -> String {
        let c = &mut self.client;
        self.rt
            .block_on(c.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                ..Default::default()
            }))
            .unwrap_or_else(|e| self.fail("RunPodSandbox", e))
            .into_inner()
            .pod_sandbox_id
    }

    pub fn create_container(
        &mut self,
        pod: &str,
        config: ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> String {
        let c = &mut self.client;
        self.rt
            .block_on(c.create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(sandbox.clone()),
            }))
            .unwrap_or_else(|e| self.fail("CreateContainer", e))
            .into_inner()
            .container_id
    }

    pub fn start_container(&mut self, id: &str) {
        let c = &mut self.client;
        self.rt
            .block_on(c.start_container(StartContainerRequest {
                container_id: id.into(),
            }))
            .unwrap_or_else(|e| self.fail(&format!("StartContainer {id}"), e));
    }

    /// ExecSync as the kubelet runs exec probes: Ok(exit code), Err(grpc status) on timeout.
    pub fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout_s: i64,
    ) -> Result<i32, tonic::Status> {
        let c = &mut self.client;
        self.rt
            .block_on(c.exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: timeout_s,
            }))
            .map(|r| r.into_inner().exit_code)
    }

    pub fn stop_container(&mut self, id: &str, timeout_s: i64) {
        let c = &mut self.client;
        self.rt
            .block_on(c.stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_s,
            }))
            .unwrap_or_else(|e| self.fail(&format!("StopContainer {id}"), e));
    }

    pub fn remove_container(&mut self, id: &str) {
        let c = &mut self.client;
        let _ = self.rt.block_on(c.remove_container(RemoveContainerRequest {
            container_id: id.into(),
        }));
    }

    pub fn container_status(&mut self, id: &str) -> ContainerStatus {
        let c = &mut self.client;
        self.rt
            .block_on(c.container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }))
            .unwrap_or_else(|e| self.fail(&format!("ContainerStatus {id}"), e))
            .into_inner()
            .status
            .expect("status")
    }

    /// Status once the runtime has seen the container exit (it learns it asynchronously);
    /// panics when it has not within 20 s.
    pub fn wait_exited(&mut self, id: &str) -> ContainerStatus {
        let t = std::time::Instant::now();
        loop {
            let s = self.container_status(id);
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            if t.elapsed() > std::time::Duration::from_secs(20) {
                panic!("container {id} has not exited after 20 s: {s:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Ids of the containers the runtime knows (any state).
    pub fn list_containers(&mut self) -> Vec<String> {
        let c = &mut self.client;
        self.rt
            .block_on(c.list_containers(ListContainersRequest::default()))
            .unwrap_or_else(|e| self.fail("ListContainers", e))
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    /// Ids of the pod sandboxes the runtime knows (any state).
    pub fn list_pod_sandboxes(&mut self) -> Vec<String> {
        let c = &mut self.client;
        self.rt
            .block_on(c.list_pod_sandbox(ListPodSandboxRequest::default()))
            .unwrap_or_else(|e| self.fail("ListPodSandbox", e))
            .into_inner()
            .items
            .into_iter()
            .map(|s| s.id)
            .collect()
    }

    pub fn stop_pod_sandbox(&mut self, id: &str) {
        if let Err(e) = self.try_stop_pod_sandbox(id) {
            self.fail(&format!("StopPodSandbox {id}"), e)
        }
    }

    pub fn try_stop_pod_sandbox(&mut self, id: &str) -> Result<(), tonic::Status> {
        let c = &mut self.client;
        self.rt
            .block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }))
            .map(|_| ())
    }

    pub fn remove_pod_sandbox(&mut self, id: &str) {
        let c = &mut self.client;
        let _ = self
            .rt
            .block_on(c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }));
    }
}
