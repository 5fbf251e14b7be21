//! Who may read the data routes (pods, timelines, events): they carry every pod's argv, so they
//! are private by default. With a token file, a request needs `Authorization: Bearer <token>`;
//! without one, only loopback peers (`kubectl port-forward`, a shell on the node) are served,
//! unless the operator opts out with `--api-open`. /metrics, /healthz and /readyz stay open.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use thiserror::Error;

use super::ApiError;

/// The access policy of the data routes.
#[derive(Clone, Default)]
pub struct Access {
    /// Required bearer token (never empty).
    token: Option<Arc<[u8]>>,
    /// Serve every peer without a token (`--api-open`).
    open: bool,
}

/// Never prints the token: a policy may end up in a log line or a test failure.
impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("open", &self.open)
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum AccessError {
    #[error("reading --api-token-file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--api-token-file {path} is empty: write a token into it (e.g. `head -c 32 /dev/urandom | base64`), or drop the flag")]
    Empty { path: PathBuf },
    #[error("--api-open and --api-token-file contradict each other: drop one (the token protects the data routes; --api-open serves them to anyone)")]
    Both,
}

impl Access {
    /// Loopback peers only (the default).
    pub fn private() -> Self {
        Self::default()
    }

    /// Every peer, no token: the operator's explicit choice.
    pub fn open() -> Self {
        Self {
            token: None,
            open: true,
        }
    }

    /// A bearer token on every data route. The token is trimmed; an empty one is refused.
    pub fn token(token: &str) -> Option<Self> {
        let t = token.trim();
        (!t.is_empty()).then(|| Self {
            token: Some(Arc::from(t.as_bytes())),
            open: false,
        })
    }

