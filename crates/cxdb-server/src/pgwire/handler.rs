//! Query handlers shared by every connection: each call is handed to the
//! `DfSessionService` of the connection it arrives on, and its rows are
//! made interruptible. datafusion-postgres runs a statement while the rows
//! stream, after pgwire's cancel check and its own `statement_timeout`
//! (which cover planning only), so a CancelRequest or an expired
//! `statement_timeout` is checked here, between rows.

use std::fmt::Debug;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DataType as SqlType, Ident, Statement, TimezoneInfo};
use datafusion_postgres::pgwire::api::copy::{
    send_copy_both_response, send_copy_in_response, send_copy_out_response,
};
use datafusion_postgres::pgwire::api::portal::{Format, Portal, PortalExecutionState};
use datafusion_postgres::pgwire::api::query::send_execution_response;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::{Entry, PortalStore};
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, Type,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::extendedquery::Execute;
use datafusion_postgres::pgwire::messages::response::EmptyQueryResponse;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::Sleep;

use super::connection::{self, Connection};
use super::{error, hooks};
use crate::AppState;
use crate::auth::{self, Action};

/// datafusion-postgres' prepared statement: the SQL and, once planned, its
/// statement and logical plan.
pub(crate) type DfStatement = (String, Option<(Statement, LogicalPlan)>);

/// Where datafusion-postgres keeps `SET statement_timeout` (milliseconds) in
/// the connection's metadata.
const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

pub(crate) struct QueryHandler {
    state: Arc<AppState>,
    parser: Arc<ConnectionParser>,
}

impl QueryHandler {
    pub(crate) fn new(state: Arc<AppState>) -> Self {
        // Describing a prepared statement needs only its plan, not a
        // session, and pgwire asks for it without naming the connection.
        let describer = DfSessionService::new(Arc::new(SessionContext::new())).query_parser();
        Self {
            parser: Arc::new(ConnectionParser {
                describer,
                state: Arc::clone(&state),
            }),
            state,
        }
    }
}

/// The connection a statement arrives on, once its token is checked again
/// (it may have been revoked since the connection started) and its role
/// allows queries.
fn admitted<C: ClientInfo + ?Sized>(state: &AppState, client: &C) -> PgWireResult<Arc<Connection>> {
    let connection = connection::of(client)?;
    state
        .recheck(&connection.principal)
        .and_then(|()| auth::require(&connection.principal, Action::Query))
        .map_err(error::server_error)?;
    Ok(connection)
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = admitted(&self.state, client)?;
        let started = Instant::now();
        let mut interrupt = Interrupt::start(&connection, client);
        let result = interrupt
            .run(SimpleQueryHandler::do_query(
                &connection.service,
                client,
                query,
            ))
            .await;
        self.state
            .metrics
            .record_query(started.elapsed(), result.is_ok());
        Ok(result?
            .into_iter()
            .map(|response| interrupt.guard(response))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = DfStatement;
    type QueryParser = ConnectionParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// pgwire's own `Execute` keeps a started portal's rows in the portal
    /// and fetches them through `Portal::fetch`, which collects every
    /// requested row into a `Vec` first; with `max_rows = 0` (what drivers
    /// send: all rows) a 10-million-row result was held whole in memory
    /// before the first row left. Here an `Execute` of a fresh portal for
    /// all its rows sends them as the query produces them; everything else
    /// (a row limit, a suspended portal) takes pgwire's path.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let fresh = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) if message.max_rows == 0 => {
                let initial = matches!(
                    portal.state().lock().await.deref(),
                    PortalExecutionState::Initial
                );
                initial.then_some(portal)
            }
            _ => None,
        };
        let Some(portal) = fresh else {
            return self._on_execute(client, message).await;
        };
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let mut transaction_status = client.transaction_status();
        client.set_state(PgWireConnectionState::QueryInProgress);
        match ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0).await? {
            Response::Query(mut results) => {
                let tag = results.command_tag().to_owned();
                let schema = results.row_schema();
                let mut rows = 0;
                while let Some(row) = results.data_rows().next().await {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                    rows += 1;
                }
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new(&tag).with_rows(rows).into(),
                    ))
                    .await?;
                // The portal is spent: another Execute of it gets no rows.
                portal
                    .start(QueryResponse::new(schema, futures::stream::empty()))
                    .await;
            }
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
            }
            Response::Execution(tag) => send_execution_response(client, tag).await?,
            Response::TransactionStart(tag) => {
                send_execution_response(client, tag).await?;
                transaction_status = transaction_status.to_in_transaction_state();
            }
            Response::TransactionEnd(tag) => {
                send_execution_response(client, tag).await?;
                transaction_status = transaction_status.to_idle_state();
                client.portal_store().rm_portal(DEFAULT_NAME);
            }
            Response::Error(err) => {
                client
                    .send(PgWireBackendMessage::ErrorResponse((*err).into()))
                    .await?;
                transaction_status = transaction_status.to_error_state();
            }
            Response::CopyIn(result) => {
                client.set_state(PgWireConnectionState::CopyInProgress(true));
                send_copy_in_response(client, result).await?;
            }
            Response::CopyOut(result) => send_copy_out_response(client, result).await?,
            Response::CopyBoth(result) => {
                client.set_state(PgWireConnectionState::CopyInProgress(true));
                send_copy_both_response(client, result).await?;
            }
        }
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            client.set_transaction_status(transaction_status);
        }
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = admitted(&self.state, client)?;
        let started = Instant::now();
        let mut interrupt = Interrupt::start(&connection, client);
        let result = interrupt
            .run(ExtendedQueryHandler::do_query(
                &connection.service,
                client,
                portal,
                max_rows,
            ))
            .await;
        self.state
            .metrics
            .record_query(started.elapsed(), result.is_ok());
        Ok(interrupt.guard(result?))
    }
}

