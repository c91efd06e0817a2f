//! The one entry point every protocol uses to run SQL (InfluxDB 3's
//! `QueryExecutor` pattern): protocols stay thin, and every protocol runs the
//! same statement the same way, under the same principal.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::information_schema::INFORMATION_SCHEMA;
use datafusion::common::{ScalarValue, TableReference, plan_err};
use datafusion::datasource::TableType;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SQLOptions, SessionContext};
use futures::StreamExt;

use crate::custom_views::{self, ViewChange};
use crate::{Error, QueryEngine, Result, export};
use cxdb_storage::catalog::Role;

/// Who runs a request: an authenticated token's role and scope.
/// `tenant = Some(t)` scopes every table, view and write to tenant `t`,
/// whatever the SQL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: Option<String>,
    pub role: Role,
    /// The public id of the token (rate limits, audit); `None` for
    /// `--auth none` and the bootstrap `--admin-token`.
    pub token: Option<String>,
    /// No token was checked (`--auth none`): the audit log names such a
    /// caller "anonymous", the bootstrap `--admin-token` "admin".
    pub anonymous: bool,
    /// The protocol the request came by (`pgwire`, `grpc`, `flight-sql`),
    /// set by each protocol with [`Principal::via`], for the audit log.
    pub protocol: &'static str,
}

impl Principal {
    /// An unscoped admin: the bootstrap `--admin-token`.
    pub fn unscoped() -> Self {
        Self {
            tenant: None,
            role: Role::Admin,
            token: None,
            anonymous: false,
            protocol: "embedded",
        }
    }

    /// Every request under `--auth none`: an unscoped admin nobody vouched
    /// for.
    pub fn anonymous() -> Self {
        Self {
            anonymous: true,
            ..Self::unscoped()
        }
    }

    /// A token's principal.
    pub fn new(role: Role, tenant: Option<String>, token: Option<String>) -> Self {
        Self {
            tenant,
            role,
            token,
            ..Self::unscoped()
        }
    }

    /// The same principal, arriving by `protocol`.
    pub fn via(self, protocol: &'static str) -> Self {
        Self { protocol, ..self }
    }

    /// Who the audit log names: the token id, "admin" (the bootstrap
    /// `--admin-token`) or "anonymous" (`--auth none`).
    pub fn who(&self) -> &str {
        match (&self.token, self.anonymous) {
            (Some(id), _) => id,
            (None, true) => "anonymous",
            (None, false) => "admin",
        }
    }
}

impl Default for Principal {
    fn default() -> Self {
        Self::unscoped()
    }
}

/// The plans of a statement, for `Explain`.
#[derive(Debug, Clone)]
pub struct ExplainOutput {
    pub logical: String,
    pub physical: String,
}

/// What a statement returns and which parameters it takes, found by
/// planning it without running it (prepared statements, result schemas).
#[derive(Debug, Clone)]
pub struct StatementInfo {
    /// The schema of the result.
    pub schema: SchemaRef,
    /// `$1`, `$2`, … in position order, each with the type DataFusion
    /// inferred from its use (`None` where the statement does not constrain
    /// it, e.g. `SELECT $1`).
    pub parameters: Vec<(String, Option<DataType>)>,
}

/// One table or view a principal can query, for catalog browsing.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    pub table_type: TableType,
    pub arrow_schema: SchemaRef,
}

/// The catalogs, schemas and tables a principal sees.
#[derive(Debug, Clone, Default)]
pub struct CatalogListing {
    /// `(catalog, schema)` pairs, sorted.
    pub schemas: Vec<(String, String)>,
    /// Sorted by catalog, schema, name.
    pub tables: Vec<TableInfo>,
}

#[async_trait]
pub trait QueryExecutor: Send + Sync + std::fmt::Debug {
    /// Plans and starts `sql`; results stream batch by batch. `COPY (query)
    /// TO 'file'` is an export (export.rs): it runs to its end and answers
    /// one row, the rows written and the path.
    async fn execute(&self, principal: &Principal, sql: &str) -> Result<SendableRecordBatchStream>;

