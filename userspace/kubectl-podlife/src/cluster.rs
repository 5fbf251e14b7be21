//! The cluster side: the kubeconfig, the pod's node, the podlife agent on a node, and GETs to
//! that agent through the API server's pod proxy (`pods/proxy`), so a laptop with a kubeconfig
//! reaches every node's agent and nothing else is needed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use http_body_util::{BodyExt as _, Limited};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Connection flags, named as kubectl names them.
#[derive(Debug, clap::Args)]
pub struct Flags {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the pod (default: the context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Namespace podlife's agents run in.
    #[arg(long, global = true, default_value = "podlife")]
    pub podlife_namespace: String,
    /// Label selector of podlife's agent pods.
    #[arg(long, global = true, default_value = "app.kubernetes.io/name=podlife")]
    pub selector: String,
    /// The agents' HTTP port.
    #[arg(long, global = true, default_value_t = 9090)]
    pub port: u16,
    /// How long one node may take to answer (e.g. 5s, 500ms).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_timeout)]
    pub request_timeout: Duration,
    /// File holding the agents' API token. Default: the Secret named by --token-secret.
    #[arg(long, global = true, env = "PODLIFE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Secret (in --podlife-namespace, key `token`) to read the agents' API token from when
    /// --token-file is not given; empty: send no token.
    #[arg(long, global = true, default_value = "podlife-api-token")]
    pub token_secret: String,
}

pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?}: expected a duration such as 5s or 500ms");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

/// One node's agent pod.
#[derive(Debug, Clone)]
pub struct AgentPod {
    pub name: String,
    pub node: String,
}

/// An agent's answer: status and body (the agents answer JSON errors with a message).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The body when 2xx, else the agent's (or API server's) own message.
    pub fn ok(self) -> Result<String> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let msg = serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v["error"]["message"]
                    .as_str()
                    .or(v["message"].as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.body.chars().take(200).collect());
        bail!("HTTP {}: {msg}", self.status)
    }
}

/// Larger answers are refused: the agents page /events at 4 MiB, a timeline is smaller.
const MAX_BODY: usize = 32 << 20;

pub struct Cluster {
    client: Client,
    pub default_ns: String,
    flags: Flags,
    token: Option<String>,
}

impl Cluster {
    pub async fn connect(flags: Flags) -> Result<Self> {
        let options = KubeConfigOptions {
            context: flags.context.clone(),
            ..Default::default()
        };
        let config = match &flags.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kc, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .context("loading the kubeconfig")?;
        let default_ns = flags
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("building the Kubernetes client")?;
        let mut cluster = Self {
            client,
            default_ns,
            flags,
            token: None,
        };
        cluster.token = cluster.read_token().await?;
        Ok(cluster)
    }

    /// The token from --token-file, else from the Secret when this user may read it. A Secret
    /// that is absent or forbidden is not an error: agents with `--api-open` need none, and the
    /// agent's 401 then says what is missing.
    async fn read_token(&self) -> Result<Option<String>> {
        if let Some(path) = &self.flags.token_file {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("reading --token-file {}", path.display()))?;
            return Ok(Some(t.trim().to_string()).filter(|t| !t.is_empty()));
        }
        if self.flags.token_secret.is_empty() {
            return Ok(None);
        }
        let secrets: Api<Secret> =
            Api::namespaced(self.client.clone(), &self.flags.podlife_namespace);
        let got = self.timed(secrets.get_opt(&self.flags.token_secret)).await;
        Ok(match got {
            Ok(Ok(Some(s))) => s
                .data
                .and_then(|d| {
                    d.get("token")
                        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
                })
                .filter(|t| !t.is_empty()),
            _ => None,
        })
    }

    async fn timed<F: std::future::Future>(&self, f: F) -> Result<F::Output> {
        tokio::time::timeout(self.flags.request_timeout, f)
            .await
            .map_err(|_| anyhow!("no answer within {:?}", self.flags.request_timeout))
    }

    /// The pod, or None when the API no longer has it (deleted, evicted).
    pub async fn pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        self.timed(pods.get_opt(name))
            .await?
            .with_context(|| format!("getting pod {namespace}/{name}"))
    }

    /// podlife's agent pods, on one node or on all; one per node (the newest running one).
    pub async fn agents(&self, node: Option<&str>) -> Result<Vec<AgentPod>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.flags.podlife_namespace);
        let mut lp = ListParams::default().labels(&self.flags.selector);
        if let Some(n) = node {
            lp = lp.fields(&format!("spec.nodeName={n}"));
        }
        let list = self.timed(pods.list(&lp)).await?.with_context(|| {
            format!(
                "listing podlife agents ({}) in namespace {}",
                self.flags.selector, self.flags.podlife_namespace
            )
        })?;
        let mut by_node: std::collections::BTreeMap<String, (String, String)> = Default::default();
        for p in list.items {
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let (Some(name), Some(n)) = (p.metadata.name.clone(), p.spec.and_then(|s| s.node_name))
            else {
                continue;
            };
            if !running {
                continue;
            }
            let created = p
                .metadata
                .creation_timestamp
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            let newer = by_node.get(&n).is_none_or(|(c, _)| created >= *c);
            if newer {
                by_node.insert(n, (created, name));
            }
        }
        if by_node.is_empty() {
            bail!(
                "no running podlife agent{} (pods labelled {} in namespace {}): is podlife deployed there?",
                node.map(|n| format!(" on node {n}")).unwrap_or_default(),
                self.flags.selector,
                self.flags.podlife_namespace
            );
        }
        Ok(by_node
            .into_iter()
            .map(|(node, (_, name))| AgentPod { name, node })
            .collect())
    }

    /// GET `path_and_query` (starting with `/`) from an agent through the API server's pod
    /// proxy. The API server drops the Authorization header once it has authenticated us, so
    /// the agent's token travels in `X-Podlife-Token`.
    pub async fn get(&self, agent: &AgentPod, path_and_query: &str) -> Result<Answer> {
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{}:{}/proxy{}",
            self.flags.podlife_namespace, agent.name, self.flags.port, path_and_query
        );
        let mut req = http::Request::get(&uri);
        if let Some(t) = &self.token {
            req = req.header("X-Podlife-Token", t);
        }
        let req = req
            .body(kube::client::Body::empty())
            .context("building the request")?;
        let res = self
            .timed(async {
                let res = self.client.send(req).await?;
                let status = res.status().as_u16();
                let body = Limited::new(res.into_body(), MAX_BODY)
                    .collect()
                    .await
                    .map_err(|e| anyhow!("reading the answer: {e}"))?
                    .to_bytes();
                anyhow::Ok(Answer {
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                })
            })
            .await??;
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_and_bad_ones_say_why() {
        assert_eq!(parse_timeout("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_timeout("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_timeout("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "5", "s", "0s", "5h", "-1s"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_error_answer_gives_the_agents_message() {
        let a = Answer {
            status: 401,
            body: r#"{"error":{"code":"unauthorized","message":"a bearer token is required"}}"#
                .into(),
        };
        assert_eq!(
            a.ok().unwrap_err().to_string(),
            "HTTP 401: a bearer token is required"
        );
        let a = Answer {
            status: 200,
            body: "x".into(),
        };
        assert_eq!(a.ok().unwrap(), "x");
    }
}
