//! The agent's real axum router, in memory, with arbitrary request lines, query strings and
//! headers against a state holding the four recorded pods. Never a panic and never a 5xx;
//! every 4xx is a JSON body with an error code; every JSON 2xx body is valid JSON.
//!
//! Input: a text request, first line `<METHOD> <target>`, then `Name: value` header lines;
//! a line `!token` sends it to an agent started with `--api-token-file`; a line `!remote` sends
//! it from a pod-network peer instead of loopback (without a token: 403 api_private).
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use podlife::node::cgroupfs::CgroupMounts;
use podlife::node::clock::WallClock;
use podlife::pipeline::metrics::Metrics;
use podlife::pipeline::shared::{Inner, Shared};
use podlife::serve::http::{Access, ApiConfig};
use podlife_core::{Engine, EngineConfig};
use podlife_fuzz::fixtures;
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token";

/// An agent state after the recorded scenarios, as the reader would have built it.
fn app(token: Option<&str>) -> Router {
    let mut inner = Inner::new(
        Engine::new(EngineConfig::default()),
        Metrics::new("fuzz"),
        WallClock {
            offset_ns: 1_700_000_000_000_000_000,
        },
        None,
        Some("fuzz-node".into()),
        Vec::new(),
        CgroupMounts::default(),
    );
    for events in fixtures() {
        for e in events {
            inner.on_kernel_event(e.clone());
        }
    }
    let rest = inner.engine.flush();
    inner.publish(rest);
    assert!(
        !inner.engine.pod_uids().is_empty(),
        "the fixtures made no pods"
    );
    let shared = Shared::new(inner);
    shared
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    let access = token.map_or_else(Access::private, |t| Access::token(t).expect("a token"));
    podlife::serve::http::router(
        shared,
        ApiConfig {
            access,
            ..ApiConfig::default()
        },
    )
}

struct World {
    rt: tokio::runtime::Runtime,
    tokenless: Router,
    guarded: Router,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| World {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
        tokenless: app(None),
        guarded: app(Some(TOKEN)),
    })
}

/// The request the text describes, or None where hyper would refuse it before any routing.
fn request(text: &str) -> Option<(Request<Body>, bool)> {
    let mut lines = text.split('\n');
    let (method, target) = lines.next()?.split_once(' ')?;
    // hyper hands the router origin-form targets (`/path?query`).
    if !target.starts_with('/') {
        return None;
    }
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(target);
    let mut guarded = false;
    let mut peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    for line in lines {
        if line == "!token" {
            guarded = true;
            continue;
        }
        if line == "!remote" {
            peer = SocketAddr::from(([10, 244, 1, 7], 40000));
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim().as_bytes()),
        ) else {
            continue;
        };
        b = b.header(name, value);
    }
    let mut req = b.body(Body::empty()).ok()?;
    // What the listener's ConnectInfo would say about the peer.
    req.extensions_mut().insert(ConnectInfo(peer));
    Some((req, guarded))
}

async fn check(req: Request<Body>, app: Router) {
    let shown = format!("{} {}", req.method(), req.uri());
    let head = req.method() == Method::HEAD;
    let resp: Response<Body> = app.oneshot(req).await.expect("the router is infallible");
    let status = resp.status();
    assert!(!status.is_server_error(), "{shown}: {status}");
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // The event stream never ends; HEAD has no body.
    if ctype.starts_with("text/event-stream") || head {
        return;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap_or_else(|e| panic!("{shown}: body: {e}"));
    let json = ctype.starts_with("application/json");
    if status.is_client_error() {
        assert!(
            json,
            "{shown}: {status} with content type {ctype:?}: {body:?}"
        );
    }
    if json {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{shown}: {status} body is not JSON ({e}): {body:?}"));
        if status.is_client_error() {
            let code = v["error"]["code"].as_str().unwrap_or("");
            assert!(
                !code.is_empty(),
                "{shown}: {status} without an error code: {v}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((req, guarded)) = request(text) else {
        return;
    };
    let w = world();
    let app = if guarded { &w.guarded } else { &w.tokenless };
    w.rt.block_on(check(req, app.clone()));
});
