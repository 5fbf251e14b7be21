//! Optional TLS on the listener (`--tls-cert-file`, `--tls-key-file`): the bearer token and the
//! command lines in answers do not cross the pod network in clear. rustls with ring (already
//! built for the API server client). The files are read at start (bad ones stop the agent) and
//! re-read at most every 10 s while clients connect: a renewed certificate (cert-manager
//! rewriting a mounted Secret) is served without a restart; a bad renewal keeps the old one.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the files are compared with what is being served.
const RELOAD_CHECK: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("--tls-cert-file {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("--tls-key-file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error(
        "the certificate of --tls-cert-file and the key of --tls-key-file do not go together: {0}"
    )]
    Pair(String),
}

/// The server's TLS settings from PEM files (a certificate chain, one private key).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate and key files and what was last loaded from them.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    loaded: (Vec<u8>, Vec<u8>),
    config: Arc<ServerConfig>,
    checked: std::time::Instant,
    every: Duration,
}

impl Tls {
    /// Load both files now: an error here stops the agent with the flag named.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let loaded = (
            std::fs::read(cert).unwrap_or_default(),
            std::fs::read(key).unwrap_or_default(),
        );
        Ok(Self {
            config: server_config(cert, key)?,
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded,
            checked: std::time::Instant::now(),
            every: RELOAD_CHECK,
        })
    }

    /// The configuration for the next handshake: reloaded when the files changed.
    fn current(&mut self) -> Arc<ServerConfig> {
        if self.checked.elapsed() >= self.every {
            self.checked = std::time::Instant::now();
            let now = (
                std::fs::read(&self.cert).unwrap_or_default(),
                std::fs::read(&self.key).unwrap_or_default(),
            );
            if now != self.loaded {
                // Remembered even when bad, so a broken renewal is reported once.
                self.loaded = now;
                match server_config(&self.cert, &self.key) {
                    Ok(c) => {
                        tracing::info!("TLS certificate reloaded from {}", self.cert.display());
                        self.config = c;
                    }
                    Err(e) => tracing::warn!("{e}; still serving the previous certificate"),
                }
            }
        }
        self.config.clone()
    }
}

/// A listener that hands axum finished TLS connections. Handshakes run in their own tasks with
/// a deadline, so a client that stalls in its handshake does not hold up the others.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, mut tls: Tls) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => return,
                    a = tcp.accept() => a,
                };
                let (sock, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of fds and the like: wait a little, as axum's own listener does.
                        tracing::debug!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (TlsAcceptor::from(tls.current()), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer}: timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only stops when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    async fn tls_get(addr: SocketAddr, path: &str) -> String {
        tls_get_trusting(addr, path, "ca.pem")
            .await
            .expect("handshake")
    }

    /// The answer, or the handshake's error when the server's certificate is not from `ca`.
    async fn tls_get_trusting(addr: SocketAddr, path: &str, ca: &str) -> io::Result<String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(fixture(ca)).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[tokio::test]
    async fn serves_https_with_the_peer_address() {
        let tls = Tls::load(&fixture("cert.pem"), &fixture("key.pem")).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = TlsListener::new(tcp, tls).unwrap();
        let (stop, signal) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(super::super::serve_on(
            listener,
            super::super::tests::shared(),
            super::super::Access::private(),
            async {
                let _ = signal.await;
            },
        ));
        // A stalled handshake does not block the next client.
        let _stalled = TcpStream::connect(addr).await.unwrap();
        assert!(tls_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        // The data routes see a loopback peer through TLS too (private default).
        let pods = tls_get(addr, "/pods").await;
        assert!(pods.starts_with("HTTP/1.1 200"), "{pods}");
        // Plain HTTP on the TLS port gets no HTTP answer.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut out)).await;
        assert!(!out.starts_with(b"HTTP/1.1 200"), "{out:?}");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("shutdown")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_without_a_restart() {
        let dir = std::env::temp_dir().join(format!("podlife-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::copy(fixture("cert.pem"), &cert).unwrap();
        std::fs::copy(fixture("key.pem"), &key).unwrap();
        let mut tls = Tls::load(&cert, &key).unwrap();
        tls.every = Duration::ZERO;
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = TlsListener::new(tcp, tls).unwrap();
        let server = tokio::spawn(super::super::serve_on(
            listener,
            super::super::tests::shared(),
            super::super::Access::private(),
            std::future::pending(),
        ));
        assert!(tls_get_trusting(addr, "/healthz", "ca.pem").await.is_ok());
        assert!(tls_get_trusting(addr, "/healthz", "ca2.pem").await.is_err());
        // A broken renewal (half written) keeps the certificate being served.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        assert!(tls_get_trusting(addr, "/healthz", "ca.pem").await.is_ok());
        // The renewed pair is presented from the next connection on.
        std::fs::copy(fixture("cert2.pem"), &cert).unwrap();
        std::fs::copy(fixture("key2.pem"), &key).unwrap();
        let renewed = tls_get_trusting(addr, "/healthz", "ca2.pem").await;
        assert!(renewed.unwrap().starts_with("HTTP/1.1 200"));
        assert!(tls_get_trusting(addr, "/healthz", "ca.pem").await.is_err());
        server.abort();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_files_are_refused_with_the_flag_named() {
        let empty = std::env::temp_dir().join(format!("podlife-tls-empty-{}", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let e = server_config(&empty, &fixture("key.pem")).unwrap_err();
        assert!(e.to_string().contains("--tls-cert-file"), "{e}");
        let e = server_config(&fixture("cert.pem"), &empty).unwrap_err();
        assert!(e.to_string().contains("--tls-key-file"), "{e}");
        std::fs::remove_file(empty).unwrap();
        // The key file given as certificate: no certificate in it.
        let e = server_config(&fixture("key.pem"), &fixture("key.pem")).unwrap_err();
        assert!(e.to_string().contains("--tls-cert-file"), "{e}");
    }
}
