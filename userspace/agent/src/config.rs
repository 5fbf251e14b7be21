//! Command line and environment. `podlife --help` is the reference.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use podlife_core::redact::ExtraPatterns;

/// Ten years: far beyond any disk bound, and far below where hours in ns overflow a u64.
pub const MAX_AGE_HOURS: u64 = 87_600;

#[derive(Debug, Parser)]
#[command(
    name = "podlife",
    version,
    about = "eBPF pod lifecycle observer for Kubernetes nodes"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address of the HTTP API and /metrics. /metrics, /healthz and /readyz answer everyone;
    /// the data routes (/pods..., /events...) need the token of --api-token-file, or without
    /// one answer only loopback peers (403 api_private to others) unless --api-open.
    #[arg(
        long,
        env = "PODLIFE_LISTEN",
        default_value = "0.0.0.0:9090",
        global = true
    )]
    pub listen: SocketAddr,

    /// Where derived lifecycle events are kept across restarts.
    #[arg(
        long,
        env = "PODLIFE_STATE_DIR",
        default_value = "/var/lib/podlife",
        global = true
    )]
    pub state_dir: PathBuf,

    /// Runtime state directories holding OCI bundles (container metadata). Repeatable.
    #[arg(
        long,
        env = "PODLIFE_RUNTIME_STATE",
        value_delimiter = ',',
        default_value = "/run/containerd,/run/containers/storage",
        global = true
    )]
    pub runtime_state: Vec<PathBuf>,

    /// The runtime's CRI socket, for metadata the bundles lack (grace periods). Default: the
    /// first of /run/containerd/containerd.sock and /var/run/crio/crio.sock that exists.
    #[arg(long, env = "PODLIFE_CRI_SOCKET", global = true)]
    pub cri_socket: Option<PathBuf>,

    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, env = "PODLIFE_LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,

    /// Size of the eBPF ring buffer in bytes (a power of two, at least one page). The kernel maps
    /// it twice into the agent, so it counts double in RSS; 8 MiB holds ~200 ms of a fork storm.
    #[arg(long, env = "PODLIFE_RINGBUF_BYTES", default_value_t = 8 << 20, global = true)]
    pub ringbuf_bytes: u32,

    /// Pause between two ring-buffer drains, in milliseconds. The programs submit without waking
    /// the reader, so a storm is read in batches of this period; the kernel wakes it at once for
    /// a pod or container cgroup's creation or removal and for an OOM kill. While the ring stays
    /// empty the pause doubles up to 100 ms (with a ring of 1 MiB or more).
    #[arg(long, env = "PODLIFE_DRAIN_MS", default_value_t = 10, global = true)]
    pub drain_ms: u64,

    /// File holding a bearer token required on every endpoint except /healthz, /readyz, /metrics
    /// (`Authorization: Bearer <token>`). Read once at start, trimmed; an empty file is an error.
    #[arg(long, env = "PODLIFE_API_TOKEN_FILE", global = true)]
    pub api_token_file: Option<PathBuf>,

    /// Serve pods, timelines and events (every pod's command lines) to any peer without a
    /// token. Off by default: without --api-token-file only loopback peers get them.
    #[arg(long, env = "PODLIFE_API_OPEN", global = true)]
    pub api_open: bool,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key-file). Read at start, and
    /// again within 10 s of a change. Probes and scrapers then need `scheme: HTTPS`.
    #[arg(
        long,
        env = "PODLIFE_TLS_CERT_FILE",
        requires = "tls_key_file",
        global = true
    )]
    pub tls_cert_file: Option<PathBuf>,

    /// The PEM private key of --tls-cert-file.
    #[arg(
        long,
        env = "PODLIFE_TLS_KEY_FILE",
        requires = "tls_cert_file",
        global = true
    )]
    pub tls_key_file: Option<PathBuf>,

    /// Keep stored history at most this many bytes on disk.
    #[arg(long, env = "PODLIFE_STORE_MAX_BYTES", default_value_t = 64 << 20, global = true)]
    pub store_max_bytes: u64,

    /// At start, load at most this many bytes of the newest stored history (older lines stay
    /// on disk until pruned): bounds the memory a restart on a full store costs.
    #[arg(long, env = "PODLIFE_STORE_LOAD_BYTES", default_value_t = 16 << 20, global = true)]
    pub store_load_bytes: u64,

    /// Keep stored history at most this many hours (1 to 87600, ten years).
    #[arg(
        long,
        env = "PODLIFE_STORE_MAX_AGE_HOURS",
        default_value_t = 72,
        value_parser = clap::value_parser!(u64).range(1..=MAX_AGE_HOURS),
        global = true
    )]
    pub store_max_age_hours: u64,

    /// Pod labels kept on per-pod metrics (of namespace, pod, uid, container); drop some to
    /// cut cardinality, e.g. `namespace,pod`.
    #[arg(
        long,
        env = "PODLIFE_METRICS_POD_LABELS",
        value_delimiter = ',',
        default_value = "namespace,pod,uid,container",
        global = true
    )]
    pub metrics_pod_labels: Vec<String>,

    /// comm of the kubelet process: its TCP connections to pod addresses are probes (tcpSocket,
    /// httpGet, grpc) and httpGet hooks. At most 15 bytes (the kernel's comm).
    #[arg(
        long,
        env = "PODLIFE_KUBELET_COMM",
        default_value = "kubelet",
        value_parser = parse_comm,
        global = true
    )]
    pub kubelet_comm: String,

    /// Name of this node, shown on timelines (and the field selector of --kube-api).
    #[arg(long, env = "NODE_NAME", global = true)]
    pub node_name: Option<String>,

    /// Watch this node's pods on the Kubernetes API server for grace periods, exec probe specs,
    /// owners, container kinds and deletion requests. Everything works without it.
    #[arg(
        long,
        env = "PODLIFE_KUBE_API",
        value_enum,
        default_value_t = KubeApi::Off,
        global = true
    )]
    pub kube_api: KubeApi,

    /// Post kernel-only findings (a child's OOM kill, SIGTERM ignored, grace overrun, probe
    /// timeout, crashed child) as Kubernetes Events on the pod. Needs --kube-api and the node
    /// name, and create/patch on events.k8s.io events (deploy/components/kube-events).
    #[arg(long, env = "PODLIFE_KUBE_EVENTS", global = true)]
    pub kube_events: bool,

    /// Send every lifecycle event as an OpenTelemetry log record to this OTLP/HTTP receiver
    /// (`http://host:port`, protobuf to `/v1/logs`), resumed from a cursor kept in --state-dir.
    #[arg(long, env = "PODLIFE_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<crate::serve::otlp::Endpoint>,

    /// Kubeconfig file for `--kube-api kubeconfig`. Default: $KUBECONFIG, else ~/.kube/config.
    #[arg(long, env = "PODLIFE_KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// Also redact every match of this regular expression (Rust regex syntax) in any argument
    /// of a served command line, on top of the built-in rules. Repeatable. Several patterns
    /// in one value (and in the environment variable) are separated by newlines or by commas
    /// outside `{}`, `[]` and `()`; write `\,` for a literal comma.
    #[arg(
        long,
        env = "PODLIFE_REDACT_PATTERN",
        value_name = "REGEX",
        global = true
    )]
    pub redact_pattern: Vec<ExtraPatterns>,
}

