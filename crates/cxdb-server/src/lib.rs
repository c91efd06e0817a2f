//! The cxdb server: every protocol is a thin layer over one storage engine
//! and one [`QueryExecutor`](cxdb_query::QueryExecutor).
//!
//! ```text
//!  gRPC IngestService ─┐                                   ┌─ gRPC QueryService (Arrow IPC)
//!  Flight DoPut ───────┼─► cxdb-storage (validate, dedup,  ├─ PostgreSQL wire (one session
//!  HTTP NDJSON ────────┘    WAL, buffer, Parquet lake) ◄───┤   per connection; Flight SQL: next)
//!                                                          └─ cxdb-query (DataFusion)
//!  AdminService, /metrics, /healthz, /readyz
//! ```
//!
//! Start-up: bind every listener (so port 0 resolves and `--ports-file` is
//! written at once), serve `/healthz` and `/readyz` (503 until ready), replay
//! the WAL, then serve everything. Shutdown: stop accepting, finish requests
//! in flight (open PostgreSQL sessions are closed, like `pg_ctl stop -m
//! fast`), persist the write buffer, exit.

mod auth;
mod convert;
mod error;
mod flight;
mod grpc;
mod http;
mod limits;
mod metrics;
mod pgwire;
mod tls;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use cxdb_proto::v1::admin_service_server::AdminServiceServer;
use cxdb_proto::v1::query_service_server::QueryServiceServer;
use cxdb_query::{Principal, QueryEngine, QueryLimits, SharedExecutor};
use cxdb_storage::{Storage, StorageConfig, WriteOptions};
use tokio::net::TcpListener;
use tracing::info;

use crate::auth::Action;

pub use auth::{AuthConfig, AuthMode};
pub use convert::event_to_proto;
pub use error::{Error, ErrorKind, Result};
pub use metrics::Metrics;
pub use tls::TlsConfig;

/// Everything `cxdb serve` configures.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub grpc_addr: SocketAddr,
    /// PostgreSQL wire protocol.
    pub pg_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub storage: StorageConfig,
    /// Largest request body / gRPC message accepted.
    pub max_request_bytes: usize,
    /// Most events accepted in one request (one gRPC message, HTTP body or
    /// Flight batch).
    pub max_rows_per_request: usize,
    /// Where to write `{"grpc": "...", "pg": "...", "http": "..."}` once bound.
    pub ports_file: Option<PathBuf>,
    /// `--views-dir`: `*.sql` files of `CREATE VIEW`, installed at start.
    pub views_dir: Option<PathBuf>,
    /// `--auth` and `--admin-token`.
    pub auth: AuthConfig,
    /// One certificate for all three listeners; `None`: plain text.
    pub tls: Option<TlsConfig>,
    /// Memory, time, result rows and concurrency of queries, on every
    /// protocol.
    pub query_limits: QueryLimits,
    /// Events per second each token may write; `None`: unlimited.
    pub max_events_per_second: Option<u32>,
    /// `--export-dir`: where `COPY … TO 'file'` may write (a local directory
    /// or an object store URL prefix); `None`: COPY to a file is refused.
    pub export_dir: Option<String>,
}

/// Shared by every protocol.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) storage: Arc<Storage>,
    pub(crate) executor: SharedExecutor,
    /// Builds the per-connection sessions of stateful protocols (pgwire).
    pub(crate) engine: QueryEngine,
    pub(crate) metrics: Metrics,
    pub(crate) max_rows_per_request: usize,
    pub(crate) auth: auth::Auth,
    /// `--max-events-per-second`, by token.
    pub(crate) rate_limiter: limits::RateLimiter,
}

impl AppState {
    /// The one authentication point of every protocol: a bearer token (gRPC
    /// `authorization` metadata, HTTP header, pgwire password, Flight SQL
    /// credentials) becomes the principal requests run as; a tenant-scoped
    /// principal sees and writes only its tenant. See [`auth`].
    pub(crate) fn authenticate(&self, token: Option<&str>) -> Result<Principal> {
        self.auth.authenticate(&self.storage.manifest(), token)
    }

