//! A protocol-level stand-in for the Kubernetes API server, for the kubectl plugin's test. It
//! is NOT a real API server: it serves exactly what `kubectl podlife` asks (get a pod, list
//! pods with label and field selectors, get a Secret, and the `pods/proxy` subresource,
//! forwarded to real agents on loopback), checks the client's bearer token, and, like
//! kube-apiserver's authentication filter, does not pass the caller's Authorization header on
//! to the proxied pod. It records every request so a test can assert what was asked. For the
//! agent's `--kube-api` + `--kube-events` it also answers the node's pod list (empty) and watch
//! (held open a few seconds, then ended), and keeps the Events posted and patched; for the
//! agent's probe messages it lists the core/v1 Events it holds in a namespace, filtered by the
//! field selector (`involvedObject.uid`, `reason`) as kube-apiserver does.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// What the stand-in knows: pods by (namespace, name), agent pods by name with their node
/// and the loopback port of the real agent behind them, Secrets' `token` keys.
#[derive(Default)]
pub struct World {
    pub pods: BTreeMap<(String, String), Value>,
    /// Agent pod name → (node, loopback port, phase).
    pub agents: BTreeMap<String, (String, u16, String)>,
    pub secrets: BTreeMap<(String, String), String>,
    /// Events created through events.k8s.io/v1, by (namespace, name).
    pub events: BTreeMap<(String, String), Value>,
    /// Merge patches received, by (namespace, name), in order.
    pub patches: Vec<((String, String), Value)>,
    /// core/v1 Events (the kubelet's, such as `Unhealthy`), each with its metadata.namespace.
    pub core_events: Vec<Value>,
    /// Pods of the agent's node (`--kube-api` lists and watches them): each watch call sends
    /// every one as MODIFIED after a second.
    pub node_pods: Vec<Value>,
}

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Headers sent on to an agent (proxied requests only).
    pub forwarded: Vec<(String, String)>,
}

pub struct ApiServer {
    pub port: u16,
    pub world: Arc<Mutex<World>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// The bearer token the stand-in accepts from clients (written into the test's kubeconfig).
pub const USER_TOKEN: &str = "plugin-user-token";
/// Namespace and label the plugin is told to look for agents with.
pub const AGENT_NAMESPACE: &str = "podlife";
pub const AGENT_SELECTOR: &str = "app.kubernetes.io/name=podlife";

impl ApiServer {
    pub fn start(world: World) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in API server");
        let port = listener.local_addr().unwrap().port();
        let world = Arc::new(Mutex::new(world));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (w, s) = (world.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (w, s) = (w.clone(), s.clone());
                std::thread::spawn(move || serve(conn, &w, &s));
            }
        });
        Self { port, world, seen }
    }

    /// A kubeconfig for this server with the user token, in `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://127.0.0.1:{}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: oncall\n    namespace: default\ncurrent-context: standin\nusers:\n- name: oncall\n  user:\n    token: {USER_TOKEN}\n",
            self.port
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An agent pod object as the DaemonSet would create it.
pub fn agent_pod(name: &str, node: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": AGENT_NAMESPACE, "uid": format!("uid-{name}"),
                     "labels": {"app.kubernetes.io/name": "podlife"},
                     "creationTimestamp": "2026-12-06T10:00:00Z"},
        "spec": {"nodeName": node, "containers": [{"name": "agent", "image": "podlife"}]},
        "status": {"phase": phase},
    })
}

/// A workload pod object scheduled to `node`.
pub fn pod(namespace: &str, name: &str, uid: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]},
        "status": {"phase": "Running"},
    })
}

fn status(code: u16, reason: &str, message: &str) -> (u16, String, Value) {
    (
        code,
        "application/json".into(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn serve(conn: TcpStream, world: &Mutex<World>, seen: &Mutex<Vec<Seen>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut out = conn;
    // HTTP/1.1 keep-alive: one request after the other on the connection.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let method = line.split(' ').next().unwrap_or("").to_string();
        let target = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0; length.min(1 << 20)];
        let _ = reader.read_exact(&mut body);
        let mut record = Seen {
            method: method.clone(),
            path: target.clone(),
            headers: headers.clone(),
            forwarded: Vec::new(),
        };
        let (code, ctype, payload) = match method.as_str() {
            "POST" | "PATCH" => write(&method, &target, &headers, &body, world),
            _ => answer(&target, &headers, world, &mut record),
        };
        seen.lock().unwrap().push(record);
        let bytes = match payload {
            Value::String(s) => s.into_bytes(),
            v => v.to_string().into_bytes(),
        };
        let head = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&bytes).is_err() {
            return;
        }
    }
}

