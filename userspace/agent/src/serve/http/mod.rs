//! The read-only HTTP API (axum): pods, timelines, events (also live, as SSE), metrics, health.

pub mod access;
#[cfg(test)]
mod auth_tests;
mod error;
pub mod limits;
#[cfg(test)]
mod limits_tests;
pub mod params;
#[cfg(test)]
mod shutdown_tests;
mod stream;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use access::Access;
pub use error::ApiError;

use crate::node::clock::WallClock;
use crate::pipeline::shared::{PodFilter, Shared};

type Q = Query<HashMap<String, String>>;

/// How the API is served besides the shared state.
#[derive(Clone, Debug, Default)]
pub struct ApiConfig {
    /// Who may read the data routes (default: loopback peers only).
    pub access: Access,
    /// Cancelled when the server shuts down: live streams end, so graceful shutdown does not
    /// wait for clients that never hang up.
    pub shutdown: CancellationToken,
    /// Caps on concurrent requests and live streams, and the request timeout.
    pub limiter: limits::Limiter,
}

/// Serve on `listener` until `signal`, then end live streams and drain the other requests.
/// Peers' addresses reach the access check through `ConnectInfo`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    access: Access,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, shared, access, signal).await
}

/// The same over TLS (`--tls-cert-file`, `--tls-key-file`).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: tls::Tls,
    shared: Arc<Shared>,
    access: Access,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(
        tls::TlsListener::new(listener, tls)?,
        shared,
        access,
        signal,
    )
    .await
}

/// Serve the API (plain or TLS listener) until `signal`.
pub async fn serve_on<L>(
    listener: L,
    shared: Arc<Shared>,
    access: Access,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let shutdown = CancellationToken::new();
    let bounds = limits::Bounds::default();
    let refused = shared.http_refused.clone();
    let app = router(
        shared,
        ApiConfig {
            access,
            shutdown: shutdown.clone(),
            limiter: limits::Limiter::new(bounds, refused.clone()),
        },
    );
    limits::serve_bounded(listener, app, bounds, refused, signal, move || {
        shutdown.cancel()
    })
    .await
}

/// What the agent answers while it attaches its programs and loads its store, on the socket the
/// API keeps afterwards: alive (/healthz 200), not ready (/readyz 503), everything else a JSON
/// 503. A kubelet probing liveness does not kill an agent that is still loading a big store.
pub async fn while_starting<L, T>(
    listener: &mut L,
    refused: &Arc<limits::Refused>,
    work: impl Future<Output = T>,
) -> T
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: starting (attaching programs, loading the history store)\n",
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": {
                    "code": "starting",
                    "message": "the agent is starting (attaching programs, loading the history store); retry when /readyz says ready",
                }})),
            )
        });
    limits::serve_while(listener, app, limits::Bounds::default(), refused, work).await
}

pub fn router(shared: Arc<Shared>, config: ApiConfig) -> Router {
    let api = Router::new()
        .route("/pods", get(pods))
        .route("/pods/{uid}", get(pod))
        .route("/pods/{uid}/timeline", get(timeline))
        .route("/pods/{namespace}/{name}/timeline", get(timeline_by_name))
        .route("/events", get(events))
        .route("/events/stream", get(stream::stream))
        .layer(axum::Extension(config.shutdown))
        .layer(axum::Extension(config.limiter.clone()))
        .route_layer(middleware::from_fn_with_state(config.access, access::guard));
    Router::new()
        .merge(api)
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            ApiError::not_found(
                "no_route",
                "no such endpoint; see GET /pods, /pods/<uid>/timeline, /events, /metrics",
            )
        })
        // After every route: it applies to the routes registered before it. axum's own 405
        // has an empty body; the API promises JSON errors with a code.
        .method_not_allowed_fallback(|| async {
            ([(header::ALLOW, "GET,HEAD")], ApiError::MethodNotAllowed)
        })
        .layer(middleware::from_fn_with_state(
            config.limiter,
            limits::guard,
        ))
        .with_state(shared)
}

/// Only the parameters an endpoint knows are accepted: a typo is a 400, not a silent default.
fn check_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad(
            "unknown_parameter",
            format!("unknown query parameter {k:?}; this endpoint accepts {allowed:?}"),
        )),
        None => Ok(()),
    }
}

/// A path segment axum cannot hand over (percent-encoded bytes that are not UTF-8) is a 400
/// with a code like any other bad parameter, not axum's plain-text rejection.
fn path<T>(p: Result<Path<T>, PathRejection>, code: &'static str) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad(code, e.body_text()))
}

async fn pods(State(s): State<Arc<Shared>>, Query(q): Q) -> Result<Json<Value>, ApiError> {
    check_params(&q, &["namespace", "phase", "state"])?;
    let namespace = q
        .get("namespace")
        .map(|n| params::k8s_name("namespace", n))
        .transpose()?;
    let state = q.get("state").or(q.get("phase")).cloned();
    let filter = PodFilter { namespace, state };
    Ok(Json(s.lock().pods_json(&filter)))
}