/// Where the API server and its credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeApi {
    /// No API server access (the default).
    Off,
    /// The pod's service account (deploy/components/kube-api grants it).
    InCluster,
    /// A kubeconfig file (--kubeconfig), for an agent run outside the cluster.
    Kubeconfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default).
    Run,
    /// Preflight: load and attach the programs, read BTF, tracefs, cgroup mode, runtime state,
    /// the CRI socket and the state dir; one line per item; exit 1 when podlife cannot work.
    Check,
    /// Write the decoded kernel events to a JSON-lines file (for engine replay tests).
    Record {
        /// Output file ("-" for stdout).
        #[arg(long, short, default_value = "-")]
        out: PathBuf,
        /// Stop after this many seconds (default: until SIGINT/SIGTERM).
        #[arg(long)]
        seconds: Option<u64>,
        /// Record every process on the node, not only pods.
        #[arg(long)]
        all: bool,
    },
}

/// A process comm as the kernel keeps it: 1 to 15 bytes, no NUL.
fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > podlife_common::KUBELET_COMM_MAX || s.contains('\0') {
        return Err(format!(
            "{s:?}: a comm has 1 to {} bytes and no NUL (the kernel cuts longer names)",
            podlife_common::KUBELET_COMM_MAX
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from([&["podlife"], args].concat())
    }

    #[test]
    fn store_max_age_hours_is_bounded() {
        // u64::MAX hours wrapped to a tiny age in ns before: every segment was "too old" and
        // the first flush deleted all history. Now it is refused at start, with the range.
        let err = parse(&["--store-max-age-hours", &u64::MAX.to_string()]).unwrap_err();
        assert!(err.to_string().contains("1..=87600"), "{err}");
        assert!(parse(&["--store-max-age-hours", "0"]).is_err());
        let ok = parse(&["--store-max-age-hours", "87600"]).unwrap();
        assert!(ok
            .store_max_age_hours
            .checked_mul(3_600_000_000_000)
            .is_some());
        assert_eq!(parse(&[]).unwrap().store_max_age_hours, 72);
    }

    #[test]
    fn tls_needs_both_files() {
        assert!(parse(&["--tls-cert-file", "c.pem"]).is_err());
        assert!(parse(&["--tls-key-file", "k.pem"]).is_err());
        let both = parse(&["--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"]).unwrap();
        assert!(both.tls_cert_file.is_some() && both.tls_key_file.is_some());
    }

    #[test]
    fn the_api_is_private_unless_opened() {
        assert!(!parse(&[]).unwrap().api_open);
        assert!(parse(&["--api-open"]).unwrap().api_open);
    }

    #[test]
    fn a_bad_redact_pattern_is_refused_at_startup_naming_the_flag() {
        let err = Args::try_parse_from(["podlife", "--redact-pattern", "cust-(["])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--redact-pattern"), "{err}");
        assert!(err.contains("not a valid regular expression"), "{err}");
        let ok = Args::try_parse_from([
            "podlife",
            "--redact-pattern",
            "cust-[0-9]{4,8}",
            "--redact-pattern",
            "a,b",
        ])
        .unwrap();
        let counts: Vec<usize> = ok.redact_pattern.iter().map(ExtraPatterns::len).collect();
        assert_eq!(counts, [1, 2]);
    }

    #[test]
    fn a_kubelet_comm_longer_than_the_kernels_is_refused() {
        let ok = Args::try_parse_from(["podlife", "--kubelet-comm", "k3s-agent"]).unwrap();
        assert_eq!(ok.kubelet_comm, "k3s-agent");
        assert_eq!(
            Args::try_parse_from(["podlife"]).unwrap().kubelet_comm,
            "kubelet"
        );
        let err = Args::try_parse_from(["podlife", "--kubelet-comm", "a-very-long-kubelet"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--kubelet-comm") && err.contains("1 to 15 bytes"),
            "{err}"
        );
    }
}
