//! The router in memory (tower `oneshot`): error responses found by the `http` fuzz target
//! (fuzz/regressions/http/) are JSON with a code like every other API error.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use podlife_core::{Engine, EngineConfig};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::node::clock::WallClock;
use crate::pipeline::shared::{Inner, Shared};

pub(super) fn shared() -> Arc<Shared> {
    let inner = Inner::for_tests(Engine::new(EngineConfig::default()));
    Shared::new(inner)
}

/// Status and the body's error code.
fn call(method: Method, uri: &str) -> (StatusCode, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (status, body) = rt.block_on(request(shared(), method, uri));
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{uri}: {status} body is not JSON ({e}): {body:?}"));
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    (status, code)
}

/// One request through the router, from loopback as the listener's ConnectInfo would say
/// (the private default serves it): status and body.
async fn request(s: Arc<Shared>, method: Method, uri: &str) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = super::router(s, Default::default())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, body.to_vec())
}

#[test]
fn other_methods_get_a_json_405() {
    // fuzz/regressions/http/post-405-not-json: axum's own 405 had an empty body.
    assert_eq!(
        call(Method::POST, "/pods"),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
    assert_eq!(
        call(Method::DELETE, "/pods/8f3c2a1e-1111-4a4a-9b9b-000000000001").0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn path_segments_that_are_not_utf8_get_a_json_400() {
    // fuzz/regressions/http/path-not-utf8-plain-text: axum's rejection was plain text.
    assert_eq!(
        call(Method::GET, "/pods/8f3c2a1-1%ae11144a-9b9b-0000000000a1"),
        (StatusCode::BAD_REQUEST, "invalid_uid".into())
    );
    assert_eq!(
        call(Method::GET, "/pods/%ff/timeline"),
        (StatusCode::BAD_REQUEST, "invalid_uid".into())
    );
    assert_eq!(
        call(Method::GET, "/pods/default/%c3/timeline"),
        (StatusCode::BAD_REQUEST, "invalid_name".into())
    );
}

#[test]
fn a_since_too_far_back_is_a_json_400() {
    // fuzz/regressions/api_params/since-overflow, through the router.
    assert_eq!(
        call(
            Method::GET,
            "/events?since=90988888888888888899999999999999s"
        ),
        (StatusCode::BAD_REQUEST, "invalid_since".into())
    );
    assert_eq!(
        call(
            Method::GET,
            "/events?since=2026-11-22T12:00:00%2B0%EA%91%910"
        ),
        (StatusCode::BAD_REQUEST, "invalid_since".into())
    );
}

#[test]
fn healthz_fails_with_json_when_the_reader_stops_looping() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let s = shared();
    let get = |s: Arc<Shared>| async move {
        let (status, body) = request(s, Method::GET, "/healthz").await;
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let now = WallClock::now_mono_ns();
    s.progress.reader_loop(now);
    s.progress.pipeline_loop(now);
    assert_eq!(rt.block_on(get(s.clone())).0, StatusCode::OK);
    // The reader's last loop was long ago: the agent is alive but blind.
    s.progress.reader_loop(1);
    let (status, body) = rt.block_on(get(s));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["error"]["code"], "stalled");
    assert!(body.contains("ring-buffer reader"), "{body}");
}