fn answer(
    target: &str,
    headers: &[(String, String)],
    world: &Mutex<World>,
    record: &mut Seen,
) -> (u16, String, Value) {
    if !authorized(headers) {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let query = query_of(target);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let w = world.lock().unwrap();
    match parts.as_slice() {
        // The agent's --kube-api: its node's pods, listed; a watch answers after a second with
        // each of them as MODIFIED (none: after 5 s, empty) and ends.
        ["api", "v1", "pods"] => {
            let pods = w.node_pods.clone();
            drop(w);
            if query.get("watch").is_some_and(|v| v == "true" || v == "1") {
                if pods.is_empty() {
                    std::thread::sleep(Duration::from_secs(5));
                    return (200, "application/json".into(), Value::String(String::new()));
                }
                std::thread::sleep(Duration::from_secs(1));
                let lines: String = pods
                    .iter()
                    .map(|p| format!("{}\n", json!({"type": "MODIFIED", "object": p})))
                    .collect();
                return (200, "application/json".into(), Value::String(lines));
            }
            (
                200,
                "application/json".into(),
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": pods}),
            )
        }
        ["api", "v1", "namespaces", ns, "pods"] => {
            let selector = query.get("labelSelector").map(String::as_str);
            if *ns != AGENT_NAMESPACE || selector != Some(AGENT_SELECTOR) {
                return status(
                    400,
                    "BadRequest",
                    "the stand-in lists only podlife's agents",
                );
            }
            let node = query
                .get("fieldSelector")
                .and_then(|f| f.strip_prefix("spec.nodeName="));
            let items: Vec<Value> = w
                .agents
                .iter()
                .filter(|(_, (n, _, _))| node.is_none_or(|want| want == n))
                .map(|(name, (n, _, phase))| agent_pod(name, n, phase))
                .collect();
            (
                200,
                "application/json".into(),
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ["api", "v1", "namespaces", ns, "events"] => {
            let selector = query.get("fieldSelector").map_or("", String::as_str);
            let Some(wanted) = field_selector(selector) else {
                return status(400, "BadRequest", "the stand-in takes k=v field selectors");
            };
            let items: Vec<Value> = w
                .core_events
                .iter()
                .filter(|e| e["metadata"]["namespace"] == *ns)
                .filter(|e| {
                    wanted
                        .iter()
                        .all(|(path, v)| field(e, path) == Some(v.as_str()))
                })
                .cloned()
                .collect();
            (
                200,
                "application/json".into(),
                json!({"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ["api", "v1", "namespaces", ns, "pods", name] => {
            match w.pods.get(&(ns.to_string(), name.to_string())) {
                Some(p) => (200, "application/json".into(), p.clone()),
                None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
            }
        }
        ["api", "v1", "namespaces", ns, "secrets", name] => {
            match w.secrets.get(&(ns.to_string(), name.to_string())) {
                Some(t) => (
                    200,
                    "application/json".into(),
                    json!({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": name, "namespace": ns},
                           "data": {"token": base64(t.as_bytes())}}),
                ),
                None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
            }
        }
        ["api", "v1", "namespaces", ns, "pods", target_pod, "proxy", rest @ ..] => {
            let (name, port) = target_pod.split_once(':').unwrap_or((target_pod, ""));
            let Some((_, local, _)) = w.agents.get(name).filter(|_| *ns == AGENT_NAMESPACE) else {
                return status(404, "NotFound", &format!("pods \"{name}\" not found"));
            };
            if port != "9090" {
                return status(503, "ServiceUnavailable", "the agents listen on 9090");
            }
            let local = *local;
            drop(w);
            // What kube-apiserver passes on: not the caller's Authorization.
            let forwarded: Vec<(String, String)> = headers
                .iter()
                .filter(|(k, _)| k != "authorization" && k != "host" && k != "connection")
                .cloned()
                .collect();
            record.forwarded = forwarded.clone();
            let rest_path = format!(
                "/{}{}",
                rest.join("/"),
                target
                    .split_once('?')
                    .map(|(_, q)| format!("?{q}"))
                    .unwrap_or_default()
            );
            match forward(local, &rest_path, &forwarded) {
                Some((code, ctype, body)) => (code, ctype, Value::String(body)),
                None => status(
                    503,
                    "ServiceUnavailable",
                    &format!("error trying to reach service: dial tcp 127.0.0.1:{local}: connect: connection refused"),
                ),
            }
        }
        _ => status(404, "NotFound", "the stand-in does not serve this path"),
    }
}

/// `involvedObject.uid=u,reason=Unhealthy` → [(path, value)]; None for what it does not take
/// (`!=`, a term without `=`).
fn field_selector(selector: &str) -> Option<Vec<(String, String)>> {
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (k, v) = t.split_once('=')?;
            (!k.ends_with('!')).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The string at a dotted path of a JSON object: `involvedObject.uid`.
fn field<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.').try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The query of a request target, decoded: what a test asserts the client asked.
pub fn query_of(target: &str) -> BTreeMap<String, String> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn authorized(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k == "authorization" && *v == format!("Bearer {USER_TOKEN}"))
}

/// POST and PATCH of events.k8s.io/v1 Events: kept as sent.
fn write(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    world: &Mutex<World>,
) -> (u16, String, Value) {
    if !authorized(headers) {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let Ok(sent) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let path = target.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut w = world.lock().unwrap();
    match (method, parts.as_slice()) {
        ("POST", ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"]) => {
            let name = sent["metadata"]["name"].as_str().unwrap_or("").to_string();
            let key = (ns.to_string(), name.clone());
            if name.is_empty() || w.events.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("events \"{name}\" already exists"),
                );
            }
            w.events.insert(key, sent.clone());
            (201, "application/json".into(), sent)
        }
        ("PATCH", ["apis", "events.k8s.io", "v1", "namespaces", ns, "events", name]) => {
            let key = (ns.to_string(), name.to_string());
            let Some(stored) = w.events.get(&key).cloned() else {
                return status(404, "NotFound", &format!("events \"{name}\" not found"));
            };
            w.patches.push((key, sent));
            (200, "application/json".into(), stored)
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the stand-in does not take this write",
        ),
    }
}

/// GET on a local agent; None when it does not answer.
fn forward(port: u16, path: &str, headers: &[(String, String)]) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    let lower = head.to_ascii_lowercase();
    let ctype = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-type:"))
        .unwrap_or("application/octet-stream")
        .trim()
        .to_string();
    let body = if lower.contains("transfer-encoding: chunked") {
        crate::agent::dechunk(body)
    } else {
        body.to_string()
    };
    Some((code, ctype, body))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (u32::from(c) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (civil from days, proleptic Gregorian).
pub fn rfc3339_secs(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3_600,
        sod % 3_600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_and_percent_decoding() {
        assert_eq!(super::base64(b"s3cr3t-token"), "czNjcjN0LXRva2Vu");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"a"), "YQ==");
        assert_eq!(
            super::percent_decode("spec.nodeName%3Dnode-a"),
            "spec.nodeName=node-a"
        );
        assert_eq!(super::percent_decode("a%2"), "a%2");
    }

    #[test]
    fn field_selectors_of_events() {
        let sel = super::field_selector("involvedObject.uid=u1,reason=Unhealthy").unwrap();
        assert_eq!(sel.len(), 2);
        let e = serde_json::json!({"involvedObject": {"uid": "u1"}, "reason": "Unhealthy"});
        assert!(sel
            .iter()
            .all(|(p, v)| super::field(&e, p) == Some(v.as_str())));
        assert!(super::field_selector("reason!=Unhealthy").is_none());
        assert_eq!(
            super::query_of(
                "/api/v1/namespaces/shop/events?fieldSelector=reason%3DUnhealthy&limit=50"
            )["fieldSelector"],
            "reason=Unhealthy"
        );
    }

    #[test]
    fn api_times_in_whole_seconds() {
        assert_eq!(super::rfc3339_secs(1_795_348_800), "2026-11-22T12:00:00Z");
        assert_eq!(super::rfc3339_secs(951_782_399), "2000-02-28T23:59:59Z");
    }
}
