//! The state of one PostgreSQL connection, kept in pgwire's per-connection
//! `SessionExtensions`: its principal, its DataFusion session (inside a
//! `DfSessionService`) and its cancel signal.

use std::collections::HashMap;
use std::sync::Arc;

use cxdb_query::{Principal, SharedExecutor};
use datafusion::prelude::SessionContext;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::cancel::CancelHandler;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::cancel::CancelRequest;
use datafusion_postgres::pgwire::messages::startup::SecretKey;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::hooks::CxdbHook;

/// Bumped by a CancelRequest; a running statement of the connection stops
/// when it changes.
pub(crate) type CancelSignal = Arc<watch::Sender<u64>>;

/// One authenticated connection.
pub(crate) struct Connection {
    pub(crate) principal: Principal,
    /// This connection's DataFusion session (also inside `service`).
    pub(crate) ctx: Arc<SessionContext>,
    pub(crate) service: DfSessionService,
    /// Bumped by a CancelRequest; a running statement stops when it changes.
    pub(crate) cancel: CancelSignal,
}

impl Connection {
    /// Serves `ctx` (this principal's session) through datafusion-postgres,
    /// with cxdb's hook first so the read-only rule sees every statement.
    pub(crate) fn new(principal: Principal, ctx: SessionContext, executor: SharedExecutor) -> Self {
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(CxdbHook {
                executor,
                principal: principal.clone(),
            }),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let ctx = Arc::new(ctx);
        Self {
            principal,
            service: DfSessionService::new_with_hooks(Arc::clone(&ctx), hooks),
            ctx,
            cancel: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// The connection a query arrives on. Every connection gets one at startup,
/// so its absence means a message before authentication finished.
pub(crate) fn of<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Connection>> {
    client
        .session_extensions()
        .get::<Connection>()
        .ok_or_else(|| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "08P01".into(),
                "query before authentication completed".into(),
            )))
        })
}

/// Who may cancel which connection: a CancelRequest arrives on a new
/// connection carrying the target's process id and secret key.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    connections: Mutex<HashMap<i32, (SecretKey, CancelSignal)>>,
}

impl CancelRegistry {
    /// Registers a connection until the returned guard is dropped (with the
    /// connection's session extensions).
    pub(crate) fn register(
        self: &Arc<Self>,
        pid: i32,
        key: SecretKey,
        cancel: CancelSignal,
    ) -> CancelGuard {
        self.connections.lock().insert(pid, (key, cancel));
        CancelGuard {
            registry: Arc::clone(self),
            pid,
        }
    }

    pub(crate) fn cancel(&self, pid: i32, key: &SecretKey) {
        if let Some((expected, cancel)) = self.connections.lock().get(&pid)
            && expected.eq_value(key)
        {
            cancel.send_modify(|generation| *generation += 1);
        }
    }
}

/// Unregisters a connection from the [`CancelRegistry`] when it closes.
pub(crate) struct CancelGuard {
    registry: Arc<CancelRegistry>,
    pid: i32,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry.connections.lock().remove(&self.pid);
    }
}

#[async_trait::async_trait]
impl CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.cancel(request.pid, &request.secret_key);
    }
}
