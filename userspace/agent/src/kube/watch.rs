//! The optional watch of this node's pods on the Kubernetes API server (`--kube-api`): grace
//! periods, exec probe specs, owners, container kinds and deletion requests, mapped by
//! `pod_facts` and handed to the engine. Off by default. When the API server cannot be reached
//! or refuses (401, 403), the agent says so in its log (at most once a minute while it lasts),
//! exports `podlife_feature_enabled{feature="kube_api"} 0`, retries with back-off, and keeps
//! working from kernel and runtime data.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, watcher, Event};
use kube::{Api, Client};
use tracing::{error, info, warn};

use crate::config::KubeApi;
use crate::kube::pod_facts::pod_facts;
use crate::pipeline::facts::Fact;
use crate::pipeline::shared::Shared;

pub const FEATURE: &str = "kube_api";

#[derive(Debug, thiserror::Error)]
pub enum KubeWatchError {
    #[error("in-cluster configuration: {source}; run podlife in a pod with a service account token (deploy/components/kube-api), or use --kube-api kubeconfig")]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("Kubernetes client: {source}")]
    Client {
        #[source]
        source: kube::Error,
    },
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub mode: KubeApi,
    pub kubeconfig: Option<PathBuf>,
    pub node: Option<String>,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

async fn config(o: &WatchOptions) -> Result<kube::Config, KubeWatchError> {
    let kubeconfig_error = |source| KubeWatchError::Kubeconfig {
        path: o.kubeconfig.as_ref().map_or_else(
            || "($KUBECONFIG or ~/.kube/config)".into(),
            |p| p.display().to_string(),
        ),
        source,
    };
    let options = KubeConfigOptions::default();
    match (o.mode, &o.kubeconfig) {
        (KubeApi::Kubeconfig, Some(path)) => {
            let file = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(kubeconfig_error)
        }
        (KubeApi::Kubeconfig, None) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(kubeconfig_error),
        // `Off` never gets here: the agent does not start the watch.
        (KubeApi::InCluster | KubeApi::Off, _) => {
            kube::Config::incluster().map_err(|source| KubeWatchError::InCluster { source })
        }
    }
}

pub async fn client(o: &WatchOptions) -> Result<Client, KubeWatchError> {
    Client::try_from(config(o).await?).map_err(|source| KubeWatchError::Client { source })
}

/// What to do about an error, for the log line.
fn hint(e: &watcher::Error) -> &'static str {
    let status = match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => match k {
            kube::Error::Api(s) => s.code,
            _ => 0,
        },
        watcher::Error::WatchError(s) => s.code,
        watcher::Error::NoResourceVersion => return "",
    };
    match status {
        0 => "is the API server reachable from this node?",
        401 => "the API server refused the credentials: check the service account token or the kubeconfig",
        403 => "the service account may not list pods: apply deploy/components/kube-api (get, list, watch on pods)",
        _ => "",
    }
}

/// 410 Gone: the resourceVersion expired; the watcher lists again by itself, nothing is wrong.
fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// Doubling waits between attempts, from 1 s up to a cap; reset by a successful list.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_secs(1).min(max),
            max,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_secs(1).min(self.max);
    }
}

/// A failure streak is logged at its first error and then at most once per `every`.
#[derive(Debug)]
pub struct ErrorLog {
    every: Duration,
    streak: u32,
    last_logged: Option<Instant>,
}

impl ErrorLog {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            streak: 0,
            last_logged: None,
        }
    }

    /// Count an error; `Some(streak length)` when it is to be logged.
    pub fn error(&mut self, now: Instant) -> Option<u32> {
        self.streak += 1;
        let due = self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= self.every);
        if self.streak == 1 || due {
            self.last_logged = Some(now);
            Some(self.streak)
        } else {
            None
        }
    }

    /// The streak ended; its length when there was one.
    pub fn recovered(&mut self) -> Option<u32> {
        let n = std::mem::take(&mut self.streak);
        self.last_logged = None;
        (n > 0).then_some(n)
    }
}

fn set_enabled(shared: &Shared, on: bool) {
    shared
        .lock()
        .metrics
        .feature_enabled
        .with_label_values(&[FEATURE])
        .set(i64::from(on));
}

