//! `cxdb serve`: flags, `CXDB_*` environment variables and a TOML file
//! (keys = flag names) configure the server; flags win over the environment,
//! the environment over the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use cxdb_server::{AuthConfig, AuthMode, ServerConfig, TlsConfig};
use cxdb_storage::StorageConfig;
use cxdb_wal::Recovery;

mod limits;

#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// gRPC services and Arrow Flight (one port).
    #[arg(long, env = "CXDB_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub(crate) grpc_addr: SocketAddr,

    /// PostgreSQL wire protocol (password = token; any user name).
    #[arg(long, env = "CXDB_PG_ADDR", default_value = "127.0.0.1:5433")]
    pub(crate) pg_addr: SocketAddr,

    /// HTTP: /healthz, /readyz, /metrics, POST /v1/events, POST /v1/flush.
    #[arg(long, env = "CXDB_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) http_addr: SocketAddr,

    /// Local state: WAL, catalog, and the Parquet lake when no object store is given.
    #[arg(long, env = "CXDB_DATA_DIR", default_value = "./cxdb-data")]
    pub(crate) data_dir: PathBuf,

    /// Object store URL for the Parquet lake (file://, s3://, gs://, az://, memory://).
    /// Default: file://<data-dir>.
    #[arg(long, env = "CXDB_OBJECT_STORE")]
    pub(crate) object_store: Option<String>,

    /// Where `COPY (query) TO 'file' (FORMAT parquet|csv|json)` may write (analyst and
    /// admin tokens): a local directory (created if missing) or an object store URL prefix
    /// (s3://bucket/exports). Without it, COPY to a file is refused.
    #[arg(long, env = "CXDB_EXPORT_DIR")]
    pub(crate) export_dir: Option<String>,

    /// Write `{"grpc": "...", "pg": "...", "http": "..."}` here once the listeners are bound.
    #[arg(long, env = "CXDB_PORTS_FILE")]
    pub(crate) ports_file: Option<PathBuf>,

    /// Also feed live synthetic support traffic (a few tenants).
    #[arg(long, env = "CXDB_DEMO")]
    pub(crate) demo: bool,

    /// With --demo: days of history written first.
    #[arg(long, env = "CXDB_DEMO_BACKFILL_DAYS", default_value_t = 7)]
    pub(crate) demo_backfill_days: u32,

    /// With --demo: random seed (the same seed gives the same traffic).
    #[arg(long, env = "CXDB_DEMO_SEED", default_value_t = 42)]
    pub(crate) demo_seed: u64,

    /// What to do with a corrupt WAL record in the middle of the log:
    /// `strict` refuses to start, `truncate` cuts the log there (losing that
    /// record and every later one).
    #[arg(long, env = "CXDB_WAL_RECOVERY", default_value = "strict", value_parser = ["strict", "truncate"])]
    pub(crate) wal_recovery: String,

    /// Persist the write buffer to Parquet when it holds this many rows.
    #[arg(long, env = "CXDB_PERSIST_ROWS", default_value_t = 1_000_000)]
    pub(crate) persist_rows: usize,

    /// Persist the write buffer when its oldest row is this many seconds old.
    #[arg(long, env = "CXDB_PERSIST_AGE_S", default_value_t = 60)]
    pub(crate) persist_age_s: u64,

    /// Largest request body / gRPC message, in bytes.
    #[arg(long, env = "CXDB_MAX_REQUEST_BYTES", default_value_t = 64 << 20)]
    pub(crate) max_request_bytes: usize,

    /// Most events in one request.
    #[arg(long, env = "CXDB_MAX_ROWS_PER_REQUEST", default_value_t = 100_000)]
    pub(crate) max_rows_per_request: usize,

    #[command(flatten)]
    pub(crate) limits: limits::LimitArgs,

    /// TLS certificate (PEM, leaf first) for all three listeners: gRPC and
    /// Flight, PostgreSQL, HTTP. Needs --tls-key.
    #[arg(long, env = "CXDB_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1). Needs --tls-cert.
    #[arg(long, env = "CXDB_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,

    /// `token`: every request needs a bearer token (SPEC §8); `none`: every
    /// request acts as an unscoped admin (local development). Default: `none`
    /// when every listener is on loopback, otherwise `token`.
    #[arg(long, env = "CXDB_AUTH", value_parser = ["none", "token"])]
    pub(crate) auth: Option<String>,

    /// An unscoped admin token (any string of 16+ characters) to bootstrap
    /// with: create the real tokens with it (`cxdb token create`).
    #[arg(long, env = "CXDB_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,

    /// A directory of `*.sql` files, one `CREATE VIEW` each (views kept in
    /// git), installed as global views at start; a broken file is logged
    /// with its error and left out.
    #[arg(long, env = "CXDB_VIEWS_DIR")]
    pub(crate) views_dir: Option<PathBuf>,

    /// Allow `--auth none` on a non-loopback address (anyone who can reach
    /// the port is an admin).
    #[arg(long, env = "CXDB_INSECURE_NO_AUTH")]
    pub(crate) insecure_no_auth: bool,
}