    /// Re-checks a principal of a long-lived connection (pgwire) before
    /// each statement: a revoked token stops working at once.
    pub(crate) fn recheck(&self, principal: &Principal) -> Result<()> {
        self.auth.recheck(&self.storage.manifest(), principal)
    }

    /// Authenticates `token` and checks that its role allows `action`.
    pub(crate) fn authorize(&self, token: Option<&str>, action: Action) -> Result<Principal> {
        let principal = self.authenticate(token)?;
        auth::require(&principal, action)?;
        Ok(principal)
    }

    /// Whether callers must present a token (`--auth token`); pgwire then
    /// asks for a password.
    pub(crate) fn requires_token(&self) -> bool {
        self.auth.mode() == AuthMode::Token
    }

    /// Write options for `principal`: its tenant scope, and all-or-nothing
    /// when `atomic`.
    pub(crate) fn write_options(principal: &Principal, atomic: bool) -> WriteOptions {
        WriteOptions {
            atomic,
            tenant: principal.tenant.clone(),
        }
    }

    /// `--max-events-per-second`: takes `n` events from the bucket of the
    /// principal's token (callers without one, `--auth none` and the
    /// bootstrap admin token, share a bucket). Refused: kind
    /// `ResourceExhausted`, HTTP 429 with `Retry-After`.
    fn check_rate(&self, principal: &Principal, n: usize) -> Result<()> {
        self.rate_limiter
            .check(principal.token.as_deref().unwrap_or_default(), n)
    }

    /// The limits on one write request of `n` events by `principal`: rows
    /// per request, then the token's events per second.
    pub(crate) fn admit_events(&self, principal: &Principal, n: usize) -> Result<()> {
        self.check_rows(n)?;
        self.check_rate(principal, n)
    }

    fn check_rows(&self, n: usize) -> Result<()> {
        if n > self.max_rows_per_request {
            return Err(Error::PayloadTooLarge(format!(
                "{n} events in one request; the limit is {} (split the batch)",
                self.max_rows_per_request
            )));
        }
        Ok(())
    }
}

/// The addresses the server listens on.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub grpc: SocketAddr,
    pub pg: SocketAddr,
    pub http: SocketAddr,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| Error::Io {
        context: format!("cannot listen for {what} on {addr}"),
        source: e,
    })
}

