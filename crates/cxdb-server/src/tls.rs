//! TLS for the three listeners (`--tls-cert`, `--tls-key`): one certificate
//! and key, loaded and checked once at start-up, then handed to each
//! protocol in the form it takes: a tonic `ServerTlsConfig` (gRPC and
//! Flight), an axum listener that completes TLS handshakes (HTTP), a
//! `TlsAcceptor` for pgwire, which answers `SSLRequest` with 'S' itself.
//! rustls with the ring provider; never OpenSSL.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use crate::{Error, Result};

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// PEM files of the server certificate (chain, leaf first) and its private key.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The loaded certificate and key, checked to belong together.
pub(crate) struct Tls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Tls {
    /// Reads and checks both files; every error names the file.
    pub(crate) fn load(config: &TlsConfig) -> Result<Self> {
        // tonic builds its rustls config with the process default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert_pem = read(&config.cert, "certificate")?;
        let key_pem = read(&config.key, "private key")?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(&config.cert, "certificate", &e.to_string()))?;
        if certs.is_empty() {
            return Err(invalid(
                &config.cert,
                "certificate",
                "no CERTIFICATE section found",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| invalid(&config.key, "private key", &e.to_string()))?;
        let tls = Self {
            cert_pem,
            key_pem,
            certs,
            key,
        };
        // Refuses a key that is not the certificate's, or of a kind ring cannot use.
        tls.server_config(&[]).map_err(|e| {
            Error::InvalidArgument(format!(
                "TLS: the private key {} does not fit the certificate {}: {e}",
                config.key.display(),
                config.cert.display()
            ))
        })?;
        Ok(tls)
    }

    /// For the gRPC/Flight server (tonic adds ALPN `h2`).
    pub(crate) fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// For pgwire: ALPN `postgresql`, which PostgreSQL 17's direct TLS
    /// (`sslnegotiation=direct`) requires.
    pub(crate) fn pg_acceptor(&self) -> Result<TlsAcceptor> {
        Ok(TlsAcceptor::from(self.server_config(&[b"postgresql"])?))
    }

    /// For HTTP: `listener` with TLS in front, for `axum::serve`.
    pub(crate) fn http_listener(&self, listener: TcpListener) -> Result<TlsListener> {
        let config = self.server_config(&[b"h2", b"http/1.1"])?;
        TlsListener::new(listener, TlsAcceptor::from(config)).map_err(|e| Error::Io {
            context: "local address".into(),
            source: e,
        })
    }

    fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(self.certs.clone(), self.key.clone_key())
            })
            .map_err(|e| Error::InvalidArgument(format!("TLS: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        context: format!("cannot read the TLS {what} {}", path.display()),
        source: e,
    })
}

fn invalid(path: &Path, what: &str, why: &str) -> Error {
    Error::InvalidArgument(format!(
        "the TLS {what} {} is not valid PEM: {why}",
        path.display()
    ))
}

/// A TCP listener whose connections come out of their TLS handshake, for
/// `axum::serve` (which keeps its graceful shutdown). Handshakes run in
/// their own tasks, so a slow client does not hold up the others.
pub(crate) struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, handshaken) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // Ends when axum drops the listener (shutdown).
                let (tcp, peer) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // EMFILE and the like: back off instead of spinning.
                            warn!(error = %e, "HTTP accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "HTTP TLS handshake failed"),
                        Err(_) => debug!(%peer, "HTTP TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            handshaken,
            local_addr,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accepting task holds a sender until this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// `SSLRequest`, `GSSENCRequest` and the code of `CancelRequest` (PostgreSQL
/// protocol, "Message Formats").
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const PG_GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
const PG_CANCEL_CODE: [u8; 4] = [0x04, 0xd2, 0x16, 0x2e];
/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
const PG_MAX_STARTUP: usize = 10_000;

/// With TLS configured, a PostgreSQL session must be encrypted, as on a
/// server whose `pg_hba.conf` has only `hostssl` lines: the password is a
/// bearer token. Looks at what the client sends first without consuming it
/// (pgwire then reads it): `SSLRequest` or a direct TLS handshake go on; a
/// `CancelRequest` goes on too (it carries no credentials, and libpq sends it
/// in plain text); `GSSENCRequest` is answered 'N' here; a plain-text
/// `StartupMessage` is answered with a FATAL 28000 error and the connection
/// closed. Returns whether the connection was refused.
pub(crate) async fn pg_refuse_plaintext(socket: &mut TcpStream) -> io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let decide = async {
        loop {
            let mut head = [0u8; 8];
            let n = socket.peek(&mut head).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if head[0] == 0x16 {
                return Ok(false); // direct TLS (PostgreSQL 17 `sslnegotiation=direct`)
            }
            if n < head.len() {
                // The 8 bytes of a request usually arrive in one segment.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            if head == PG_SSL_REQUEST || head[4..] == PG_CANCEL_CODE {
                return Ok(false);
            }
            if head == PG_GSSENC_REQUEST {
                socket.read_exact(&mut head).await?;
                socket.write_all(b"N").await?;
                continue;
            }
            // A StartupMessage in plain text: read it whole, so that closing
            // does not reset the connection before the client reads the error.
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if (8..=PG_MAX_STARTUP).contains(&len) {
                let mut startup = vec![0u8; len];
                socket.read_exact(&mut startup).await?;
                socket.write_all(&pg_fatal_28000()).await?;
                socket.flush().await?;
            }
            let _ = socket.shutdown().await;
            return Ok(true);
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, decide)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// ErrorResponse: FATAL, SQLSTATE 28000 (invalid_authorization_specification).
fn pg_fatal_28000() -> Vec<u8> {
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28000"),
        (
            b'M',
            "this server accepts only TLS connections: connect with sslmode=require",
        ),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    // Small and fixed: the length always fits.
    message.extend_from_slice(
        &u32::try_from(fields.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    message.extend_from_slice(&fields);
    message
}
