//! The predefined metric views of SPEC §4, compiled in from `sql/views/*.sql`
//! (one `CREATE VIEW` a file, in the dependency order of `sql/views/ORDER`).
//!
//! Every session's default schema is a [`ViewSchema`]: a view is planned
//! through DataFusion's own `CREATE VIEW` path the first time a statement of
//! that session names it, then kept for the session (until a custom view
//! changes: then every plan of the session is forgotten). Sessions live
//! long (one per tenant scope for the query executor, one per pgwire
//! connection) but are also made for one statement (exports, view files,
//! maintained views), so views are planned lazily: creating a session costs
//! nothing per view and a statement pays only for the views it reads. The
//! files are parsed once per process. Tenant scope needs nothing here: it is
//! applied inside the `events` and configuration table scans the views read.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use async_trait::async_trait;
use cxdb_storage::Storage;
use cxdb_storage::catalog::{ViewRecord, view_visible};
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

pub(crate) use journey::MapCache;

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
    view!("conversation_state"),
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

/// The views planned in a session, and the custom views there were when
/// they were planned: a view's plan holds the plans of the views it reads,
/// so any change of a custom view forgets them all (a view reading a
/// replaced view is planned again, not only the replaced one).
#[derive(Default)]
struct Planned {
    custom_views: Vec<ViewRecord>,
    views: HashMap<String, Arc<dyn TableProvider>>,
}

/// A session's default schema: its tables (`events`, configuration tables,
/// anything registered later) and, under them, the predefined views.
pub(crate) struct ViewSchema {
    tables: MemorySchemaProvider,
    /// The session's current state (a weak reference: the state owns this
    /// schema, so a strong one would be a cycle).
    state: OnceLock<StateFn>,
    /// Views planned in this session, by name.
    planned: Mutex<Planned>,
    /// The custom views this session sees, read from the catalog at each
    /// lookup so that a long-lived session (pgwire) sees views created after
    /// it started.
    custom: Option<CustomViews>,
    /// Where the maintained views read their rows; `None`: they are plain
    /// views (the sessions that compute maintained rows).
    materialized: Option<Materialized>,
}

/// Where a session reads the maintained views' rows.
#[derive(Debug, Clone)]
pub(crate) struct Materialized {
    pub(crate) engine: crate::QueryEngine,
    pub(crate) scope: Option<String>,
    /// The maintained view this session computes (plain here).
    pub(crate) except: Option<&'static str>,
}

/// Where a session finds its custom views.
#[derive(Debug, Clone)]
pub(crate) struct CustomViews {
    pub(crate) storage: Arc<Storage>,
    pub(crate) scope: Option<String>,
}

impl CustomViews {
    /// The view `name` of `views` (the catalog's) this session sees: its
    /// tenant's, else a global one.
    fn find<'a>(&self, views: &'a [ViewRecord], name: &str) -> Option<&'a ViewRecord> {
        views
            .iter()
            .find(|v| v.name == name && view_visible(v, self.scope.as_deref()))
    }

    fn names(&self) -> Vec<String> {
        let manifest = self.storage.manifest();
        manifest
            .views
            .iter()
            .filter(|v| view_visible(v, self.scope.as_deref()))
            .map(|v| v.name.clone())
            .collect()
    }
}

impl std::fmt::Debug for ViewSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewSchema")
            .field("tables", &self.tables.table_names())
            .finish_non_exhaustive()
    }
}