/// The pod's facts go to the pipeline, which applies them (a full queue counts the loss).
fn on_pod(shared: &Shared, pod: &Pod) {
    let Some(facts) = pod_facts(pod) else {
        return;
    };
    if !shared.facts.send(Fact::Pod(Box::new(facts))) {
        tracing::debug!("the facts queue is full: a pod update was dropped");
    }
}

/// Watch until the process ends. Never returns early except when the node name is unknown
/// (the watch would cover the whole cluster).
pub async fn run(shared: Arc<Shared>, o: WatchOptions) {
    let Some(node) = o.node.clone().filter(|n| !n.is_empty()) else {
        set_enabled(&shared, false);
        error!("--kube-api: the node name is unknown (set NODE_NAME or --node-name); podlife watches only its own node's pods, so the API watch is off");
        return;
    };
    let selector = format!("spec.nodeName={node}");
    let mut backoff = Backoff::new(o.max_backoff);
    let mut errors = ErrorLog::new(Duration::from_secs(60));
    let fail = |errors: &mut ErrorLog, what: String| {
        set_enabled(&shared, false);
        if let Some(n) = errors.error(Instant::now()) {
            if n == 1 {
                warn!("Kubernetes API watch failed: {what}; retrying with back-off, the agent keeps working without it");
            } else {
                warn!("Kubernetes API watch still failing ({n} errors in a row): {what}");
            }
        }
    };
    let mode = clap::ValueEnum::to_possible_value(&o.mode)
        .map_or_else(String::new, |v| v.get_name().to_string());
    info!("Kubernetes API watch of pods with {selector} (--kube-api {mode})");
    loop {
        let client = match client(&o).await {
            Ok(c) => c,
            Err(e) => {
                fail(&mut errors, e.to_string());
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let api: Api<Pod> = Api::all(client);
        let mut stream = watcher(api, watcher::Config::default().fields(&selector)).boxed();
        let mut listed = 0usize;
        // A fresh watcher lists first: a recovered API server shows up as InitDone.
        while let Some(item) = stream.next().await {
            match item {
                Ok(Event::Init) => listed = 0,
                Ok(Event::InitApply(p)) => {
                    listed += 1;
                    on_pod(&shared, &p);
                }
                Ok(Event::InitDone) => {
                    set_enabled(&shared, true);
                    backoff.reset();
                    match errors.recovered() {
                        Some(n) => info!(
                            pods = listed,
                            "Kubernetes API watch recovered after {n} errors"
                        ),
                        None => info!(
                            pods = listed,
                            "Kubernetes API: pods of {node} listed, watching"
                        ),
                    }
                }
                Ok(Event::Apply(p) | Event::Delete(p)) => on_pod(&shared, &p),
                Err(e) if is_gone(&e) => {}
                Err(e) => {
                    let h = hint(&e);
                    fail(
                        &mut errors,
                        if h.is_empty() {
                            e.to_string()
                        } else {
                            format!("{e} ({h})")
                        },
                    );
                    break;
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(5));
        let d: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn a_failure_streak_is_logged_once_a_minute() {
        let mut l = ErrorLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(l.error(t0), Some(1));
        assert_eq!(l.error(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.error(t0 + Duration::from_secs(30)), None);
        assert_eq!(l.error(t0 + Duration::from_secs(61)), Some(4));
        assert_eq!(l.error(t0 + Duration::from_secs(62)), None);
        assert_eq!(l.recovered(), Some(5));
        assert_eq!(l.recovered(), None);
        assert_eq!(
            l.error(t0 + Duration::from_secs(63)),
            Some(1),
            "a new streak"
        );
    }

    #[test]
    fn hints_for_refusals_and_unreachable_servers() {
        let status = |code: u16| {
            Box::new(kube::core::Status {
                code,
                ..Default::default()
            })
        };
        let forbidden = watcher::Error::InitialListFailed(kube::Error::Api(status(403)));
        assert!(hint(&forbidden).contains("deploy/components/kube-api"));
        let unauthorized = watcher::Error::WatchStartFailed(kube::Error::Api(status(401)));
        assert!(hint(&unauthorized).contains("credentials"));
        assert!(is_gone(&watcher::Error::WatchError(status(410))));
        assert!(!is_gone(&forbidden));
    }
}
