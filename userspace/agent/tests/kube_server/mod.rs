//! A protocol-level stand-in for the Kubernetes API server, for the pod list+watch only: not a
//! real kube-apiserver (none is installable on the project's machines). It answers
//! `GET /api/v1/pods` as the API server does: a PodList with its resourceVersion, and with
//! `watch=true` a chunked stream of `{"type": ADDED|MODIFIED|DELETED, "object": Pod}` lines
//! that stays open. It records every request (path, query, Authorization) so tests can check
//! what the client asked for, and can refuse with a 403 Status like RBAC does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct Request {
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    forbidden: bool,
    items: Vec<Value>,
    resource_version: u64,
    requests: Vec<Request>,
    watchers: Vec<mpsc::UnboundedSender<Bytes>>,
}

#[derive(Clone, Default)]
pub struct FakeApiServer {
    inner: Arc<Mutex<Inner>>,
}

impl FakeApiServer {
    /// Serve on a free loopback port; returns the base URL.
    pub async fn start(&self) -> String {
        let app = Router::new()
            .route("/api/v1/pods", get(pods))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the fake API server");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn set_forbidden(&self, on: bool) {
        self.lock().forbidden = on;
    }

    /// Pods the next list returns.
    pub fn set_items(&self, items: Vec<Value>) {
        self.lock().items = items;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Open watch streams.
    pub fn watchers(&self) -> usize {
        let mut s = self.lock();
        s.watchers.retain(|w| !w.is_closed());
        s.watchers.len()
    }

    /// Send a watch event to every open watch, with the next resourceVersion on the object.
    pub fn send(&self, kind: &str, mut object: Value) {
        let mut s = self.lock();
        s.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
        line.push(b'\n');
        let line = Bytes::from(line);
        s.watchers.retain(|w| w.send(line.clone()).is_ok());
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": {"kind": "pods"}, "code": code.as_u16()
    });
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn pods(
    State(server): State<FakeApiServer>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = server.lock();
    s.requests.push(Request {
        query: query.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    if s.forbidden {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "pods is forbidden: User \"system:serviceaccount:podlife:podlife\" cannot list resource \"pods\" in API group \"\" at the cluster scope",
        );
    }
    if query.get("watch").map(String::as_str) != Some("true") {
        s.resource_version += 1;
        let list = json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": s.resource_version.to_string()},
            "items": s.items,
        });
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            list.to_string(),
        )
            .into_response();
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    s.watchers.push(tx);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A kubeconfig for `server` with a bearer token.
pub fn kubeconfig(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster:
      server: {server}
contexts:
  - name: fake
    context: {{cluster: fake, user: podlife}}
current-context: fake
users:
  - name: podlife
    user:
      token: {token}
"
    )
}
