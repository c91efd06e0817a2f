//! cxdb's statement hook, run before datafusion-postgres' own: it keeps SQL
//! read-only (the rule `cxdb_query`'s executor applies to every other
//! protocol) and answers the statements datafusion-postgres leaves to
//! DataFusion but DataFusion cannot run: `COPY … TO STDOUT`, `DISCARD`,
//! `RESET`, and `SHOW server_version` in PostgreSQL's form. `COPY … TO
//! 'file'` (an export) goes to the query layer, as on every protocol.

use std::sync::Arc;

use async_trait::async_trait;
use cxdb_query::{Principal, SharedExecutor};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfParserStatement;
use datafusion::sql::sqlparser::ast::{CopyTarget, ObjectType, Set, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{
    DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::response::TransactionStatus;
use datafusion_postgres::pgwire::types::format::FormatOptions;

use super::error::SqlStateError;
use super::{catalog, copy, cursor};

/// Runs on every statement of a connection, as its principal.
#[derive(Debug)]
pub(crate) struct CxdbHook {
    pub(crate) executor: SharedExecutor,
    pub(crate) principal: Principal,
}

impl CxdbHook {
    /// `CREATE [OR REPLACE] VIEW`, `DROP VIEW`: through the query layer,
    /// which checks the role and keeps the view in the catalog (the
    /// connection's session then finds it like every other session).
    async fn view_statement(&self, statement: &Statement) -> PgWireResult<Response> {
        let change = self
            .executor
            .execute_update(&self.principal, &statement.to_string())
            .await
            .map_err(|e| match e {
                cxdb_query::Error::DataFusion(e) => PgWireError::ApiError(Box::new(e)),
                other => super::error::server_error(crate::Error::Query(other)),
            })?;
        Ok(Response::Execution(Tag::new(change.tag())))
    }
}

/// What cxdb does with a statement.
enum Action {
    /// datafusion-postgres' hooks answer it (SET, SHOW, transactions,
    /// cursors).
    PassThrough,
    /// `DECLARE … CURSOR`: cxdb opens it (cursor.rs); FETCH and CLOSE
    /// pass through.
    CheckCursor,
    /// cxdb answers it.
    Answer,
    /// Planned by DataFusion, refused if it writes.
    Plan,
    /// `CREATE VIEW` / `DROP VIEW`: kept in the catalog.
    View,
    /// `COPY … TO 'file'`: an export under `--export-dir` (copy.rs).
    Export,
}

fn action(statement: &Statement) -> Action {
    match statement {
        Statement::ShowVariable { variable } if server_setting(variable).is_some() => {
            Action::Answer
        }
        Statement::Set(_) if extra_float_digits(statement).is_some() => Action::Answer,
        Statement::Copy {
            to: true,
            target: CopyTarget::File { .. },
            ..
        } => Action::Export,
        Statement::Discard { .. } | Statement::Reset(_) | Statement::Copy { .. } => Action::Answer,
        Statement::Declare { .. } => Action::CheckCursor,
        // Savepoints: nothing to undo where SQL cannot write (psycopg, and
        // so SQLAlchemy, opens one inside a transaction to look up a type).
        Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Rollback {
            savepoint: Some(_), ..
        } => Action::Answer,
        Statement::CreateView(_)
        | Statement::Drop {
            object_type: ObjectType::View,
            ..
        } => Action::View,
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Action::PassThrough,
        _ => Action::Plan,
    }
}

/// `SET extra_float_digits = 3` (DBeaver, pgjdbc): datafusion-postgres
/// keeps only string values of the settings it tracks, so a number would
/// be stored as "" (`SET extra_float_digits = '3'` works there).
fn extra_float_digits(statement: &Statement) -> Option<i8> {
    match statement {
        Statement::Set(Set::SingleAssignment {
            scope: None,
            hivevar: false,
            variable,
            values,
        }) if variable
            .to_string()
            .eq_ignore_ascii_case("extra_float_digits") =>
        {
            match values.as_slice() {
                [value] => value.to_string().parse().ok(),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `SHOW server_version` / `server_version_num`: datafusion-postgres answers
/// "datafusion 55 on …", which version parsers reject.
fn server_setting(
    variable: &[datafusion::sql::sqlparser::ast::Ident],
) -> Option<(&'static str, String)> {
    match variable {
        [name] if name.value.eq_ignore_ascii_case("server_version") => {
            Some(("server_version", super::server_version()))
        }
        [name] if name.value.eq_ignore_ascii_case("server_version_num") => {
            Some(("server_version_num", super::PG_VERSION_NUM.to_string()))
        }
        _ => None,
    }
}

/// Plans `statement` and refuses writes: DDL, DML, COPY to a file and
/// session statements DataFusion would run (PREPARE, EXECUTE…). Views
/// created over SQL arrive with issue #7 (analyst tokens).
pub(crate) async fn plan_read_only(
    statement: &Statement,
    ctx: &SessionContext,
) -> PgWireResult<LogicalPlan> {
    let plan = plan_statement(statement, ctx).await?;
    let mut refusal = None;
    plan.apply_with_subqueries(|node| {
        refusal = match node {
            LogicalPlan::Ddl(ddl) => Some(read_only(ddl.name())),
            LogicalPlan::Dml(dml) => Some(read_only(dml.op.name())),
            LogicalPlan::Copy(_) => Some(SqlStateError::new(
                "42501",
                "permission denied: COPY to a server file is not allowed; use COPY … TO STDOUT",
            )),
            LogicalPlan::Statement(s) => Some(SqlStateError::new(
                "0A000",
                format!("{} is not supported over the PostgreSQL protocol", s.name()),
            )),
            _ => None,
        };
        Ok(if refusal.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })
    .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    match refusal {
        Some(e) => Err(e.into()),
        None => Ok(plan),
    }
}

/// DataFusion's logical plan of `statement` in `ctx`, after the catalog
/// rewrite (catalog.rs) when it reads `pg_catalog`.
pub(crate) async fn plan_statement(
    statement: &Statement,
    ctx: &SessionContext,
) -> PgWireResult<LogicalPlan> {
    let rewritten = catalog::rewrite(statement, ctx).await;
    let statement = rewritten.as_ref().unwrap_or(statement);
    ctx.state()
        .statement_to_plan(DfParserStatement::Statement(Box::new(statement.clone())))
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
}

pub(crate) fn read_only(what: &str) -> SqlStateError {
    SqlStateError::new(
        "42501",
        format!(
            "permission denied: {what} is not allowed, cxdb's SQL is read-only \
             (write events with gRPC, HTTP or Arrow Flight)"
        ),
    )
}

/// Answers the statements cxdb handles itself.
async fn answer(
    statement: &Statement,
    ctx: &SessionContext,
    client: &mut dyn HookClient,
) -> PgWireResult<Response> {
    if let Some(digits) = extra_float_digits(statement) {
        // Where datafusion-postgres and pgwire's FormatOptions read it.
        client
            .metadata_mut()
            .insert("extra_float_digits".into(), digits.to_string());
        return Ok(Response::Execution(Tag::new("SET")));
    }
    match statement {
        Statement::ShowVariable { variable } => match server_setting(variable) {
            Some((name, value)) => show(name, &value),
            None => Err(internal_dispatch()),
        },
        // Nothing is cached per session that DISCARD or RESET would drop:
        // SET values live in the connection until it closes.
        Statement::Discard { object_type } => Ok(Response::Execution(Tag::new(&format!(
            "DISCARD {object_type}"
        )))),
        Statement::Reset(_) => Ok(Response::Execution(Tag::new("RESET"))),
        Statement::Savepoint { .. } => Ok(Response::Execution(Tag::new("SAVEPOINT"))),
        Statement::ReleaseSavepoint { .. } => Ok(Response::Execution(Tag::new("RELEASE"))),
        // After an error, `ROLLBACK TO` is how a client goes on. pgwire
        // leaves the failed state only when a transaction ends, so the
        // client sees the transaction end there (its next statement begins
        // another); nothing was written either way.
        Statement::Rollback {
            savepoint: Some(_), ..
        } => Ok(if client.transaction_status() == TransactionStatus::Error {
            Response::TransactionEnd(Tag::new("ROLLBACK"))
        } else {
            Response::Execution(Tag::new("ROLLBACK"))
        }),
        Statement::Copy { .. } => copy::copy_to_stdout(statement, ctx).await,
        _ => Err(internal_dispatch()),
    }
}

fn internal_dispatch() -> PgWireError {
    PgWireError::ApiError(Box::new(SqlStateError::new(
        "XX000",
        "cxdb hook: statement routed to the wrong handler",
    )))
}

/// The plan a Describe of an answered statement reports.
fn answer_plan(statement: &Statement) -> PgWireResult<LogicalPlan> {
    let schema = match statement {
        Statement::ShowVariable { variable } => {
            let name = server_setting(variable).map_or("setting", |(name, _)| name);
            Schema::new(vec![Field::new(name, DataType::Utf8, false)])
        }
        _ => Schema::empty(),
    };
    let schema = DFSchema::try_from(schema).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    Ok(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(schema),
    }))
}

/// One row, one text column, as PostgreSQL answers `SHOW`.
fn show(name: &str, value: &str) -> PgWireResult<Response> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::once(async move { Ok(row) }),
    )))
}

#[async_trait]
impl QueryHook for CxdbHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(refused) = in_failed_transaction(statement, &*client) {
            return Some(Err(refused));
        }
        match action(statement) {
            Action::PassThrough => None,
            Action::Answer => Some(answer(statement, ctx, client).await),
            Action::CheckCursor => {
                Some(cursor::declare(statement, &ParamValues::List(vec![]), ctx, client).await)
            }
            // datafusion-postgres plans it again to run it; planning is
            // cheap next to running, and its own path stays intact. A
            // rewritten catalog query is run here: datafusion-postgres
            // would run the statement as the client wrote it.
            Action::Plan => match plan_read_only(statement, ctx).await {
                Err(e) => Some(Err(e)),
                Ok(plan) if catalog::rewrite(statement, ctx).await.is_some() => {
                    Some(run_plan(plan, ctx, &*client).await)
                }
                Ok(_) => None,
            },
            Action::View => Some(self.view_statement(statement).await),
            Action::Export => {
                Some(copy::copy_to_file(&self.executor, &self.principal, statement).await)
            }
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match action(statement) {
            Action::PassThrough => None,
            Action::Answer | Action::View | Action::Export => Some(answer_plan(statement)),
            Action::CheckCursor => Some(cursor::parse_plan(statement, ctx).await),
            Action::Plan => Some(plan_read_only(statement, ctx).await),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(refused) = in_failed_transaction(statement, &*client) {
            return Some(Err(refused));
        }
        match action(statement) {
            Action::Answer => Some(answer(statement, ctx, client).await),
            Action::View => Some(self.view_statement(statement).await),
            Action::Export => {
                Some(copy::copy_to_file(&self.executor, &self.principal, statement).await)
            }
            Action::CheckCursor => Some(cursor::declare(statement, params, ctx, client).await),
            _ => None,
        }
    }
}

/// Runs `plan` and answers its rows in text, as datafusion-postgres answers
/// a simple query.
async fn run_plan(
    plan: LogicalPlan,
    ctx: &SessionContext,
    client: &dyn HookClient,
) -> PgWireResult<Response> {
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let rows = encode_dataframe(frame, &Format::UnifiedText, Some(options)).await?;
    Ok(Response::Query(rows))
}

/// After an error inside BEGIN … only COMMIT or ROLLBACK (both roll back)
/// is accepted, with PostgreSQL's SQLSTATE 25P02 (datafusion-postgres'
/// own check answers 25P01, no_active_sql_transaction).
fn in_failed_transaction(statement: &Statement, client: &dyn HookClient) -> Option<PgWireError> {
    let ends = matches!(
        statement,
        Statement::Commit { .. } | Statement::Rollback { .. }
    );
    (client.transaction_status() == TransactionStatus::Error && !ends).then(|| {
        SqlStateError::new(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        )
        .into()
    })
}