/// Parses with the session of the connection the Parse message arrives on
/// (its tables, its tenant scope, cxdb's hooks).
pub(crate) struct ConnectionParser {
    describer: Arc<Parser>,
    state: Arc<AppState>,
}

#[async_trait]
impl QueryParser for ConnectionParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let connection = admitted(&self.state, client)?;
        let parsed = connection
            .service
            .query_parser()
            .parse_sql(client, sql, types)
            .await?;
        // datafusion-postgres plans without the parameter types of the Parse
        // message, so `SELECT $1` with $1 declared timestamptz would describe
        // an untyped column. Such a query is planned again with the types.
        match parsed {
            Some((sql, Some((statement @ Statement::Query(_), plan)))) => {
                let plan = match declared_types(types) {
                    Some(data_types) => {
                        plan_with_types(&connection.ctx, &statement, data_types).await?
                    }
                    None => plan,
                };
                Ok(Some((sql, Some((statement, plan)))))
            }
            other => Ok(other),
        }
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.describer.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.describer.get_result_schema(stmt, column_format)
    }
}

/// The parameter types of a Parse message as SQL types, when it declares
/// every one and each has a SQL spelling.
fn declared_types(types: &[Option<Type>]) -> Option<Vec<SqlType>> {
    if types.is_empty() {
        return None;
    }
    types
        .iter()
        .map(|t| {
            Some(match t.as_ref()? {
                t if *t == Type::BOOL => SqlType::Boolean,
                t if *t == Type::INT2 => SqlType::SmallInt(None),
                t if *t == Type::INT4 => SqlType::Int(None),
                t if *t == Type::INT8 => SqlType::BigInt(None),
                t if *t == Type::FLOAT4 => SqlType::Real,
                t if *t == Type::FLOAT8 => SqlType::DoublePrecision,
                t if *t == Type::TEXT || *t == Type::BPCHAR || *t == Type::NAME => SqlType::Text,
                t if *t == Type::VARCHAR => SqlType::Varchar(None),
                t if *t == Type::DATE => SqlType::Date,
                t if *t == Type::TIMESTAMP => SqlType::Timestamp(None, TimezoneInfo::None),
                t if *t == Type::TIMESTAMPTZ => {
                    SqlType::Timestamp(None, TimezoneInfo::WithTimeZone)
                }
                t if *t == Type::BYTEA => SqlType::Bytea,
                _ => return None,
            })
        })
        .collect()
}

