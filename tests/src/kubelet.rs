//! Playing the kubelet: pod cgroups as its cgroupfs driver makes them, CRI calls with the
//! metadata, labels, annotations, resources and namespace options the kubelet sets.
//!
//! [`Kubelet`] is containerd plus a CRI client (for harness tests without an agent); [`Env`] adds
//! the real agent. Pods left behind by a test, also a failing one, are stopped and removed and
//! their cgroups deleted on drop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use podlife_cri::v1::*;

use crate::agent::Agent;
use crate::containerd::Containerd;
use crate::cri::Cri;

/// The namespace every test pod lives in.
pub const NAMESPACE: &str = "e2e";

pub struct Kubelet {
    pub cri: Cri,
    pods: Vec<Pod>,
    // Dropped last: containerd outlives the pod cleanup in Drop.
    pub containerd: Containerd,
}

/// A test environment: a [`Kubelet`] and the podlife agent watching it.
pub struct Env {
    pub agent: Agent,
    pub kubelet: Kubelet,
}

impl std::ops::Deref for Env {
    type Target = Kubelet;
    fn deref(&self) -> &Kubelet {
        &self.kubelet
    }
}

impl std::ops::DerefMut for Env {
    fn deref_mut(&mut self) -> &mut Kubelet {
        &mut self.kubelet
    }
}

#[derive(Clone, Debug)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub sandbox_id: String,
    pub config: PodSandboxConfig,
    /// The pod cgroup, `/kubepods/burstable/pod<uid>` or its systemd-style twin (layout.rs).
    pub cgroup: String,
}

#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub attempt: u32,
}

#[derive(Clone, Debug, Default)]
pub struct PodOpts {
    pub host_network: bool,
    /// shareProcessNamespace: one pid namespace for the pod (NamespaceMode::POD).
    pub share_pid: bool,
}

