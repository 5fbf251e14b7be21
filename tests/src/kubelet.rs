//! Playing the kubelet: pod cgroups as its cgroupfs driver makes them, CRI calls with the
//! metadata, labels and namespace options the kubelet sets.

use std::collections::HashMap;
use std::path::Path;

use k8s_cri::v1::*;

use crate::agent::Agent;
use crate::containerd::Containerd;
use crate::cri::Cri;

/// A test environment: containerd, a CRI client and the agent. Pods left behind by a test
/// (also a failing one) are stopped and removed when it drops.
pub struct Env {
    pub agent: Agent,
    pub cri: Cri,
    pods: Vec<Pod>,
    // Dropped last: containerd outlives the cleanup above.
    pub containerd: Containerd,
}

#[derive(Clone, Debug)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub sandbox_id: String,
    pub config: PodSandboxConfig,
    pub cgroup: String,
}

#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, Default)]
pub struct PodOpts {
    pub host_network: bool,
    pub share_pid: bool,
}

#[derive(Clone, Debug, Default)]
pub struct CtrOpts {
    pub memory_limit: Option<i64>,
    pub attempt: u32,
    /// terminationGracePeriodSeconds the kubelet annotates on the container (default 30).
    pub grace_s: Option<i64>,
}

/// A fresh pod UID (UUID form), unique per call.
pub fn new_uid() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        std::process::id(),
        n & 0xffff,
        (t >> 12) & 0xfff,
        t & 0xfff,
        t >> 16 & 0xffff_ffff_ffff
    )
}

fn hierarchies() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

impl Env {
    pub fn start() -> Self {
        Self::start_with_agent_args(&[])
    }

    /// With extra agent flags (ring-buffer size, token file ...).
    pub fn start_with_agent_args(args: &[&str]) -> Self {
        crate::require_root();
        let containerd = Containerd::start();
        let cri = Cri::connect(&containerd.socket);
        let socket = containerd.socket.to_string_lossy().to_string();
        let mut all = vec!["--cri-socket", socket.as_str()];
        all.extend_from_slice(args);
        let agent = Agent::start_args(&containerd.state, None, &all);
        Self {
            agent,
            cri,
            pods: Vec::new(),
            containerd,
        }
    }

    /// The kubelet creates /kubepods/<qos>/pod<uid> in every hierarchy before the sandbox.
    pub fn run_pod(&mut self, name: &str, opts: PodOpts) -> Pod {
        let uid = new_uid();
        let namespace = "e2e".to_string();
        let cgroup = format!("/kubepods/burstable/pod{uid}");
        for h in hierarchies() {
            let _ = std::fs::create_dir_all(h.join(cgroup.trim_start_matches('/')));
        }
        let ns = NamespaceOption {
            network: if opts.host_network {
                NamespaceMode::Node as i32
            } else {
                NamespaceMode::Pod as i32
            },
            pid: if opts.share_pid {
                NamespaceMode::Pod as i32
            } else {
                NamespaceMode::Container as i32
            },
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", namespace.as_str()),
            ("io.kubernetes.pod.uid", uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let log_dir = self.containerd.dir.join("logs").join(&uid);
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: namespace.clone(),
                attempt: 0,
            }),
            // runc refuses a hostname without its own UTS namespace (hostNetwork).
            hostname: if opts.host_network {
                String::new()
            } else {
                name.into()
            },
            log_directory: log_dir.to_string_lossy().into(),
            labels,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox_id = self.cri.run_pod_sandbox(config.clone());
        let pod = Pod {
            uid,
            name: name.into(),
            namespace,
            sandbox_id,
            config,
            cgroup,
        };
        self.pods.push(pod.clone());
        pod
    }

    pub fn create_container(
        &mut self,
        pod: &Pod,
        name: &str,
        cmd: &[&str],
        opts: CtrOpts,
    ) -> Container {
        let ns = pod
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        let labels: HashMap<String, String> = [
            ("io.kubernetes.container.name", name),
            ("io.kubernetes.pod.name", pod.name.as_str()),
            ("io.kubernetes.pod.namespace", pod.namespace.as_str()),
            ("io.kubernetes.pod.uid", pod.uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // The annotations the kubelet puts on every container.
        let annotations: HashMap<String, String> = [
            (
                "io.kubernetes.container.restartCount",
                opts.attempt.to_string(),
            ),
            (
                "io.kubernetes.pod.terminationGracePeriod",
                opts.grace_s.unwrap_or(30).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let config = ContainerConfig {
            annotations,
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: opts.attempt,
            }),
            image: Some(ImageSpec {
                image: "localhost/e2e/busybox:latest".into(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}_{}.log", opts.attempt),
            labels,
            linux: Some(LinuxContainerConfig {
                resources: opts.memory_limit.map(|m| LinuxContainerResources {
                    memory_limit_in_bytes: m,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: ns,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let id = self
            .cri
            .create_container(&pod.sandbox_id, config, &pod.config);
        Container {
            id,
            name: name.into(),
        }
    }

    pub fn run_container(
        &mut self,
        pod: &Pod,
        name: &str,
        cmd: &[&str],
        opts: CtrOpts,
    ) -> Container {
        let c = self.create_container(pod, name, cmd, opts);
        self.cri.start_container(&c.id);
        c
    }

    /// StopPodSandbox, RemovePodSandbox, then the kubelet removes the pod cgroup.
    pub fn remove_pod(&mut self, pod: &Pod) {
        self.cri.stop_pod_sandbox(&pod.sandbox_id);
        self.cri.remove_pod_sandbox(&pod.sandbox_id);
        remove_cgroup(&pod.cgroup);
        self.pods.retain(|p| p.uid != pod.uid);
    }
}

fn remove_cgroup(cgroup: &str) {
    for h in hierarchies() {
        let dir = h.join(cgroup.trim_start_matches('/'));
        if Path::new(&dir).exists() {
            // Container cgroups left by a failed test first.
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            let c = &mut self.cri;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.stop_pod_sandbox(&pod.sandbox_id)
            }));
            self.cri.remove_pod_sandbox(&pod.sandbox_id);
            remove_cgroup(&pod.cgroup);
        }
    }
}