/// Runs the server until `shutdown` completes, then stops gracefully.
/// `on_ready` is called with the storage once the WAL is replayed (the demo
/// feeder starts there).
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Arc<Storage>) + Send,
) -> Result<()> {
    // Before binding: a bad certificate stops start-up with nothing bound.
    let tls = config.tls.as_ref().map(tls::Tls::load).transpose()?;
    let http_listener = bind(config.http_addr, "HTTP").await?;
    let grpc_listener = bind(config.grpc_addr, "gRPC").await?;
    let pg_listener = bind(config.pg_addr, "PostgreSQL").await?;
    let local = |l: &TcpListener| {
        l.local_addr().map_err(|e| Error::Io {
            context: "local address".into(),
            source: e,
        })
    };
    let addrs = BoundAddrs {
        grpc: local(&grpc_listener)?,
        pg: local(&pg_listener)?,
        http: local(&http_listener)?,
    };
    info!(grpc = %addrs.grpc, pg = %addrs.pg, http = %addrs.http, "listening");
    if let Some(path) = &config.ports_file {
        let json = serde_json::json!({
            "grpc": addrs.grpc.to_string(),
            "pg": addrs.pg.to_string(),
            "http": addrs.http.to_string(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::Io {
                context: format!("cannot write the ports file {}", path.display()),
                source: e,
            })?;
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        info!("shutting down: no new requests; finishing those in flight");
        let _ = stop_tx.send(true);
    });

    let http_state = Arc::new(http::HttpState {
        app: Default::default(),
        max_request_bytes: config.max_request_bytes,
    });
    let router = http::router(Arc::clone(&http_state));
    let http_server = match &tls {
        None => tokio::spawn(
            axum::serve(http_listener, router)
                .with_graceful_shutdown(stopped())
                .into_future(),
        ),
        Some(tls) => tokio::spawn(
            axum::serve(tls.http_listener(http_listener)?, router)
                .with_graceful_shutdown(stopped())
                .into_future(),
        ),
    };

    let storage = Storage::open(config.storage.clone()).await?;
    let mut engine = QueryEngine::new(Arc::clone(&storage), config.query_limits.clone())?;
    if let Some(location) = &config.export_dir {
        engine = engine.with_export_location(location)?;
    }
    let app = Arc::new(AppState {
        storage: Arc::clone(&storage),
        // One engine (one memory pool, one set of query slots) for all.
        executor: Arc::new(engine.clone()),
        engine,
        metrics: Metrics::default(),
        max_rows_per_request: config.max_rows_per_request,
        auth: auth::Auth::new(&config.auth),
        rate_limiter: limits::RateLimiter::new(config.max_events_per_second),
    });
    let _ = http_state.app.set(Arc::clone(&app));
    // Connections that arrived during WAL replay waited in the listen
    // backlog; they are served from here on.
    let pg_tls = tls.as_ref().map(tls::Tls::pg_acceptor).transpose()?;
    let pg_server = tokio::spawn(pgwire::PgServer::new(Arc::clone(&app))?.serve(
        pg_listener,
        pg_tls,
        stopped(),
    ));
    if let Some(dir) = &config.views_dir {
        // A broken view is reported and left out; the server still starts.
        for failed in app.engine.load_views_dir(dir).await? {
            tracing::error!(file = %failed.file, error = %failed.error, "view not installed");
        }
    }
    // Build the maintained per-conversation state now rather than in the
    // first dashboard query after a restart (seconds on millions of events);
    // queries that need it meanwhile wait for it.
    let warm = app.engine.clone();
    tokio::spawn(async move {
        if let Err(e) = warm.warm_up().await {
            tracing::warn!(error = %e, "conversation state not built at start");
        }
    });
    on_ready(&storage);
    info!("ready");

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<grpc::IngestServer>().await;
    health_reporter
        .set_serving::<QueryServiceServer<grpc::QuerySvc>>()
        .await;
    health_reporter
        .set_serving::<AdminServiceServer<grpc::AdminSvc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cxdb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("gRPC reflection: {e}")))?;
    let max = config.max_request_bytes;
    // HTTP/2 frames of up to 1 MiB and windows of 8 MiB per stream (16 MiB
    // per connection): a 10,000-event write (~3 MB) arrives in a few frames
    // instead of ~190 of hyper's default 16 KiB, and without waiting for a
    // window update every 1 MiB (hyper's default window).
    let mut grpc_builder = tonic::transport::Server::builder()
        .max_frame_size(1 << 20)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20);
    if let Some(tls) = &tls {
        grpc_builder = grpc_builder
            .tls_config(tls.grpc())
            .map_err(|e| Error::InvalidArgument(format!("TLS for gRPC: {e}")))?;
    }
    let grpc_server = grpc_builder
        .add_service(health)
        .add_service(reflection)
        .add_service(grpc::IngestServer::new(Arc::clone(&app), max))
        .add_service(
            QueryServiceServer::new(grpc::QuerySvc {
                state: Arc::clone(&app),
            })
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX),
        )
        .add_service(AdminServiceServer::new(grpc::AdminSvc {
            state: Arc::clone(&app),
        }))
        .add_service(
            FlightServiceServer::new(flight::FlightSvc::new(Arc::clone(&app)))
                .max_decoding_message_size(max),
        )
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY every small response (a Flight SQL
            // GetFlightInfo, an ack) waits ~40 ms for a delayed ACK.
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            stopped(),
        );
    let grpc_result = grpc_server.await;
    let http_result = http_server.await;
    let pg_result = pg_server.await;
    grpc_result.map_err(|e| Error::Internal(format!("gRPC server: {e}")))?;
    pg_result.map_err(|e| Error::Internal(format!("PostgreSQL server task: {e}")))?;
    http_result
        .map_err(|e| Error::Internal(format!("HTTP server task: {e}")))?
        .map_err(|e| Error::Io {
            context: "HTTP server".into(),
            source: e,
        })?;
    info!("listeners closed; persisting the write buffer");
    storage.shutdown().await?;
    info!("shut down cleanly");
    Ok(())
}
