//! The predefined metric views of SPEC §4, compiled in from `sql/views/*.sql`
//! (one `CREATE VIEW` a file, in the dependency order of `sql/views/ORDER`).
//!
//! Every session's default schema is a [`ViewSchema`]: a view is planned
//! through DataFusion's own `CREATE VIEW` path the first time a statement of
//! that session names it, then kept for the session. Sessions are made per
//! query, so eager registration would plan all 21 views (and their view
//! dependencies again and again) on every query; lazily, creating a session
//! costs nothing per view and a query pays only for the views it reads. The
//! files are parsed once per process. Tenant scope needs nothing here: it is
//! applied inside the `events` and configuration table scans the views read.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use async_trait::async_trait;
use datafusion::catalog::memory::MemorySchemaProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::parser::{DFParser, Statement};

// The table function journeys are built on; it belongs with the support
// functions, but their module list is another change's, so it is declared
// here, where it is registered.
#[path = "functions/journey.rs"]
mod journey;

/// One predefined view: its name (SPEC §4) and the text of its file.
#[derive(Debug, Clone, Copy)]
pub struct PredefinedView {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! view {
    ($name:literal) => {
        PredefinedView {
            name: $name,
            sql: include_str!(concat!("../../../sql/views/", $name, ".sql")),
        }
    };
}

/// Every predefined view, each after the views it reads (the order of
/// `sql/views/ORDER`; a test keeps the two equal).
pub static PREDEFINED_VIEWS: &[PredefinedView] = &[
    view!("handoffs"),
    view!("bot_sessions"),
    view!("conversations"),
    view!("replies"),
    view!("sla_status"),
    view!("csat"),
    view!("message_sentiment"),
    view!("agent_activity"),
    view!("agent_concurrency"),
    view!("agent_status_time"),
    view!("queue_status"),
    view!("channel_load"),
    view!("traffic"),
    view!("bot_performance"),
    view!("automation_runs"),
    view!("collisions"),
    view!("abandoned_conversations"),
    view!("journey_steps"),
    view!("journeys"),
    view!("commerce_tickets"),
    view!("bottlenecks"),
];

/// The files parsed once per process; a file that does not parse keeps its
/// error, reported when a query names the view.
static PARSED: LazyLock<Vec<Result<Statement, String>>> = LazyLock::new(|| {
    PREDEFINED_VIEWS
        .iter()
        .map(|v| {
            let mut statements = DFParser::parse_sql(v.sql).map_err(|e| e.to_string())?;
            match (statements.pop_front(), statements.is_empty()) {
                (Some(s), true) => Ok(s),
                _ => Err("the file must hold exactly one CREATE VIEW statement".to_string()),
            }
        })
        .collect()
});

type StateFn = Box<dyn Fn() -> Option<SessionState> + Send + Sync>;

/// A session's default schema: its tables (`events`, configuration tables,
/// anything registered later) and, under them, the predefined views.
pub(crate) struct ViewSchema {
    tables: MemorySchemaProvider,
    /// The session's current state (a weak reference: the state owns this
    /// schema, so a strong one would be a cycle).
    state: OnceLock<StateFn>,
    planned: Mutex<HashMap<&'static str, Arc<dyn TableProvider>>>,
}

impl std::fmt::Debug for ViewSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewSchema")
            .field("tables", &self.tables.table_names())
            .finish_non_exhaustive()
    }
}

impl ViewSchema {
    fn new() -> Self {
        Self {
            tables: MemorySchemaProvider::new(),
            state: OnceLock::new(),
            planned: Mutex::new(HashMap::new()),
        }
    }

    /// Connects the schema to the session that owns it; views can be planned
    /// from then on.
    fn attach(&self, ctx: &datafusion::prelude::SessionContext) {
        let weak = ctx.state_weak_ref();
        let _ = self
            .state
            .set(Box::new(move || weak.upgrade().map(|s| s.read().clone())));
    }

    async fn plan(&self, index: usize) -> Result<Arc<dyn TableProvider>> {
        let view = PREDEFINED_VIEWS[index];
        let context = |e: DataFusionError| {
            e.context(format!(
                "predefined view {} (sql/views/{}.sql)",
                view.name, view.name
            ))
        };
        let statement = PARSED[index]
            .as_ref()
            .map_err(|e| context(DataFusionError::Plan(e.clone())))?;
        let state = self
            .state
            .get()
            .and_then(|state| state())
            .ok_or_else(|| context(DataFusionError::Internal("session is gone".into())))?;
        let plan = state
            .statement_to_plan(statement.clone())
            .await
            .map_err(context)?;
        let LogicalPlan::Ddl(DdlStatement::CreateView(create)) = plan else {
            return Err(context(DataFusionError::Plan(
                "the file must hold a CREATE VIEW statement".into(),
            )));
        };
        let input = Arc::unwrap_or_clone(create.input);
        Ok(Arc::new(ViewTable::new(input, create.definition)))
    }
}

/// Makes a [`ViewSchema`] the default schema of a fresh session, before
/// any table is registered in it.
pub(crate) fn install(ctx: &datafusion::prelude::SessionContext) -> Result<()> {
    let (catalog, schema_name) = {
        let state = ctx.state_ref();
        let state = state.read();
        let defaults = &state.config().options().catalog;
        (
            defaults.default_catalog.clone(),
            defaults.default_schema.clone(),
        )
    };
    let catalog = ctx
        .catalog(&catalog)
        .ok_or_else(|| DataFusionError::Internal(format!("no catalog {catalog}")))?;
    ctx.register_udtf("journey_map", Arc::new(journey::JourneyMapFunction));
    let schema = Arc::new(ViewSchema::new());
    schema.attach(ctx);
    catalog.register_schema(&schema_name, schema)?;
    Ok(())
}

fn view_index(name: &str) -> Option<usize> {
    PREDEFINED_VIEWS.iter().position(|v| v.name == name)
}

#[async_trait]
impl SchemaProvider for ViewSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.tables.table_names();
        for v in PREDEFINED_VIEWS {
            if !self.tables.table_exist(v.name) {
                names.push(v.name.to_string());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.tables.table(name).await? {
            return Ok(Some(table));
        }
        let Some(index) = view_index(name) else {
            return Ok(None);
        };
        let name = PREDEFINED_VIEWS[index].name;
        if let Some(view) = self.planned().get(name) {
            return Ok(Some(Arc::clone(view)));
        }
        // Not holding the lock while planning: a view's plan looks up the
        // views it reads through this same schema.
        let view = self.plan(index).await?;
        self.planned().insert(name, Arc::clone(&view));
        Ok(Some(view))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.tables.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.tables.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.table_exist(name) || view_index(name).is_some()
    }
}

impl ViewSchema {
    fn planned(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Arc<dyn TableProvider>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.planned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_follow_the_order_file() {
        let order: Vec<&str> = include_str!("../../../sql/views/ORDER")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let names: Vec<&str> = PREDEFINED_VIEWS.iter().map(|v| v.name).collect();
        assert_eq!(order, names);
    }

    #[test]
    fn every_file_is_one_create_view_of_its_name() {
        for (view, parsed) in PREDEFINED_VIEWS.iter().zip(PARSED.iter()) {
            let statement = parsed
                .as_ref()
                .unwrap_or_else(|e| panic!("{}: {e}", view.name));
            let text = statement.to_string();
            let expected = format!("CREATE VIEW {} AS ", view.name);
            assert!(
                text.starts_with(&expected),
                "{}: {}",
                view.name,
                &text[..text.len().min(80)]
            );
        }
    }
}