#[derive(Clone, Debug, Default)]
pub struct CtrOpts {
    /// resources.limits.memory, in bytes.
    pub memory_limit: Option<i64>,
    /// Restart count: the kubelet's CreateContainer attempt.
    pub attempt: u32,
    /// terminationGracePeriodSeconds the kubelet annotates on the container (default 30).
    pub grace_s: Option<i64>,
    /// One of the test images (`busybox` when None): busybox, memhog, crasher.
    pub image: Option<&'static str>,
    /// An exec preStop hook: its command, annotated on the container as the kubelet does.
    pub prestop: Option<Vec<String>>,
    /// An httpGet preStop hook (port, path), annotated the same way.
    pub prestop_http: Option<(u16, &'static str)>,
    /// A sleep preStop hook (seconds), annotated the same way.
    pub prestop_sleep: Option<u64>,
    /// `memory.oom.group` = 1 in the container cgroup, as the kubelet sets it on cgroup v2
    /// (since 1.28, unless singleProcessOOMKill): an OOM kill takes the whole container.
    pub oom_group: bool,
}

impl CtrOpts {
    pub fn image(image: &'static str) -> Self {
        Self {
            image: Some(image),
            ..Self::default()
        }
    }
}

/// A fresh pod UID (UUID form), unique per call and per process.
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

/// Every cgroup hierarchy: the v1 controllers (and named hierarchies) and the unified one.
pub fn hierarchies() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                // Skip the `cpu,cpuacct`-style symlinks: their targets are listed themselves.
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    if v.is_empty() || Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        // Pure cgroup v2: the mount point is the one hierarchy.
        v = vec![PathBuf::from("/sys/fs/cgroup")];
    }
    v
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Kubelet {
    /// containerd with the test images, and a CRI client on its socket. No agent.
    pub fn start() -> Self {
        let containerd = Containerd::start();
        let cri = Cri::connect(&containerd.socket, Some(containerd.log_path()));
        Self {
            cri,
            pods: Vec::new(),
            containerd,
        }
    }

    /// The kubelet creates the pod cgroup (/kubepods/<qos>/pod<uid>, or the systemd-style slice
    /// of layout.rs) in every hierarchy before the sandbox,
    /// then RunPodSandbox with cgroup_parent, the metadata, labels and namespace options.
    pub fn run_pod(&mut self, name: &str, opts: PodOpts) -> Pod {
        self.run_pod_in(NAMESPACE, name, opts)
    }

    /// `run_pod` in another namespace than [`NAMESPACE`].
    pub fn run_pod_in(&mut self, namespace: &str, name: &str, opts: PodOpts) -> Pod {
        let uid = new_uid();
        let namespace = namespace.to_string();
        let cgroup = crate::layout::Layout::from_env().pod_cgroup(&uid);
        for h in hierarchies() {
            let dir = h.join(cgroup.trim_start_matches('/'));
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("creating the pod cgroup {}: {e}", dir.display()));
        }
        let ns = NamespaceOption {
            network: if opts.host_network {
                NamespaceMode::Node as i32
            } else {
                NamespaceMode::Pod as i32
            },
            // Always explicit: the proto default (0 = POD) is not the kubelet's default.
            pid: if opts.share_pid {
                NamespaceMode::Pod as i32
            } else {
                NamespaceMode::Container as i32
            },
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
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
            labels: map(&[
                ("io.kubernetes.pod.name", name),
                ("io.kubernetes.pod.namespace", &namespace),
                ("io.kubernetes.pod.uid", &uid),
            ]),
            annotations: map(&[
                ("kubernetes.io/config.source", "api"),
                ("kubernetes.io/config.seen", "2026-01-01T00:00:00Z"),
            ]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
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
        // The kubelet makes the container's log directory under the pod's.
        let log_dir = self.containerd.dir.join("logs").join(&pod.uid).join(name);
        std::fs::create_dir_all(&log_dir).expect("container log dir");
        let attempt = opts.attempt.to_string();
        let grace = opts.grace_s.unwrap_or(30).to_string();
        // The kubelet's JSON of the pod spec's lifecycle.preStop handler.
        let prestop = match (&opts.prestop, opts.prestop_http, opts.prestop_sleep) {
            (Some(cmd), _, _) => Some(serde_json::json!({"exec": {"command": cmd}})),
            (None, Some((port, path)), _) => Some(serde_json::json!({
                "httpGet": {"path": path, "port": port, "scheme": "HTTP"}
            })),
            (None, None, Some(seconds)) => Some(serde_json::json!({"sleep": {"seconds": seconds}})),
            (None, None, None) => None,
        }
        .map(|h| h.to_string());
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: opts.attempt,
            }),
            image: Some(ImageSpec {
                image: format!("localhost/e2e/{}:latest", opts.image.unwrap_or("busybox")),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/{}.log", opts.attempt),
            labels: map(&[
                ("io.kubernetes.container.name", name),
                ("io.kubernetes.pod.name", &pod.name),
                ("io.kubernetes.pod.namespace", &pod.namespace),
                ("io.kubernetes.pod.uid", &pod.uid),
            ]),
            // The annotations the kubelet puts on every container.
            annotations: map(&[
                ("io.kubernetes.container.hash", "e2e00001"),
                ("io.kubernetes.container.restartCount", &attempt),
                (
                    "io.kubernetes.container.terminationMessagePath",
                    "/dev/termination-log",
                ),
                ("io.kubernetes.container.terminationMessagePolicy", "File"),
                ("io.kubernetes.pod.terminationGracePeriod", &grace),
            ])
            .into_iter()
            .chain(prestop.map(|p| ("io.kubernetes.container.preStopHandler".to_string(), p)))
            .collect(),
            linux: Some(LinuxContainerConfig {
                // What the kubelet sends for a container without requests: minimal shares,
                // the CFS period, the BestEffort OOM score (containerd clamps it to its own).
                resources: Some(LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    memory_limit_in_bytes: opts.memory_limit.unwrap_or(0),
                    unified: if opts.oom_group {
                        map(&[("memory.oom.group", "1")])
                    } else {
                        HashMap::new()
                    },
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
            attempt: opts.attempt,
        }
    }

    /// CreateContainer then StartContainer.
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

    /// The kubelet's stop of a container with an exec preStop hook: the hook through ExecSync,
    /// bounded by the grace period, then StopContainer with what is left of the grace (at
    /// least the kubelet's minimum of 2 s). The hook's exit code, or the runtime's error when
    /// it ran out of time.
    pub fn stop_with_prestop(
        &mut self,
        c: &Container,
        hook: &[&str],
        grace_s: i64,
    ) -> Result<i32, tonic::Status> {
        let started = std::time::Instant::now();
        let hook_result = self.cri.exec_sync(&c.id, hook, grace_s);
        let left = grace_s - started.elapsed().as_secs() as i64;
        self.cri.stop_container(&c.id, left.max(2));
        hook_result
    }

    /// The kubelet's stop of a container with an httpGet preStop hook: its own GET of `path` at
    /// `addr` (the pod's address and the hook's port, from a thread whose comm is `kubelet`),
    /// then StopContainer with what is left of the grace (at least 2 s).
    pub fn stop_with_http_prestop(
        &mut self,
        c: &Container,
        addr: std::net::SocketAddr,
        path: &'static str,
        grace_s: i64,
    ) -> crate::pod_net::Seen {
        let started = std::time::Instant::now();
        let seen = crate::pod_net::kubelet_probe(addr, Some(path));
        let left = grace_s - started.elapsed().as_secs() as i64;
        self.cri.stop_container(&c.id, left.max(2));
        seen
    }

    /// Panics unless a running container's cgroup is where this run's layout puts it (in the
    /// cgroup v2 hierarchy): a test that means to run in the systemd layout really does.
    pub fn assert_container_cgroup(&self, pod: &Pod, c: &Container) {
        let layout = crate::layout::Layout::from_env();
        let rel = layout.container_cgroup(&pod.cgroup, &c.id);
        let dir = crate::pod_cgroups::unified().join(rel.trim_start_matches('/'));
        assert!(
            dir.join("cgroup.procs").exists(),
            "{layout:?} layout: no container cgroup at {}",
            dir.display()
        );
    }

    /// What the container wrote (the CRI log file, one `<time> <stream> <tag> <text>` a line).
    pub fn container_log(&self, pod: &Pod, c: &Container) -> String {
        let path = self
            .containerd
            .dir
            .join("logs")
            .join(&pod.uid)
            .join(&c.name)
            .join(format!("{}.log", c.attempt));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// StopPodSandbox, RemovePodSandbox, then the kubelet removes the pod cgroup.
    pub fn remove_pod(&mut self, pod: &Pod) {
        self.cri.stop_pod_sandbox(&pod.sandbox_id);
        self.cri.remove_pod_sandbox(&pod.sandbox_id);
        remove_cgroup(&pod.cgroup);
        self.pods.retain(|p| p.uid != pod.uid);
    }
}

impl Env {
    /// containerd, the CRI client and the real agent (ready) watching this containerd.
    pub fn start() -> Self {
        Self::start_with_agent_args(&[])
    }

    /// With `--kube-api` against the stand-in API server `api`, as node `node-a`, plus `extra`
    /// flags. The kubeconfig is written in a fresh temporary dir named after `tag`, returned for
    /// the caller to remove.
    pub fn start_with_kube_api(
        api: &crate::apiserver::ApiServer,
        tag: &str,
        extra: &[&str],
    ) -> (Self, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("podlife-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the kubeconfig dir");
        let kc = api.kubeconfig(&dir);
        let mut args = vec![
            "--kube-api",
            "kubeconfig",
            "--kubeconfig",
            kc.to_str().expect("a UTF-8 temp dir"),
            "--node-name",
            "node-a",
        ];
        args.extend_from_slice(extra);
        (Self::start_with_agent_args(&args), dir)
    }

    /// With extra agent flags (ring-buffer size, token file ...).
    pub fn start_with_agent_args(args: &[&str]) -> Self {
        // The agent binary is checked before anything is started.
        let _ = crate::agent::agent_bin();
        let kubelet = Kubelet::start();
        let socket = kubelet.containerd.socket.to_string_lossy().to_string();
        let mut all = vec!["--cri-socket", socket.as_str()];
        all.extend_from_slice(args);
        let agent = Agent::start_args(&kubelet.containerd.state, None, &all);
        Self { agent, kubelet }
    }
}

fn remove_cgroup(cgroup: &str) {
    for h in hierarchies() {
        let dir = h.join(cgroup.trim_start_matches('/'));
        if dir.exists() {
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

impl Drop for Kubelet {
    fn drop(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            // Never panics: this also runs while a failed test unwinds.
            let _ = self.cri.try_stop_pod_sandbox(&pod.sandbox_id);
            self.cri.remove_pod_sandbox(&pod.sandbox_id);
            remove_cgroup(&pod.cgroup);
        }
    }
}
