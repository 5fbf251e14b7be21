//! Access per route (issue 19): every data route behind the token, or behind loopback when no
//! token is configured; /healthz, /readyz, /metrics open. Requests go through the real router
//! with tower's `oneshot`; the peer address is the `ConnectInfo` the listener would set.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use podlife_core::{Engine, EngineConfig, KernelEvent, KernelEventKind};
use serde_json::Value;
use tower::ServiceExt as _;

use super::{router, Access, ApiConfig};
use crate::pipeline::shared::{Inner, Shared};

const UID: &str = "8f3c2a1e-1111-4a4a-9b9b-000000000001";
const TOKEN: &str = "s3cr3t-token";

/// The data routes, with the status the right credentials get (one pod known, without a name).
fn data_routes() -> Vec<(String, StatusCode)> {
    vec![
        ("/pods".into(), StatusCode::OK),
        (format!("/pods/{UID}"), StatusCode::OK),
        (format!("/pods/{UID}/timeline"), StatusCode::OK),
        // The pod has no name (no bundle, no API server): by name it is unknown, as designed.
        ("/pods/default/web/timeline".into(), StatusCode::NOT_FOUND),
        ("/events".into(), StatusCode::OK),
        ("/events/stream".into(), StatusCode::OK),
    ]
}

const OPEN_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Shared state holding one pod, seen by the kernel only.
fn shared_with_pod() -> Arc<Shared> {
    let mut inner = Inner::for_tests(Engine::new(EngineConfig {
        reorder_window_ns: 0,
        ..EngineConfig::default()
    }));
    inner.on_kernel_event(KernelEvent {
        ts_ns: 1_000,
        tgid: 1,
        tid: 1,
        cgroup_id: 0,
        comm: "runc".into(),
        kind: KernelEventKind::CgroupMkdir {
            root: 0,
            id: 100,
            level: 3,
            path: format!("/kubepods/burstable/pod{UID}"),
        },
    });
    let rest = inner.engine.flush();
    inner.publish(rest);
    let s = Shared::new(inner);
    s.ready.store(true, std::sync::atomic::Ordering::Release);
    s
}

/// Status and error code (empty for a success) of GET `uri` from `peer` with `authorization`.
fn get(
    access: &Access,
    peer: [u8; 4],
    uri: &str,
    authorization: Option<&str>,
) -> (StatusCode, String) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| (header::AUTHORIZATION.as_str(), a))
        .into_iter()
        .collect();
    get_with(access, peer, uri, &headers)
}

/// The same with any request headers.
fn get_with(
    access: &Access,
    peer: [u8; 4],
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut req = Request::builder().uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let mut req = req.body(Body::empty()).expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        let config = ApiConfig {
            access: access.clone(),
            ..ApiConfig::default()
        };
        let resp = router(shared_with_pod(), config)
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // A live stream never ends: its status and type are the answer.
        if ctype.starts_with("text/event-stream") {
            assert!(status.is_success(), "{uri}: {status} stream");
            return (status, String::new());
        }
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        if status.is_success() {
            return (status, String::new());
        }
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{uri}: {status} body is not JSON ({e}): {body:?}"));
        let code = v["error"]["code"].as_str().unwrap_or("").to_string();
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            !message.is_empty(),
            "{uri}: {status} error without a message"
        );
        (status, code)
    })
}

const LOOPBACK: [u8; 4] = [127, 0, 0, 1];
const POD_NETWORK: [u8; 4] = [10, 244, 1, 7];

fn token() -> Access {
    Access::token(TOKEN).expect("a token")
}

#[test]
fn with_a_token_every_data_route_needs_it() {
    let unauthorized = (StatusCode::UNAUTHORIZED, "unauthorized".to_string());
    for (route, served) in data_routes() {
        // Loopback is no exception once a token is configured.
        for peer in [LOOPBACK, POD_NETWORK] {
            assert_eq!(
                get(&token(), peer, &route, None),
                unauthorized,
                "{route}: no header"
            );
            for wrong in [
                "Bearer wrong-token",
                "Bearer s3cr3t-toke",
                "Bearer s3cr3t-token2",
                "Basic czNjcjN0LXRva2Vu",
                "s3cr3t-token",
                "Bearer",
            ] {
                assert_eq!(
                    get(&token(), peer, &route, Some(wrong)),
                    unauthorized,
                    "{route}: {wrong}"
                );
            }
            for right in [
                "Bearer s3cr3t-token",
                "bearer s3cr3t-token",
                "BEARER  s3cr3t-token",
            ] {
                let (status, code) = get(&token(), peer, &route, Some(right));
                assert_eq!(status, served, "{route}: {right} ({code})");
                if status == StatusCode::NOT_FOUND {
                    assert_eq!(code, "unknown_pod", "{route}");
                }
            }
        }
    }
}

#[test]
fn open_routes_need_no_token_from_anywhere() {
    for access in [token(), Access::private(), Access::open()] {
        for route in OPEN_ROUTES {
            for peer in [LOOPBACK, POD_NETWORK] {
                assert_eq!(
                    get(&access, peer, route, None).0,
                    StatusCode::OK,
                    "{route} {access:?}"
                );
            }
        }
    }
}

#[test]
fn without_a_token_the_data_routes_are_private_to_loopback() {
    let private = (StatusCode::FORBIDDEN, "api_private".to_string());
    for (route, served) in data_routes() {
        assert_eq!(
            get(&Access::private(), LOOPBACK, &route, None).0,
            served,
            "{route}"
        );
        assert_eq!(
            get(&Access::private(), POD_NETWORK, &route, None),
            private,
            "{route}"
        );
        // A header does not help when no token is configured.
        assert_eq!(
            get(
                &Access::private(),
                POD_NETWORK,
                &route,
                Some("Bearer anything")
            ),
            private,
            "{route}"
        );
        assert_eq!(
            get(&Access::open(), POD_NETWORK, &route, None).0,
            served,
            "{route}"
        );
    }
}

#[test]
fn the_private_answer_says_what_to_do() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let body = rt.block_on(async {
        // No ConnectInfo at all (a listener without it): not loopback, so private.
        let req = Request::builder().uri("/pods").body(Body::empty()).unwrap();
        let resp = router(shared_with_pod(), ApiConfig::default())
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
    });
    let v: Value = serde_json::from_slice(&body).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    for hint in ["--api-token-file", "--api-open", "loopback"] {
        assert!(message.contains(hint), "{hint} missing from {message:?}");
    }
}

/// Through the API server's pod proxy (the kubectl plugin) Authorization never arrives: the
/// token in X-Podlife-Token opens the data routes, a wrong one does not, and without a
/// configured token the header opens nothing.
#[test]
fn the_token_header_that_passes_the_api_servers_proxy() {
    let unauthorized = (StatusCode::UNAUTHORIZED, "unauthorized".to_string());
    for (route, served) in data_routes() {
        let (status, code) = get_with(&token(), POD_NETWORK, &route, &[("X-Podlife-Token", TOKEN)]);
        assert_eq!(status, served, "{route} ({code})");
        for wrong in ["wrong", "Bearer s3cr3t-token", "s3cr3t-toke", ""] {
            assert_eq!(
                get_with(&token(), POD_NETWORK, &route, &[("X-Podlife-Token", wrong)]),
                unauthorized,
                "{route}: {wrong:?}"
            );
        }
        assert_eq!(
            get_with(
                &Access::private(),
                POD_NETWORK,
                &route,
                &[("X-Podlife-Token", TOKEN)]
            ),
            (StatusCode::FORBIDDEN, "api_private".to_string()),
            "{route}"
        );
    }
}
