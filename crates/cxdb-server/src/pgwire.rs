//! The PostgreSQL wire protocol, built on `datafusion-postgres` (pgwire, its
//! `pg_catalog`, SET/SHOW/transaction/cursor hooks, Arrow ↔ PostgreSQL type
//! encoding) and extended, not forked:
//!
//! ```text
//!  startup ──► AppState::authenticate(password) ──► Principal ──► QueryEngine::session(tenant)
//!                                                       │  + pg_catalog, version(), current_setting(), to_regtype()
//!                                                       ▼
//!  Query / Parse·Bind·Execute ──► handler ──► this connection's DfSessionService
//!                                   │            hooks: cxdb (catalog-query rewrite, read-only guard, COPY TO STDOUT,
//!                                   │            server_version, DISCARD, RESET, savepoints,
//!                                   │            DECLARE), then datafusion-postgres' FETCH/CLOSE,
//!                                   │            SET/SHOW, BEGIN/COMMIT
//!                                   └─ rows stop on CancelRequest or statement_timeout (57014)
//!  every error ──► error.rs (SQLSTATE)
//! ```
//!
//! One DataFusion session per connection: `SET` and cursors stay private to
//! it, and the tenant scope chosen at authentication applies to every table.

mod catalog;
mod connection;
mod copy;
mod cursor;
mod error;
mod functions;
mod handler;
mod hooks;
mod startup;

use std::future::Future;
use std::sync::Arc;

use datafusion_postgres::pgwire;
use datafusion_postgres::pgwire::api::PgWireServerHandlers;
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::{AppState, Error, Result};

/// The PostgreSQL version clients see. 16 is what `datafusion-postgres`'
/// `pg_catalog` tables describe.
const PG_VERSION: &str = "16.0";
const PG_VERSION_NUM: &str = "160000";

/// `server_version` as PostgreSQL distributions report it (`16.4 (Debian
/// 16.4-1.pgdg120+1)`), so version parsers (libpq, pgjdbc, SQLAlchemy,
/// Grafana) read 16.0.
fn server_version() -> String {
    format!("{PG_VERSION} (cxdb {})", env!("CARGO_PKG_VERSION"))
}

/// `version()`, in PostgreSQL's shape.
fn version_string() -> String {
    format!(
        "PostgreSQL {} on {}-{}, compiled by rustc, 64-bit",
        server_version(),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Every handler pgwire asks for; one instance serves all connections.
struct Handlers {
    startup: Arc<startup::Startup>,
    queries: Arc<handler::QueryHandler>,
    cancels: Arc<connection::CancelRegistry>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn error_handler(&self) -> Arc<impl pgwire::api::ErrorHandler> {
        Arc::new(error::SqlStateMapper)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancels)
    }
}

/// The PostgreSQL listener's server.
pub(crate) struct PgServer {
    handlers: Arc<Handlers>,
}

impl PgServer {
    pub(crate) fn new(state: Arc<AppState>) -> Result<Self> {
        let template = state.engine.session(None)?;
        let pg_catalog = functions::SharedPgCatalog::new(template)
            .map_err(|e| Error::Query(cxdb_query::Error::DataFusion(e)))?;
        let cancels = Arc::new(connection::CancelRegistry::default());
        let handlers = Arc::new(Handlers {
            startup: Arc::new(startup::Startup::new(
                Arc::clone(&state),
                pg_catalog,
                Arc::clone(&cancels),
            )),
            queries: Arc::new(handler::QueryHandler::new(state)),
            cancels,
        });
        Ok(Self { handlers })
    }

    /// Serves connections on `listener` until `shutdown` completes; then
    /// stops accepting and closes the open sessions (their queries are
    /// read-only, so nothing is lost). With `tls`, `SSLRequest` is answered
    /// 'S' and the session continues over TLS, and a plain-text session is
    /// refused ([`crate::tls::pg_refuse_plaintext`]); without it, 'N'.
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let handlers = self.handlers;
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((mut socket, peer)) => {
                        let handlers = Arc::clone(&handlers);
                        let tls = tls.clone();
                        connections.spawn(async move {
                            if tls.is_some() {
                                match crate::tls::pg_refuse_plaintext(&mut socket).await {
                                    Ok(false) => {}
                                    Ok(true) => {
                                        debug!(%peer, "PostgreSQL: plain-text session refused (TLS is required)");
                                        return;
                                    }
                                    Err(e) => {
                                        debug!(%peer, error = %e, "PostgreSQL connection ended before TLS");
                                        return;
                                    }
                                }
                            }
                            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                                debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                            }
                        });
                    }
                    // Accept errors (EMFILE, aborted handshakes) concern one
                    // connection, not the listener.
                    Err(e) => warn!(error = %e, "PostgreSQL accept failed"),
                },
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        info!(
            sessions = connections.len(),
            "PostgreSQL: no new connections; closing open sessions"
        );
        connections.shutdown().await;
    }
}