    /// Plans `sql` (under the same read-only rule as `execute`) without
    /// running it: its result schema and parameters. With `params` bound
    /// (as for `execute_with_params`), the schema is the one execution will
    /// produce: `SELECT $1` returns the bound value's type.
    async fn prepare(
        &self,
        principal: &Principal,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<StatementInfo>;

    /// Runs `sql` with `params` bound to `$1`, `$2`, …; a value whose type
    /// differs from the inferred parameter type is cast to it.
    async fn execute_with_params(
        &self,
        principal: &Principal,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream>;

    async fn explain(&self, principal: &Principal, sql: &str) -> Result<ExplainOutput>;

    /// Runs a statement that changes something and returns no rows (Flight
    /// SQL's update): `CREATE [OR REPLACE] VIEW`, `DROP VIEW`. A query is
    /// refused, naming the right entry point.
    async fn execute_update(&self, principal: &Principal, sql: &str) -> Result<ViewChange>;

    /// Every catalog, schema and table (with its Arrow schema) `principal`
    /// can query.
    async fn catalog(&self, principal: &Principal) -> Result<CatalogListing>;
}

/// Read-only SQL: queries only. DDL, DML and session statements are refused
/// with a clear error until views (CREATE VIEW) and exports arrive.
fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl QueryEngine {
    async fn plan(
        &self,
        principal: &Principal,
        sql: &str,
    ) -> Result<(SessionContext, LogicalPlan)> {
        self.plan_statement(principal, sql, true)
            .await
            .map(|(ctx, plan, _)| (ctx, plan))
    }

    /// Plans `sql`; a view statement (`CREATE VIEW`, `DROP VIEW`) is
    /// applied to the catalog when `apply` (execution) or only checked
    /// (prepare, explain), and yields an empty plan. The flag says whether
    /// it was one.
    async fn plan_statement(
        &self,
        principal: &Principal,
        sql: &str,
        apply: bool,
    ) -> Result<(SessionContext, LogicalPlan, Option<ViewChange>)> {
        may_query(principal)?;
        let ctx = self.shared_session(principal.tenant.as_deref())?;
        let plan = self
            .logical_plan(&ctx, principal.tenant.as_deref(), sql)
            .await?;
        if custom_views::is_view_ddl(&plan) {
            let change = if apply {
                custom_views::apply(self, principal, &ctx, &plan, None).await?
            } else {
                custom_views::may_manage_views(principal)?;
                ViewChange::Unchanged
            };
            return Ok((ctx, custom_views::empty_plan(), Some(change)));
        }
        sql_options().verify_plan(&plan)?;
        Ok((ctx, plan, None))
    }

    /// `sql` planned in `ctx`, the shared session of `scope`; or the plan
    /// a call made a moment ago (see `RecentPlan`). View statements are
    /// planned every time (applying one changes the catalog).
    async fn logical_plan(
        &self,
        ctx: &SessionContext,
        scope: Option<&str>,
        sql: &str,
    ) -> Result<LogicalPlan> {
        let Some(sessions) = &self.sessions else {
            return Ok(ctx.state().create_logical_plan(sql).await?);
        };
        let manifest = self.storage.manifest();
        if let Some(plan) = sessions.recent(scope, sql, &manifest.views) {
            return Ok(plan);
        }
        let plan = ctx.state().create_logical_plan(sql).await?;
        if !custom_views::is_view_ddl(&plan) {
            sessions.remember(scope, sql, &manifest.views, &plan);
        }
        Ok(plan)
    }
}

/// Makes `stream` own its session: information_schema and the views list
/// and plan tables through the session while the stream runs, after
/// `execute` has returned.
fn keep_session(
    ctx: SessionContext,
    stream: SendableRecordBatchStream,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream.map(move |batch| {
            let _session = &ctx;
            batch
        }),
    ))
}

/// Queries (and catalog browsing) need a role that may read: an `ingest`
/// token only writes.
fn may_query(principal: &Principal) -> Result<()> {
    if principal.role.can_query() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{} cannot run queries (needs a read, analyst or admin token)",
            principal.role.a_token()
        )))
    }
}

/// The statement's parameters in position order: `$2` before `$10`; named
/// ones (`$name`) after the numbered ones.
pub(crate) fn parameters(plan: &LogicalPlan) -> Result<Vec<(String, Option<DataType>)>> {
    let mut params: Vec<_> = plan.get_parameter_types()?.into_iter().collect();
    params.sort_by_key(|(id, _)| {
        let n = id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok());
        (n.is_none(), n, id.clone())
    });
    Ok(params)
}

/// Casts each bound value to its parameter's inferred type (drivers bind an
/// Int64 where a column is Int32, a string where a timestamp is expected).
pub(crate) fn bind(
    parameters: &[(String, Option<DataType>)],
    values: Vec<ScalarValue>,
) -> Result<Vec<ScalarValue>> {
    if values.len() != parameters.len() {
        return plan_err!(
            "the statement takes {} parameter(s), {} bound",
            parameters.len(),
            values.len()
        )
        .map_err(Into::into);
    }
    parameters
        .iter()
        .zip(values)
        .map(|((id, ty), value)| match ty {
            Some(ty) if value.data_type() != *ty => value.cast_to(ty).or_else(|e| {
                plan_err!(
                    "parameter {id}: cannot use a {} value as {ty}: {e}",
                    value.data_type()
                )
            }),
            _ => Ok(value),
        })
        .collect::<datafusion::error::Result<_>>()
        .map_err(Into::into)
}

