//! The serving loop and its bounds: nothing a client does can hold more of the agent than
//! these. Connections are capped (beyond the cap a new one is closed at once and counted),
//! request headers must arrive within `HEADER_READ`, a request is answered within `REQUEST`
//! or gets a JSON 503, at most `REQUESTS` requests run at once and at most `STREAMS` live
//! streams are open (beyond either, a JSON 429). axum's own `serve` sets no timer, so hyper's
//! header-read timeout never fired there: a client that opened connections and sent nothing
//! kept each of them for ever.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

/// The bounds, one value per deployment.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub connections: usize,
    pub requests: usize,
    pub streams: usize,
    pub header_read: Duration,
    pub request: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            connections: 1024,
            requests: 32,
            streams: 256,
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(10),
            drain: Duration::from_secs(5),
        }
    }
}

pub use crate::pipeline::metrics::Refused;

/// Shared by the middleware of every request.
#[derive(Debug, Clone)]
pub struct Limiter {
    bounds: Bounds,
    requests: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    pub refused: Arc<Refused>,
}

impl Limiter {
    pub fn new(bounds: Bounds, refused: Arc<Refused>) -> Self {
        Self {
            bounds,
            requests: Arc::new(Semaphore::new(bounds.requests)),
            streams: Arc::new(Semaphore::new(bounds.streams)),
            refused,
        }
    }

    /// A permit for one live stream, held for as long as the stream is open.
    pub fn stream_permit(&self) -> Option<OwnedSemaphorePermit> {
        let p = self.streams.clone().try_acquire_owned().ok();
        if p.is_none() {
            self.refused.streams.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(Bounds::default(), Arc::default())
    }
}

fn busy(code: &'static str, status: StatusCode, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// 429 when `REQUESTS` requests already run; 503 when one takes longer than `REQUEST`.
/// Live streams are exempt (they are bounded by their own permit and end at shutdown).
pub async fn guard(State(l): State<Limiter>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/events/stream" {
        return next.run(req).await;
    }
    let Ok(_permit) = l.requests.clone().try_acquire_owned() else {
        l.refused.requests.fetch_add(1, Ordering::Relaxed);
        return busy(
            "too_many_requests",
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} requests are running already; retry shortly",
                l.bounds.requests
            ),
        );
    };
    match tokio::time::timeout(l.bounds.request, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            l.refused.timeouts.fetch_add(1, Ordering::Relaxed);
            busy(
                "timeout",
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no answer within {:?}", l.bounds.request),
            )
        }
    }
}

/// The 429 of a stream beyond `STREAMS`.
pub fn too_many_streams(bounds: usize) -> Response {
    busy(
        "too_many_streams",
        StatusCode::TOO_MANY_REQUESTS,
        format!("{bounds} live streams are open already; use GET /events?after= to poll"),
    )
}

impl Limiter {
    pub fn stream_bound(&self) -> usize {
        self.bounds.streams
    }
}

/// Accept until `signal`, each connection on its own task under the bounds; then cancel live
/// streams (`on_shutdown`) and give requests in flight `drain` to finish.
pub async fn serve_bounded<L>(
    mut listener: L,
    app: Router,
    bounds: Bounds,
    refused: Arc<Refused>,
    signal: impl Future<Output = ()> + Send + 'static,
    on_shutdown: impl FnOnce(),
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let graceful = GracefulShutdown::new();
    accept_until(&mut listener, &app, bounds, &refused, &graceful, signal).await;
    on_shutdown();
    let _ = tokio::time::timeout(bounds.drain, graceful.shutdown()).await;
    Ok(())
}

/// Serve `app` on `listener` while `work` runs, and hand back its result and the listener:
/// the start-up answers /healthz while the programs attach and the store loads, on the socket
/// the API keeps afterwards (connections arriving in between wait in the backlog). Its
/// connections are told to close after `header_read` (a connection accepted just before the
/// hand-over still gets its request answered, not closed unread), then get `drain`.
pub async fn serve_while<L, T>(
    listener: &mut L,
    app: Router,
    bounds: Bounds,
    refused: &Arc<Refused>,
    work: impl Future<Output = T>,
) -> T
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let graceful = GracefulShutdown::new();
    let out = accept_until(listener, &app, bounds, refused, &graceful, work).await;
    tokio::spawn(async move {
        tokio::time::sleep(bounds.header_read).await;
        let _ = tokio::time::timeout(bounds.drain, graceful.shutdown()).await;
    });
    out
}

async fn accept_until<L, T>(
    listener: &mut L,
    app: &Router,
    bounds: Bounds,
    refused: &Arc<Refused>,
    graceful: &GracefulShutdown,
    until: impl Future<Output = T>,
) -> T
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let connections = Arc::new(Semaphore::new(bounds.connections));
    // Connections in accept order, to find the oldest that has not sent a request yet.
    let mut admitted: VecDeque<Arc<Conn>> = VecDeque::new();
    let mut until = std::pin::pin!(until);
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            out = &mut until => return out,
        };
        let permit = match connections.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            // At the cap, a connection that never sent a request makes room: idle sockets
            // must not lock out the kubelet's probes until their header timeout.
            Err(_) => match evict_idle(&mut admitted) {
                true => {
                    refused.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::time::timeout(EVICT_WAIT, connections.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                false => None,
            },
        };
        if admitted.len() > 2 * bounds.connections {
            admitted.retain(|c| !c.done.load(Ordering::Relaxed));
        }
        let Some(permit) = permit else {
            refused.connections.fetch_add(1, Ordering::Relaxed);
            drop(io);
            continue;
        };
        let conn_state = Arc::new(Conn::default());
        admitted.push_back(conn_state.clone());
        let seen = conn_state.clone();
        // The peer's address reaches the access check as axum's ConnectInfo would.
        let svc = app.clone().layer(Extension(ConnectInfo(addr))).map_request(
            move |r: Request<hyper::body::Incoming>| {
                seen.requested.store(true, Ordering::Relaxed);
                r.map(axum::body::Body::new)
            },
        );
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(bounds.header_read);
        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                () = conn_state.evict.cancelled() => {}
            }
            conn_state.done.store(true, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// How long a new connection waits for the slot of an evicted idle one.
const EVICT_WAIT: Duration = Duration::from_secs(1);

/// One served connection, as the accept loop sees it.
#[derive(Default)]
struct Conn {
    /// It has sent a request (a stream, a keep-alive client): never evicted.
    requested: AtomicBool,
    done: AtomicBool,
    evict: tokio_util::sync::CancellationToken,
}

/// Close the oldest connection that has sent no request; false when there is none. Entries
/// passed over (served or gone) leave the queue.
fn evict_idle(admitted: &mut VecDeque<Arc<Conn>>) -> bool {
    while let Some(c) = admitted.pop_front() {
        if !c.requested.load(Ordering::Relaxed) && !c.done.load(Ordering::Relaxed) {
            c.evict.cancel();
            return true;
        }
    }
    false
}
