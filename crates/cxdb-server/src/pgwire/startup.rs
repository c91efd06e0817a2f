//! Connection startup: the password is the bearer token, checked by
//! [`AppState::authenticate`](crate::AppState::authenticate); the principal it
//! yields picks the connection's session (and its tenant scope).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use datafusion_postgres::pgwire::api::{
    ClientInfo, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::Authentication;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::{Sink, SinkExt};
use tracing::debug;

use super::connection::{CancelRegistry, Connection};
use super::functions::SharedPgCatalog;
use super::{error, functions};
use crate::AppState;

pub(crate) struct Startup {
    state: Arc<AppState>,
    pg_catalog: SharedPgCatalog,
    cancels: Arc<CancelRegistry>,
    pids: RandomPidSecretKeyGenerator,
    parameters: DefaultServerParameterProvider,
}

impl Startup {
    pub(crate) fn new(
        state: Arc<AppState>,
        pg_catalog: SharedPgCatalog,
        cancels: Arc<CancelRegistry>,
    ) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = super::server_version();
        Self {
            state,
            pg_catalog,
            cancels,
            pids: RandomPidSecretKeyGenerator::default(),
            parameters,
        }
    }

    /// Authenticates `token`, builds the connection's session and finishes
    /// the startup (AuthenticationOk, ParameterStatus…, BackendKeyData,
    /// ReadyForQuery).
    async fn admit<C>(&self, client: &mut C, token: Option<&str>) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let principal = self
            .state
            .authenticate(token)
            .map_err(|e| error::authentication_failed(&user, e))?
            .via("pgwire");
        let ctx = self
            .state
            .engine
            .session(principal.tenant.as_deref())
            .map_err(|e| error::server_error(crate::Error::Query(e)))?;
        functions::install(&ctx, &self.pg_catalog)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        let connection = Connection::new(principal, ctx, Arc::clone(&self.state.executor));
        let (pid, key) = self.pids.generate(client);
        let guard = self
            .cancels
            .register(pid, key.clone(), Arc::clone(&connection.cancel));
        client.set_pid_and_secret_key(pid, key);
        debug!(%user, pid, tenant = ?connection.principal.tenant, "PostgreSQL session started");
        client.session_extensions().insert(guard);
        client.session_extensions().insert(connection);
        finish_authentication(client, &self.parameters).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.state.requires_token() {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::CleartextPassword,
                        ))
                        .await?;
                } else {
                    // `--auth none`: like PostgreSQL's `trust`, no password
                    // prompt (psql would otherwise ask for one).
                    self.admit(client, None).await?;
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                self.admit(client, Some(&password.password)).await?;
            }
            _ => {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "08P01".into(),
                    "unexpected message during startup".into(),
                ))));
            }
        }
        Ok(())
    }
}
