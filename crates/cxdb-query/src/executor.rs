//! The one entry point every protocol uses to run SQL (InfluxDB 3's
//! `QueryExecutor` pattern): protocols stay thin, and every protocol runs the
//! same statement the same way, under the same principal.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionContext};

use crate::{QueryEngine, Result};

/// Who runs a query. `tenant = Some(t)` scopes every table to tenant `t`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    pub tenant: Option<String>,
}

impl Principal {
    /// Sees every tenant (`--auth none`, admin tokens).
    pub fn unscoped() -> Self {
        Self::default()
    }
}

/// The plans of a statement, for `Explain`.
#[derive(Debug, Clone)]
pub struct ExplainOutput {
    pub logical: String,
    pub physical: String,
}

#[async_trait]
pub trait QueryExecutor: Send + Sync + std::fmt::Debug {
    /// Plans and starts `sql`; results stream batch by batch.
    async fn execute(&self, principal: &Principal, sql: &str) -> Result<SendableRecordBatchStream>;

    async fn explain(&self, principal: &Principal, sql: &str) -> Result<ExplainOutput>;
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
        let ctx = self.session(principal.tenant.as_deref())?;
        let plan = ctx.state().create_logical_plan(sql).await?;
        sql_options().verify_plan(&plan)?;
        Ok((ctx, plan))
    }
}

#[async_trait]
impl QueryExecutor for QueryEngine {
    async fn execute(&self, principal: &Principal, sql: &str) -> Result<SendableRecordBatchStream> {
        let (ctx, plan) = self.plan(principal, sql).await?;
        let df = ctx.execute_logical_plan(plan).await?;
        Ok(df.execute_stream().await?)
    }

    async fn explain(&self, principal: &Principal, sql: &str) -> Result<ExplainOutput> {
        let (ctx, plan) = self.plan(principal, sql).await?;
        let df = ctx.execute_logical_plan(plan).await?;
        let logical = df.logical_plan().display_indent().to_string();
        let physical = df.create_physical_plan().await?;
        let physical = datafusion::physical_plan::displayable(physical.as_ref())
            .indent(true)
            .to_string();
        Ok(ExplainOutput { logical, physical })
    }
}

/// Shared handle the server keeps.
pub type SharedExecutor = Arc<dyn QueryExecutor>;