    /// From the flags: the token file (read and trimmed now), `--api-open`.
    pub fn from_flags(token_file: Option<&Path>, open: bool) -> Result<Self, AccessError> {
        match (token_file, open) {
            (Some(_), true) => Err(AccessError::Both),
            (None, true) => Ok(Self::open()),
            (None, false) => Ok(Self::private()),
            (Some(path), false) => {
                let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::token(&text).ok_or_else(|| AccessError::Empty {
                    path: path.to_path_buf(),
                })
            }
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether a request from `peer` (None: not known) with these headers may read: the token as
    /// `Authorization: Bearer <token>`, or as `X-Podlife-Token: <token>` (what passes the API
    /// server's pod proxy, which deletes Authorization once it has authenticated the caller).
    fn allows(
        &self,
        peer: Option<IpAddr>,
        authorization: Option<&[u8]>,
        podlife_token: Option<&[u8]>,
    ) -> Result<(), ApiError> {
        if let Some(token) = &self.token {
            return match authorization.and_then(bearer).or(podlife_token) {
                Some(given) if ct_eq(given, token) => Ok(()),
                _ => Err(ApiError::Unauthorized),
            };
        }
        if self.open || peer.is_some_and(is_loopback) {
            Ok(())
        } else {
            Err(ApiError::Private)
        }
    }
}

/// The token header that survives `kubectl get --raw …/pods/<agent>:9090/proxy/…` and the
/// kubectl plugin's requests.
pub const TOKEN_HEADER: &str = "x-podlife-token";

/// The credentials of `Bearer <token>`: the scheme in any case (RFC 7235), one space or more.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    Some(&rest[start..])
}

/// Equality that reads every byte of `given` whatever it holds, so the time taken does not
/// tell how many leading bytes of the secret `expected` were right. It depends only on the
/// length of `given`, which the client chose. Generic so a test can count the bytes read.
pub fn ct_eq<T: Copy + Into<u32>>(given: &[T], expected: &[T]) -> bool {
    if expected.is_empty() {
        return given.is_empty();
    }
    let mut diff = u32::from(given.len() != expected.len());
    for (i, &g) in given.iter().enumerate() {
        diff |= g.into() ^ expected[i % expected.len()].into();
    }
    std::hint::black_box(diff) == 0
}

/// 127.0.0.0/8 and ::1, also as an IPv4-mapped address (a dual-stack `[::]` listener).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Middleware on the data routes. The peer comes from `ConnectInfo`, which the listener sets
/// (`into_make_service_with_connect_info`); a request without it is not loopback.
pub async fn guard(State(access): State<Access>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let headers = req.headers();
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let podlife_token = headers.get(TOKEN_HEADER).map(|v| v.as_bytes());
    match access.allows(peer, authorization, podlife_token) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Write as _;

    thread_local!(static READS: Cell<usize> = const { Cell::new(0) });

    /// A byte that counts how often the comparison reads it.
    #[derive(Clone, Copy)]
    struct Counted(u8);
    impl From<Counted> for u32 {
        fn from(c: Counted) -> u32 {
            READS.with(|r| r.set(r.get() + 1));
            u32::from(c.0)
        }
    }

    #[test]
    fn ct_eq_reads_every_byte_even_when_the_first_differs() {
        // Catches `given == expected` or an early `break`/`return` on the first difference:
        // both read fewer bytes than the token has.
        let expected: Vec<Counted> = b"s3cr3t-token".iter().map(|&b| Counted(b)).collect();
        let wrong_first: Vec<Counted> = b"X3cr3t-token".iter().map(|&b| Counted(b)).collect();
        READS.with(|r| r.set(0));
        assert!(!ct_eq(&wrong_first, &expected));
        assert_eq!(
            READS.with(Cell::get),
            2 * expected.len(),
            "every byte of both sides is read"
        );
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abd", b"abc"));
        assert!(!ct_eq(b"ab", b"abc"), "a prefix is not the token");
        assert!(!ct_eq(b"abcabc", b"abc"), "nor a repetition of it");
        assert!(!ct_eq(b"", b"abc"));
        assert!(ct_eq::<u8>(b"", b""));
    }

    #[test]
    fn bearer_scheme_in_any_case_with_one_space_or_more() {
        // The old code matched the literal prefix "Bearer " only.
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearer   abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer"), None);
    }

    #[test]
    fn debug_output_hides_the_token() {
        let shown = format!("{:?}", Access::token("s3cr3t").unwrap());
        assert!(
            !shown.contains("s3cr3t") && shown.contains("<set>"),
            "{shown}"
        );
    }

    #[test]
    fn loopback_peers() {
        for ip in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "0.0.0.0", "::", "::ffff:10.0.0.1", "fe80::1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    fn token_file(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("podlife-token-{name}-{}", std::process::id()));
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    }

    #[test]
    fn an_empty_token_file_is_refused_and_contents_are_trimmed() {
        // The old code accepted "" (or "\n") as the token: nobody could read the API.
        for (name, text) in [("empty", ""), ("blank", " \n\t\n")] {
            let p = token_file(name, text);
            let err = Access::from_flags(Some(&p), false).unwrap_err();
            assert!(matches!(err, AccessError::Empty { .. }), "{name}: {err}");
            assert!(err.to_string().contains("is empty"), "{err}");
            std::fs::remove_file(p).unwrap();
        }
        let p = token_file("trimmed", "  s3cr3t\n");
        let a = Access::from_flags(Some(&p), false).unwrap();
        std::fs::remove_file(p).unwrap();
        assert!(a.allows(None, Some(b"Bearer s3cr3t"), None).is_ok());
        assert!(a.allows(None, Some(b"Bearer   s3cr3t\n"), None).is_err());
        let missing = std::env::temp_dir().join("podlife-token-does-not-exist");
        assert!(matches!(
            Access::from_flags(Some(&missing), false),
            Err(AccessError::Read { .. })
        ));
        assert!(matches!(
            Access::from_flags(Some(&missing), true),
            Err(AccessError::Both)
        ));
    }
}
