//! InfluxDB's TestServer pattern: start `cxdb serve` on port 0 in a temp
//! dir, read the bound addresses from `--ports-file`, wait until `/readyz`
//! answers 200; kill on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use cxdb_proto::v1::admin_service_client::AdminServiceClient;
use cxdb_proto::v1::ingest_service_client::IngestServiceClient;
use cxdb_proto::v1::query_service_client::QueryServiceClient;
use cxdb_proto::v1::{CreateTokenRequest, CreateTokenResponse, Event, SqlRequest};
use futures::StreamExt;

pub(crate) struct TestServer {
    child: Option<Child>,
    pub(crate) grpc: String,
    /// PostgreSQL wire protocol, `host:port`.
    pub(crate) pg: String,
    pub(crate) http: String,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, &[]).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts on an existing data dir (restarts) with extra flags.
    pub(crate) async fn start_in(dir: &Path, extra: &[&str]) -> Self {
        let ports = dir.join("ports.json");
        let _ = std::fs::remove_file(&ports);
        let child = Command::new(env!("CARGO_BIN_EXE_cxdb"))
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--pg-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--ports-file")
            .arg(&ports)
            .args(["--log-filter", "warn"])
            .args(extra)
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
            grpc: format!("http://{}", addr("grpc")),
            pg: addr("pg"),
            http: format!("http://{}", addr("http")),
            _tmp: None,
        };
        let client = reqwest::Client::new();
        loop {
            let ready = client.get(format!("{}/readyz", server.http)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "cxdb did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.grpc.clone())
            .unwrap_or_else(|e| panic!("{e}"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) async fn ingest(&self) -> IngestServiceClient<tonic::transport::Channel> {
        IngestServiceClient::new(self.channel().await)
    }

    /// Runs SQL over gRPC; Err is the status.
    pub(crate) async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
        self.sql_as(None, sql).await
    }

    /// Runs SQL over gRPC presenting `token`; Err is the status.
    pub(crate) async fn sql_as(
        &self,
        token: Option<&str>,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, tonic::Status> {
        let mut client = QueryServiceClient::new(self.channel().await);
        let mut stream = client
            .sql(with_token(SqlRequest { sql: sql.into() }, token))
            .await?
            .into_inner();
        let mut ipc = Vec::new();
        while let Some(msg) = stream.next().await {
            ipc.extend_from_slice(&msg?.arrow_ipc);
        }
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
            .unwrap_or_else(|e| panic!("bad IPC: {e}"));
        Ok(reader
            .map(|b| b.unwrap_or_else(|e| panic!("{e}")))
            .collect())
    }

    /// Creates a token through `AdminService` with the bootstrap `admin`
    /// token (`--admin-token`).
    pub(crate) async fn create_token(
        &self,
        admin: &str,
        name: &str,
        role: &str,
        tenant: Option<&str>,
    ) -> CreateTokenResponse {
        AdminServiceClient::new(self.channel().await)
            .create_token(with_token(
                CreateTokenRequest {
                    name: name.into(),
                    role: role.into(),
                    tenant_id: tenant.map(str::to_string),
                },
                Some(admin),
            ))
            .await
            .unwrap_or_else(|e| panic!("create token {name}: {e}"))
            .into_inner()
    }

    /// `SELECT count(*) …` as a number.
    pub(crate) async fn count(&self, sql: &str) -> i64 {
        let batches = self.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or_else(|| panic!("{sql}: no count"))
    }

    /// SIGKILL, no goodbye.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub(crate) async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        // Poll, so this runtime keeps driving the test's client connections,
        // which the server's graceful shutdown waits for.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            assert!(Instant::now() < deadline, "cxdb did not exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `msg` with `authorization: Bearer <token>` when a token is given.
pub(crate) fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(msg);
    if let Some(t) = token {
        let value = format!("Bearer {t}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// 2026-01-01T00:00:00Z
pub(crate) const DAY0: i64 = 1_767_225_600_000_000;

pub(crate) fn event(tenant: &str, id: &str, channel: &str) -> Event {
    Event {
        tenant_id: tenant.into(),
        event_id: id.into(),
        event_time_us: DAY0 + 1_000_000,
        event_type: "conversation.created".into(),
        conversation_id: Some(format!("c-{id}")),
        channel: Some(channel.into()),
        ..Default::default()
    }
}