impl ViewSchema {
    fn new(custom: Option<CustomViews>, materialized: Option<Materialized>) -> Self {
        Self {
            tables: MemorySchemaProvider::new(),
            state: OnceLock::new(),
            planned: Mutex::default(),
            custom,
            materialized,
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
        let state = self.session_state().map_err(context)?;
        let plan = state
            .statement_to_plan(statement.clone())
            .await
            .map_err(context)?;
        view_table(plan).map_err(context)
    }

    fn session_state(&self) -> Result<SessionState> {
        self.state
            .get()
            .and_then(|state| state())
            .ok_or_else(|| DataFusionError::Internal("session is gone".into()))
    }

    /// Plans a custom view in this session: the session's tables, scope
    /// and functions, whoever created it.
    async fn plan_custom(&self, view: &ViewRecord) -> Result<Arc<dyn TableProvider>> {
        let context = |e: DataFusionError| e.context(format!("custom view {}", view.name));
        let state = self.session_state().map_err(context)?;
        let plan = state
            .create_logical_plan(&view.definition)
            .await
            .map_err(context)?;
        view_table(plan).map_err(context)
    }
}

/// The view a `CREATE VIEW` plan defines.
fn view_table(plan: LogicalPlan) -> Result<Arc<dyn TableProvider>> {
    let LogicalPlan::Ddl(DdlStatement::CreateView(create)) = plan else {
        return Err(DataFusionError::Plan(
            "a view's definition must be one CREATE VIEW statement".into(),
        ));
    };
    let input = Arc::unwrap_or_clone(create.input);
    Ok(Arc::new(ViewTable::new(input, create.definition)))
}

/// Whether `name` is a predefined view (which custom views may not shadow).
pub(crate) fn is_predefined(name: &str) -> bool {
    view_index(name).is_some()
}

/// Makes a [`ViewSchema`] the default schema of a fresh session, before
/// any table is registered in it.
pub(crate) fn install(
    ctx: &datafusion::prelude::SessionContext,
    custom: CustomViews,
    materialized: Option<Materialized>,
    journey_cache: Arc<MapCache>,
) -> Result<()> {
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
    ctx.register_udtf(
        "journey_map",
        Arc::new(journey::JourneyMapFunction {
            cache: journey_cache,
            storage: Arc::clone(&custom.storage),
            scope: custom.scope.clone(),
        }),
    );
    ctx.register_udwf(datafusion::logical_expr::WindowUDF::new_from_impl(
        journey::JourneyIdFunction::new(),
    ));
    let schema = Arc::new(ViewSchema::new(Some(custom), materialized));
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
        if let Some(custom) = &self.custom {
            for name in custom.names() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.tables.table(name).await? {
            return Ok(Some(table));
        }
        let manifest = self.custom.as_ref().map(|c| c.storage.manifest());
        let custom_views = manifest.as_ref().map_or(&[][..], |m| &m.views[..]);
        if let Some(index) = view_index(name) {
            let view = self.cached(name, custom_views, || self.plan(index)).await?;
            if let Some(m) = &self.materialized
                && let Some(maintained) = crate::materialized::MAINTAINED
                    .iter()
                    .find(|v| **v == name && m.except != Some(**v))
            {
                // The plain view's plan gives the schema; the rows come
                // from the maintained state.
                return Ok(Some(Arc::new(crate::materialized::StateTable::new(
                    maintained,
                    view.get_table_definition().map(str::to_string),
                    m.engine.clone(),
                    m.scope.clone(),
                    view.schema(),
                ))));
            }
            return Ok(Some(view));
        }
        let Some(view) = self
            .custom
            .as_ref()
            .and_then(|c| c.find(custom_views, name))
        else {
            return Ok(None);
        };
        self.cached(name, custom_views, || self.plan_custom(view))
            .await
            .map(Some)
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
        self.tables.table_exist(name)
            || view_index(name).is_some()
            || self
                .custom
                .as_ref()
                .is_some_and(|c| c.find(&c.storage.manifest().views, name).is_some())
    }
}

impl ViewSchema {
    /// The view `name`, planned on first use. `custom_views` are the
    /// catalog's (every tenant's: a change of one forgets this session's
    /// plans, which is rare and cheap), read once for the lookup.
    async fn cached<F, Fut>(
        &self,
        name: &str,
        custom_views: &[ViewRecord],
        plan: F,
    ) -> Result<Arc<dyn TableProvider>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<dyn TableProvider>>>,
    {
        {
            let mut planned = self.planned();
            if planned.custom_views != custom_views {
                planned.views.clear();
                planned.custom_views = custom_views.to_vec();
            }
            if let Some(view) = planned.views.get(name) {
                return Ok(Arc::clone(view));
            }
        }
        // Not holding the lock while planning: a view's plan looks up the
        // views it reads through this same schema.
        let view = plan().await?;
        let mut planned = self.planned();
        // Kept only if no custom view changed while it was planned.
        if planned.custom_views == custom_views {
            planned.views.insert(name.to_string(), Arc::clone(&view));
        }
        Ok(view)
    }

    fn planned(&self) -> std::sync::MutexGuard<'_, Planned> {
        crate::lock(&self.planned)
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
