//! API errors: JSON bodies with a stable code; never a panic or a 500 for bad input.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is malformed (bad uid, bad query parameter).
    BadRequest { code: &'static str, message: String },
    /// 404: nothing by that name.
    NotFound { code: &'static str, message: String },
    /// 401: a bearer token is configured and the request lacks it (or sends another).
    Unauthorized,
    /// 403: no token is configured and the peer is not on loopback (the API is private).
    Private,
    /// 405: the API is read-only.
    MethodNotAllowed,
    /// 503: the agent could not answer this time (stopping, or rendering failed).
    Unavailable { code: &'static str, message: String },
}

impl ApiError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message),
            Self::NotFound { code, message } => (StatusCode::NOT_FOUND, code, message),
            Self::Unavailable { code, message } => {
                (StatusCode::SERVICE_UNAVAILABLE, code, message)
            }
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs the token of the agent's --api-token-file, as `Authorization: Bearer <token>` or (through the API server's pod proxy, which drops Authorization) `X-Podlife-Token: <token>`".to_string(),
            ),
            Self::Private => (
                StatusCode::FORBIDDEN,
                "api_private",
                "pods, timelines and events carry every pod's command lines: without --api-token-file they are served only to loopback (kubectl port-forward, or curl on the node); start the agent with --api-token-file and send `Authorization: Bearer <token>`, or with --api-open to serve them to anyone on purpose".to_string(),
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the API is read-only: use GET".to_string(),
            ),
        };
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}