/// Plans `statement` as DataFusion plans `PREPARE p(types) AS statement`,
/// so its placeholders, and the columns made of them, have those types.
async fn plan_with_types(
    ctx: &SessionContext,
    statement: &Statement,
    data_types: Vec<SqlType>,
) -> PgWireResult<LogicalPlan> {
    let prepare = Statement::Prepare {
        name: Ident::new("cxdb_typed"),
        data_types,
        statement: Box::new(statement.clone()),
    };
    let plan = hooks::plan_statement(&prepare, ctx).await?;
    match plan {
        LogicalPlan::Statement(PlanStatement::Prepare(prepare)) => {
            Ok(Arc::unwrap_or_clone(prepare.input))
        }
        other => Ok(other),
    }
}

/// What stops a running statement: a CancelRequest for its connection or
/// its `statement_timeout`. Both answer SQLSTATE 57014, as PostgreSQL does.
struct Interrupt {
    cancel: watch::Receiver<u64>,
    /// Resolves when the cancel generation changes; never if the connection
    /// is gone.
    cancelled: Pin<Box<dyn Future<Output = ()> + Send>>,
    deadline: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Interrupt {
    /// Starts watching for a statement beginning now; cancel requests that
    /// arrived before it do not count.
    fn start<C: ClientInfo + ?Sized>(connection: &Connection, client: &C) -> Self {
        let mut cancel = connection.cancel.subscribe();
        cancel.mark_unchanged();
        let deadline = client
            .metadata()
            .get(STATEMENT_TIMEOUT_KEY)
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        Self::watching(cancel, deadline)
    }

    fn watching(cancel: watch::Receiver<u64>, deadline: Option<tokio::time::Instant>) -> Self {
        let mut changes = cancel.clone();
        let cancelled = Box::pin(async move {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        Self {
            cancel,
            cancelled,
            deadline,
            timer: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
        }
    }

    /// The same statement's watch, for another of its result streams.
    fn fork(&self) -> Self {
        Self::watching(self.cancel.clone(), self.deadline)
    }

    fn poll_interrupted(&mut self, cx: &mut Context<'_>) -> Poll<PgWireError> {
        if self.cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(PgWireError::QueryCanceled);
        }
        if let Some(timer) = &mut self.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "57014".into(),
                "canceling statement due to statement timeout".into(),
            ))));
        }
        Poll::Pending
    }

    async fn run<T>(&mut self, work: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
        tokio::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = work.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            self.poll_interrupted(cx).map(Err)
        })
        .await
    }

    /// Makes the rows of `response` stop at an interrupt.
    fn guard(&self, response: Response) -> Response {
        match response {
            Response::Query(mut query) => {
                let rows = std::mem::replace(query.data_rows(), Box::pin(futures::stream::empty()));
                *query.data_rows() = Box::pin(Interruptible {
                    inner: rows,
                    interrupt: self.fork(),
                    done: false,
                });
                Response::Query(query)
            }
            Response::CopyOut(mut copy) => {
                let data =
                    std::mem::replace(copy.data_stream(), Box::pin(futures::stream::empty()));
                *copy.data_stream() = Box::pin(Interruptible {
                    inner: data,
                    interrupt: self.fork(),
                    done: false,
                });
                Response::CopyOut(copy)
            }
            other => other,
        }
    }
}

/// A result stream that ends with the interrupt's error once it fires.
struct Interruptible<T> {
    inner: Pin<Box<dyn Stream<Item = PgWireResult<T>> + Send>>,
    interrupt: Interrupt,
    done: bool,
}

impl<T> Stream for Interruptible<T> {
    type Item = PgWireResult<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(e) = self.interrupt.poll_interrupted(cx) {
            self.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        self.inner.as_mut().poll_next(cx)
    }
}
