//! `DECLARE name CURSOR FOR query`, answered here rather than by
//! datafusion-postgres' cursor hook, which runs the query without the
//! statement's bound parameters and keeps no plan in the cursor's portal.
//! psycopg's named cursors need both: they send `DECLARE … WHERE x = $1`
//! with parameters over the extended protocol, then Describe the cursor's
//! portal to learn its columns before the first `FETCH`. `FETCH` and
//! `CLOSE` stay with datafusion-postgres.

use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::common::metadata::ScalarAndMetadata;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DeclareType, Statement};
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::api::stmt::StoredStatement;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};

use super::error::SqlStateError;
use super::hooks::plan_read_only;

/// Opens the cursors of a `DECLARE` (read-only queries only) with `params`
/// bound, each as a portal that keeps its plan (so a Describe of it answers
/// the columns) and streams its rows as `FETCH` asks for them.
pub(crate) async fn declare(
    statement: &Statement,
    params: &ParamValues,
    ctx: &SessionContext,
    client: &mut dyn HookClient,
) -> PgWireResult<Response> {
    let Statement::Declare { stmts } = statement else {
        return Err(SqlStateError::new("XX000", "cxdb: not a DECLARE statement").into());
    };
    for declare in stmts {
        let (Some(DeclareType::Cursor), Some(name), Some(query)) = (
            &declare.declare_type,
            declare.names.first(),
            &declare.for_query,
        ) else {
            return Err(SqlStateError::new(
                "42601",
                "only DECLARE name CURSOR FOR query is supported",
            )
            .into());
        };
        let query = Statement::Query(query.clone());
        let plan = bind(plan_read_only(&query, ctx).await?, params)?;
        let frame = ctx
            .execute_logical_plan(plan.clone())
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        let rows = encode_dataframe(frame, &Format::UnifiedText, None).await?;
        let stored = StoredStatement::new(
            name.value.clone(),
            (query.to_string(), Some((query, plan))),
            vec![],
        );
        let portal = Portal::new_cursor(name.value.clone(), Arc::new(stored));
        portal.start(rows).await;
        client.portal_store().put_portal(Arc::new(portal));
    }
    Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
}

/// The plan a Parse of `DECLARE` gets: no columns (DECLARE returns none)
/// over the cursor's read-only query, so the statement's parameters are
/// described, and their values decoded, with the types DataFusion infers.
pub(crate) async fn parse_plan(
    statement: &Statement,
    ctx: &SessionContext,
) -> PgWireResult<LogicalPlan> {
    let api = |e| PgWireError::ApiError(Box::new(e));
    let queries = match statement {
        Statement::Declare { stmts } => stmts.iter().filter_map(|d| d.for_query.clone()),
        _ => return Err(SqlStateError::new("XX000", "cxdb: not a DECLARE statement").into()),
    };
    // One query in PostgreSQL's DECLARE; every one is checked.
    let mut plan = LogicalPlanBuilder::empty(false);
    for query in queries {
        plan = LogicalPlanBuilder::from(plan_read_only(&Statement::Query(query), ctx).await?);
    }
    plan.project(Vec::<Expr>::new())
        .and_then(LogicalPlanBuilder::build)
        .map_err(api)
}

/// `plan` with its placeholders replaced by `params`, each cast to the type
/// DataFusion inferred for its placeholder: the values were decoded with the
/// client's types (psycopg sends a small int as int2, a string untyped).
fn bind(plan: LogicalPlan, params: &ParamValues) -> PgWireResult<LogicalPlan> {
    let api = |e| PgWireError::ApiError(Box::new(e));
    let ParamValues::List(values) = params else {
        return plan.replace_params_with_values(params).map_err(api);
    };
    if values.is_empty() {
        return Ok(plan);
    }
    let types = plan.get_parameter_types().map_err(api)?;
    let values = values
        .iter()
        .enumerate()
        .map(|(i, value)| match types.get(&format!("${}", i + 1)) {
            Some(Some(to)) if value.value().data_type() != *to => value
                .value()
                .cast_to(to)
                .map(ScalarAndMetadata::from)
                .map_err(api),
            _ => Ok(value.clone()),
        })
        .collect::<PgWireResult<Vec<_>>>()?;
    plan.replace_params_with_values(&ParamValues::List(values))
        .map_err(api)
}
