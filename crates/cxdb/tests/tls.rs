//! TLS end to end: a CA and a server certificate for localhost/127.0.0.1
//! made at test time (rcgen), the real `cxdb serve --tls-cert --tls-key`,
//! and a client of each listener trusting only that CA: tonic (gRPC), reqwest
//! (HTTP), tokio-postgres over rustls (pgwire). Plain text is refused on all
//! three; a half-given configuration stops start-up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxdb_proto::v1::SqlRequest;
use cxdb_proto::v1::query_service_client::QueryServiceClient;
use futures::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// PEM files in a temp dir: `ca.pem` (the only root clients trust),
/// `cert.pem` and `key.pem` (the server's, signed by the CA).
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Pki {
    fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cxdb test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("{e}"));
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        let cert = params
            .signed_by(&key, &issuer)
            .unwrap_or_else(|e| panic!("{e}"));

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
        };
        let ca_pem = pem("CERTIFICATE", ca_cert.der());
        write("ca.pem", &ca_pem);
        write("cert.pem", &pem("CERTIFICATE", cert.der()));
        write("key.pem", &pem("PRIVATE KEY", &key.serialize_der()));
        Self { ca_pem, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// RFC 7468 text: base64 in lines of 64 between BEGIN and END.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// `cxdb serve` with TLS on port 0; killed on drop.
struct TlsServer {
    child: Option<Child>,
    grpc: String,
    pg: String,
    http: String,
    _data: tempfile::TempDir,
}

impl TlsServer {
    async fn start(pki: &Pki) -> Self {
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ports = data.path().join("ports.json");
        let child = Command::new(env!("CARGO_BIN_EXE_cxdb"))
            .args(["serve", "--grpc-addr", "127.0.0.1:0"])
            .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .arg("--ports-file")
            .arg(&ports)
            .arg("--tls-cert")
            .arg(pki.path("cert.pem"))
            .arg("--tls-key")
            .arg(pki.path("key.pem"))
            .args(["--log-filter", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cxdb: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let json = loop {
            if let Ok(text) = std::fs::read_to_string(&ports)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "cxdb did not write its ports file"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let addr = |k: &str| json[k].as_str().unwrap_or_default().to_string();
        let server = Self {
            child: Some(child),
            grpc: addr("grpc"),
            pg: addr("pg"),
            http: addr("http"),
            _data: data,
        };
        let client = https_client(pki);
        loop {
            let ready = client
                .get(format!("https://{}/readyz", server.http))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "cxdb did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// SIGTERM; the exit status once the server has shut down.
    async fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().unwrap_or_else(|| panic!("not running"));
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        wait(&mut c).await
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls until `child` exits (60 s at most, then kills it and fails).
async fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cxdb did not exit");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn https_client(pki: &Pki) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn grpc_tls_channel(pki: &Pki, addr: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .tls_config(tls)
        .unwrap_or_else(|e| panic!("{e}"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("gRPC over TLS to {addr}: {e}"))
}

/// `SELECT 1` over QueryService.Sql; the value, or the status.
async fn grpc_select_1(channel: Channel) -> Result<i64, tonic::Status> {
    let mut stream = QueryServiceClient::new(channel)
        .sql(SqlRequest {
            sql: "SELECT 1 AS one".into(),
        })
        .await?
        .into_inner();
    let mut ipc = Vec::new();
    while let Some(msg) = stream.next().await {
        ipc.extend_from_slice(&msg?.arrow_ipc);
    }
    let batch = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .unwrap_or_else(|e| panic!("bad IPC: {e}"))
        .next()
        .unwrap_or_else(|| panic!("no batch"))
        .unwrap_or_else(|e| panic!("{e}"));
    let one = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap_or_else(|| panic!("not Int64: {batch:?}"))
        .value(0);
    Ok(one)
}

fn pg_config(addr: &str, sslmode: tokio_postgres::config::SslMode) -> tokio_postgres::Config {
    let (host, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("bad pg address {addr}"));
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port.parse().unwrap_or_else(|e| panic!("{e}")))
        .user("analyst")
        .dbname("cxdb")
        .ssl_mode(sslmode);
    config
}

fn pg_tls(pki: &Pki) -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(pki.ca_pem.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    roots.add(ca).unwrap_or_else(|e| panic!("{e}"));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|e| panic!("{e}"))
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_with_one_certificate() {
    let pki = Pki::new();
    let mut server = TlsServer::start(&pki).await;

    // HTTP over TLS, verified against the CA, by IP address (the certificate
    // names 127.0.0.1 too).
    let health = https_client(&pki)
        .get(format!("https://{}/healthz", server.http))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /healthz over TLS: {e}"));
    assert_eq!(health.status(), 200);
    // Plain HTTP on the same port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.http))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    // gRPC over TLS, server name checked as "localhost".
    let channel = grpc_tls_channel(&pki, &server.grpc).await;
    assert_eq!(
        grpc_select_1(channel)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        1
    );
    // The CLI client with --ca-cert, by IP (the certificate names
    // 127.0.0.1 too); without it, https is refused with what to add.
    let port = server.grpc.rsplit_once(':').map(|(_, p)| p.to_string());
    let url = format!("https://127.0.0.1:{}", port.unwrap_or_default());
    let cli = |ca: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cxdb"));
        c.args([
            "sql",
            "--addr",
            &url,
            "--format",
            "csv",
            "-c",
            "SELECT 41 + 1 AS answer",
        ]);
        if ca {
            c.arg("--ca-cert").arg(pki.path("ca.pem"));
        }
        c.output().unwrap_or_else(|e| panic!("{e}"))
    };
    let out = cli(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "answer\n42");
    let out = cli(false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca-cert"));
    // Plain-text gRPC (h2c) on the same port fails.
    let plain = async {
        let channel = Endpoint::from_shared(format!("http://{}", server.grpc))
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        grpc_select_1(channel).await
    }
    .await;
    assert!(plain.is_err(), "plain-text gRPC answered: {plain:?}");

    // PostgreSQL: SSLRequest answered 'S', then the session runs over TLS.
    let (client, connection) = pg_config(&server.pg, tokio_postgres::config::SslMode::Require)
        .connect(pg_tls(&pki))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL over TLS to {}: {e}", server.pg));
    let connection = tokio::spawn(connection);
    let row = client
        .query_one("SELECT 1::BIGINT AS one", &[])
        .await
        .unwrap_or_else(|e| panic!("SELECT 1 over TLS: {e}"));
    assert_eq!(row.get::<_, i64>(0), 1);
    drop(client);
    let _ = connection.await;
    // A plain-text session is refused with SQLSTATE 28000.
    let plain = pg_config(&server.pg, tokio_postgres::config::SslMode::Disable)
        .connect(tokio_postgres::NoTls)
        .await;
    let e = match plain {
        Ok(_) => panic!("a plain-text PostgreSQL session was accepted"),
        Err(e) => e,
    };
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{e:?}"
    );
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("sslmode=require")),
        "{e:?}"
    );

    // Graceful shutdown still works with TLS listeners.
    let status = server.terminate().await;
    assert!(status.success(), "cxdb exited with {status}");
}

/// Runs `cxdb serve` expecting it to refuse to start; its stderr.
async fn serve_refused(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cxdb"))
        .args(["serve", "--grpc-addr", "127.0.0.1:0"])
        .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start cxdb: {e}"));
    let status = wait(&mut child).await;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    assert!(!status.success(), "cxdb {args:?} started: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_or_bad_tls_configuration_stops_start_up() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let cert = pki.path("cert.pem");
    let cert = cert.to_str().unwrap_or_else(|| panic!("path"));

    let stderr = serve_refused(dir, &["--tls-cert", cert], &[]).await;
    assert!(stderr.contains("--tls-key"), "{stderr}");

    // The same from the TOML file, whose keys are the flag names.
    let config = dir.join("cxdb.toml");
    std::fs::write(&config, format!("tls-key = {:?}\n", pki.path("key.pem")))
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = serve_refused(dir, &[], &[("CXDB_CONFIG", &config)]).await;
    assert!(stderr.contains("--tls-cert"), "{stderr}");

    // A file that is not PEM: the error names it.
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
    let garbage = garbage.to_str().unwrap_or_else(|| panic!("path"));
    let key = pki.path("key.pem");
    let key = key.to_str().unwrap_or_else(|| panic!("path"));
    let stderr = serve_refused(dir, &["--tls-cert", garbage, "--tls-key", key], &[]).await;
    assert!(stderr.contains(garbage), "{stderr}");

    // A missing key file: named too.
    let missing = dir.join("missing-key.pem");
    let missing = missing.to_str().unwrap_or_else(|| panic!("path"));
    let stderr = serve_refused(dir, &["--tls-cert", cert, "--tls-key", missing], &[]).await;
    assert!(stderr.contains(missing), "{stderr}");

    // The CA's certificate with the server's key: they do not belong together.
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap_or_else(|| panic!("path"));
    let stderr = serve_refused(dir, &["--tls-cert", ca, "--tls-key", key], &[]).await;
    assert!(stderr.contains("does not fit"), "{stderr}");
}