#[async_trait]
impl QueryExecutor for QueryEngine {
    async fn execute(&self, principal: &Principal, sql: &str) -> Result<SendableRecordBatchStream> {
        if let Some(copy) = export::copy_statement(sql)? {
            return self.copy_to_file(principal, &copy, Vec::new()).await;
        }
        let (ctx, plan) = self.plan(principal, sql).await?;
        let df = ctx.execute_logical_plan(plan).await?;
        Ok(keep_session(ctx, df.execute_stream().await?))
    }

    async fn prepare(
        &self,
        principal: &Principal,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<StatementInfo> {
        if let Some(copy) = export::copy_statement(sql)? {
            return self.describe_copy(principal, &copy).await;
        }
        let (_, plan, _) = self.plan_statement(principal, sql, false).await?;
        let parameters = parameters(&plan)?;
        let plan = if params.is_empty() {
            plan
        } else {
            plan.with_param_values(bind(&parameters, params)?)?
        };
        Ok(StatementInfo {
            schema: Arc::clone(plan.schema().inner()),
            parameters,
        })
    }

    async fn execute_with_params(
        &self,
        principal: &Principal,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        if let Some(copy) = export::copy_statement(sql)? {
            return self.copy_to_file(principal, &copy, params).await;
        }
        let (ctx, plan) = self.plan(principal, sql).await?;
        let params = bind(&parameters(&plan)?, params)?;
        let plan = plan.with_param_values(params)?;
        let df = ctx.execute_logical_plan(plan).await?;
        Ok(keep_session(ctx, df.execute_stream().await?))
    }

    async fn catalog(&self, principal: &Principal) -> Result<CatalogListing> {
        may_query(principal)?;
        let ctx = self.shared_session(principal.tenant.as_deref())?;
        let state = ctx.state();
        let mut listing = CatalogListing::default();
        let mut catalogs = ctx.catalog_names();
        catalogs.sort();
        for catalog_name in catalogs {
            let Some(catalog) = ctx.catalog(&catalog_name) else {
                continue;
            };
            // information_schema is not one of the catalog's schemas: the
            // session resolves it (as planning does), so ask the session.
            let mut schemas = catalog.schema_names();
            if state.config().information_schema()
                && !schemas.iter().any(|s| s == INFORMATION_SCHEMA)
            {
                schemas.push(INFORMATION_SCHEMA.to_string());
            }
            schemas.sort();
            for schema_name in schemas {
                let schema = state.schema_for_ref(TableReference::full(
                    catalog_name.as_str(),
                    schema_name.as_str(),
                    "",
                ))?;
                listing
                    .schemas
                    .push((catalog_name.clone(), schema_name.clone()));
                let mut tables = schema.table_names();
                tables.sort();
                for name in tables {
                    if let Some(table) = schema.table(&name).await? {
                        listing.tables.push(TableInfo {
                            catalog: catalog_name.clone(),
                            schema: schema_name.clone(),
                            name,
                            table_type: table.table_type(),
                            arrow_schema: table.schema(),
                        });
                    }
                }
            }
        }
        Ok(listing)
    }

    async fn execute_update(&self, principal: &Principal, sql: &str) -> Result<ViewChange> {
        if export::copy_statement(sql)?.is_some() {
            return plan_err!(
                "COPY … TO 'file' answers one row (rows, path): run it as a query, not as an \
                 update"
            )
            .map_err(Into::into);
        }
        match self.plan_statement(principal, sql, true).await? {
            (_, _, Some(change)) => Ok(change),
            (_, _, None) => {
                plan_err!("this statement returns rows: run it as a query, not as an update")
                    .map_err(Into::into)
            }
        }
    }

    async fn explain(&self, principal: &Principal, sql: &str) -> Result<ExplainOutput> {
        let (ctx, plan, _) = self.plan_statement(principal, sql, false).await?;
        let df = ctx.execute_logical_plan(plan).await?;
        let logical = df.logical_plan().display_indent().to_string();
        let physical = crate::limits::unguarded(df.create_physical_plan().await?);
        let physical = datafusion::physical_plan::displayable(physical.as_ref())
            .indent(true)
            .to_string();
        Ok(ExplainOutput { logical, physical })
    }
}

/// Shared handle the server keeps.
pub type SharedExecutor = Arc<dyn QueryExecutor>;