impl ServeArgs {
    /// `--auth` after the safe-default rule: `none` is the default only when
    /// every listener is on loopback, and is refused elsewhere unless
    /// `--insecure-no-auth` says so.
    fn auth_config(&self) -> anyhow::Result<AuthConfig> {
        let exposed: Vec<String> = [
            ("--grpc-addr", self.grpc_addr),
            ("--pg-addr", self.pg_addr),
            ("--http-addr", self.http_addr),
        ]
        .iter()
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(flag, a)| format!("{flag} {a}"))
        .collect();
        let mode = match self.auth.as_deref() {
            Some("token") => AuthMode::Token,
            Some(_) => AuthMode::None,
            None if exposed.is_empty() => AuthMode::None,
            None => AuthMode::Token,
        };
        if mode == AuthMode::None && !exposed.is_empty() && !self.insecure_no_auth {
            anyhow::bail!(
                "refusing to start without authentication on a non-loopback address ({}): \
                 use --auth token with --admin-token, or --insecure-no-auth if every client \
                 may be an admin",
                exposed.join(", ")
            );
        }
        if let Some(t) = &self.admin_token
            && t.trim().len() < 16
        {
            anyhow::bail!("--admin-token must be at least 16 characters");
        }
        if mode == AuthMode::Token && self.admin_token.is_none() {
            tracing::warn!(
                "--auth token without --admin-token: only tokens already in the catalog work"
            );
        }
        if mode == AuthMode::None && self.admin_token.is_some() {
            tracing::warn!("--admin-token is ignored with --auth none");
        }
        Ok(AuthConfig {
            mode,
            admin_token: self.admin_token.clone(),
        })
    }

    pub(crate) fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let mut storage = StorageConfig::new(&self.data_dir);
        storage.object_store_url = self.object_store.clone();
        storage.persist_rows = self.persist_rows;
        storage.persist_age = Duration::from_secs(self.persist_age_s);
        storage.wal_recovery = match self.wal_recovery.as_str() {
            "truncate" => Recovery::TruncateCorrupt,
            _ => Recovery::Strict,
        };
        Ok(ServerConfig {
            grpc_addr: self.grpc_addr,
            pg_addr: self.pg_addr,
            http_addr: self.http_addr,
            storage,
            max_request_bytes: self.max_request_bytes,
            max_rows_per_request: self.max_rows_per_request,
            ports_file: self.ports_file.clone(),
            export_dir: self.export_dir.clone(),
            views_dir: self.views_dir.clone(),
            query_limits: self.limits.query_limits()?,
            max_events_per_second: self.limits.max_events_per_second.filter(|n| *n > 0),
            auth: self.auth_config()?,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsConfig {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                (None, None) => None,
                // clap's `requires` reports these first.
                (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key"),
                (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert"),
            },
        })
    }
}

/// Loads `--config FILE` / `CXDB_CONFIG` (TOML, keys = flag names) into
/// `CXDB_*` environment variables that are not set yet, before clap parses,
/// so the precedence is flag > environment > file. Unknown keys are an error.
pub(crate) fn load_config_file(args: &[String]) -> anyhow::Result<()> {
    let path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        })
        .or_else(|| std::env::var("CXDB_CONFIG").ok());
    let Some(path) = path else { return Ok(()) };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {path}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {path} is not valid TOML"))?;
    for (key, value) in table {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            anyhow::bail!(
                "config file {path}: unknown key {key:?}; keys are the flag names: {}",
                KNOWN_KEYS.join(", ")
            );
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => anyhow::bail!(
                "config file {path}: {key} must be a string, integer or boolean, got {other}"
            ),
        };
        let env = format!("CXDB_{}", key.replace('-', "_").to_uppercase());
        if std::env::var_os(&env).is_none() {
            // SAFETY: called at start-up before any other thread exists.
            unsafe { std::env::set_var(env, value) };
        }
    }
    Ok(())
}

const KNOWN_KEYS: &[&str] = &[
    "grpc-addr",
    "pg-addr",
    "http-addr",
    "data-dir",
    "object-store",
    "ports-file",
    "export-dir",
    "demo",
    "demo-backfill-days",
    "demo-seed",
    "wal-recovery",
    "persist-rows",
    "persist-age-s",
    "max-request-bytes",
    "max-rows-per-request",
    "query-memory",
    "query-timeout",
    "max-result-rows",
    "max-concurrent-queries",
    "max-events-per-second",
    "tls-cert",
    "tls-key",
    "auth",
    "admin-token",
    "insecure-no-auth",
    "views-dir",
    "log-filter",
    "log-format",
];