async fn pod(
    State(s): State<Arc<Shared>>,
    uid: Result<Path<String>, PathRejection>,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    check_params(&q, &[])?;
    let uid = params::uid(&path(uid, "invalid_uid")?)?;
    s.lock()
        .pod_json(&uid)
        .map(Json)
        .ok_or_else(|| unknown_pod(&uid))
}

fn unknown_pod(uid: &str) -> ApiError {
    ApiError::not_found(
        "unknown_pod",
        format!("no pod with uid {uid} on this node (GET /pods lists them)"),
    )
}

fn render_timeline(
    s: &Shared,
    uid: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    check_params(q, &["format"])?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let text = params::wants_text(q.get("format").map(String::as_str), accept)?;
    // Handles and the summary are taken under the lock; sorting and rendering after it.
    let snapshot = s
        .lock()
        .timeline_snapshot(uid)
        .ok_or_else(|| unknown_pod(uid))?;
    if text {
        let body = snapshot.text();
        Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
    } else {
        Ok(Json(snapshot.json()).into_response())
    }
}

async fn timeline(
    State(s): State<Arc<Shared>>,
    uid: Result<Path<String>, PathRejection>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uid = params::uid(&path(uid, "invalid_uid")?)?;
    render_timeline(&s, &uid, &q, &headers)
}

async fn timeline_by_name(
    State(s): State<Arc<Shared>>,
    names: Result<Path<(String, String)>, PathRejection>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (namespace, name) = path(names, "invalid_name")?;
    let namespace = params::k8s_name("namespace", &namespace)?;
    let name = params::k8s_name("pod name", &name)?;
    let uid = s.lock().find_uid(&namespace, &name).ok_or_else(|| {
        ApiError::not_found(
            "unknown_pod",
            format!("no pod {namespace}/{name} on this node"),
        )
    })?;
    render_timeline(&s, &uid, &q, &headers)
}

/// Bytes of events in one `/events` answer at most (the page's `more` says what is left).
const EVENTS_PAGE_BYTES: usize = 4 << 20;

/// `/events` pages rendered at the same time at most: a page's buffer (up to
/// EVENTS_PAGE_BYTES) is the largest allocation an HTTP client can cause, so this bounds what
/// many clients together can add to the agent's memory. Others wait their turn (within the
/// request timeout).
static PAGE_RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

async fn events(State(s): State<Arc<Shared>>, Query(q): Q) -> Result<Response, ApiError> {
    check_params(&q, &["since", "limit", "uid", "after"])?;
    let since = match q.get("since") {
        Some(v) => params::since(v, WallClock::now_wall_ns())?,
        None => i128::MIN,
    };
    let limit = match q.get("limit") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100_000).contains(l))
            .ok_or_else(|| {
                ApiError::bad("invalid_limit", format!("limit={v:?}: expected 1..=100000"))
            })?,
        None => 1000,
    };
    let after = match q.get("after") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad(
                "invalid_after",
                format!("after={v:?}: expected an event id (the `next` of an earlier page)"),
            )
        })?),
        None => None,
    };
    let uid = q.get("uid").map(|u| params::uid(u)).transpose()?;
    let query = crate::pipeline::history::EventQuery {
        since_wall_ns: since,
        uid: uid.as_deref(),
        after,
        limit,
    };
    let _turn = PAGE_RENDERS
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting_down", "the agent is stopping"))?;
    // Only handles are taken under the lock; rendering happens after it, on a blocking
    // thread: a 4 MiB page takes tens of ms, which would hold up a runtime worker.
    let (picked, expired) = {
        let inner = s.lock();
        let expired = after.filter(|&a| inner.history.expired_after(a));
        (inner.history.select(&query), expired)
    };
    let cursor = after.is_some();
    let body = tokio::task::spawn_blocking(move || {
        crate::serve::views::events_page(&picked, cursor, limit, EVENTS_PAGE_BYTES, expired)
    })
    .await
    .map_err(|e| ApiError::unavailable("render_failed", format!("rendering the page: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let snapshot = {
        let inner = s.lock();
        let r = &s.http_refused;
        for (reason, n) in [
            ("connections", &r.connections),
            ("requests", &r.requests),
            ("streams", &r.streams),
            ("timeouts", &r.timeouts),
        ] {
            let c = inner.metrics.http_refused.with_label_values(&[reason]);
            c.inc_by(n.load(Ordering::Relaxed).saturating_sub(c.get()));
        }
        inner.metrics.snapshot()
    };
    // Encoded after the lock (~10 ms for 11k series), on a blocking thread.
    let body = tokio::task::spawn_blocking(move || snapshot.encode())
        .await
        .map_err(|e| {
            ApiError::unavailable("render_failed", format!("encoding the metrics: {e}"))
        })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// Fails (503, JSON) when the reader or the pipeline has stopped looping: see progress.rs.
async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    match s.progress.stalled(WallClock::now_mono_ns()) {
        None => "ok\n".into_response(),
        Some((task, idle_ns)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {
                "code": "stalled",
                "message": format!(
                    "the {task} has made no progress for {:.1} s",
                    idle_ns as f64 / 1e9
                ),
            }})),
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: attaching, bootstrapping or first ring-buffer read pending\n",
        )
    }
}
