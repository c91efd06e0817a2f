//! The cxdb query layer: a DataFusion [`SessionContext`] per principal with
//! the `events` table (write buffer ∪ Parquet lake, pruned by tenant and
//! time), the configuration tables, the support SQL functions
//! ([`functions`]) and the predefined metric views.
//! Every protocol runs its SQL through [`QueryEngine`], under one set of
//! [`QueryLimits`] (memory, time, result rows, concurrency; `limits.rs`).

mod audit;
mod compact;
mod config_tables;
mod custom_views;
mod error;
mod events_table;
mod executor;
mod export;
pub mod functions;
mod lag;
mod limits;
mod materialized;
pub mod pruning;
mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cxdb_storage::Storage;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

pub use audit::{AuditLog, AuditRecord};
pub use config_tables::{ConfigKind, ConfigTable};
pub use custom_views::{ViewChange, ViewFileError};
pub use error::{Error, Result};
pub use events_table::{EventsTable, LAKE_URL};
pub use executor::{
    CatalogListing, ExplainOutput, Principal, QueryExecutor, SharedExecutor, StatementInfo,
    TableInfo,
};
pub use export::{ClientExport, copy_source_query, may_export};
pub use limits::{LimitExceeded, QueryLimits, default_query_memory};
pub use materialized::{MAINTAINED as MAINTAINED_VIEWS, MaintenanceStats};
pub use views::{PREDEFINED_VIEWS, PredefinedView};

/// Creates sessions over one storage engine. Clones share the memory pool
/// and the concurrency slots: every session of an engine runs under one set
/// of [`QueryLimits`].
#[derive(Debug, Clone)]
pub struct QueryEngine {
    storage: Arc<Storage>,
    /// One for every session: the memory pool is shared, and the lake's
    /// object store is registered once.
    runtime: Arc<RuntimeEnv>,
    guard: Arc<limits::Guard>,
    /// Where `COPY … TO 'file'` may write, and the audit log of exports.
    exports: Arc<export::Exports>,
    /// The maintained views' rows (`materialized.rs`), in
    /// [`materialized::MAINTAINED`] order.
    maintained: Arc<[materialized::Maintained]>,
    /// The last `journey_map()` computed (`functions/journey.rs`).
    journey_map: Arc<views::MapCache>,
    /// The sessions [`QueryExecutor`] statements run in, one per tenant
    /// scope. `None` in the engine a session holds (for its maintained
    /// views): a cache there would own the session that holds it.
    sessions: Option<Arc<Sessions>>,
}

/// Sessions by tenant scope (`None`: every tenant), and the statements
/// they planned lately.
#[derive(Default)]
struct Sessions {
    by_scope: Mutex<HashMap<Option<String>, SessionContext>>,
    recent: Mutex<HashMap<(Option<String>, String), RecentPlan>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({})", lock(&self.by_scope).len())
    }
}

/// At most this many scopes' sessions are kept (then they are all dropped
/// and made again as statements come).
const MAX_CACHED_SESSIONS: usize = 1024;

/// A statement's logical plan, kept for the calls that follow its first:
/// a Flight SQL client (ADBC) sends one query as `CreatePreparedStatement`,
/// `GetFlightInfo` and `DoGet`, each of which would parse and plan the SQL
/// again (the handles carry only the text). A logical plan names its
/// tables; rows are read at execution, so reusing it is safe while the
/// custom views it may have expanded are unchanged.
struct RecentPlan {
    plan: datafusion::logical_expr::LogicalPlan,
    custom_views: Vec<cxdb_storage::catalog::ViewRecord>,
    at: std::time::Instant,
}

/// How long a plan is reused: long enough for the calls of one query.
const RECENT_PLAN_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// At most this many recent plans are kept (then the expired go, or all).
const MAX_RECENT_PLANS: usize = 256;

impl Sessions {
    /// The plan of `sql` in `scope` made less than [`RECENT_PLAN_TTL`] ago
    /// with the same custom views.
    fn recent(
        &self,
        scope: Option<&str>,
        sql: &str,
        custom_views: &[cxdb_storage::catalog::ViewRecord],
    ) -> Option<datafusion::logical_expr::LogicalPlan> {
        let key = (scope.map(str::to_string), sql.to_string());
        let recent = lock(&self.recent);
        let hit = recent.get(&key)?;
        (hit.at.elapsed() < RECENT_PLAN_TTL && hit.custom_views == custom_views)
            .then(|| hit.plan.clone())
    }

    fn remember(
        &self,
        scope: Option<&str>,
        sql: &str,
        custom_views: &[cxdb_storage::catalog::ViewRecord],
        plan: &datafusion::logical_expr::LogicalPlan,
    ) {
        let mut recent = lock(&self.recent);
        if recent.len() >= MAX_RECENT_PLANS {
            recent.retain(|_, p| p.at.elapsed() < RECENT_PLAN_TTL);
            if recent.len() >= MAX_RECENT_PLANS {
                recent.clear();
            }
        }
        recent.insert(
            (scope.map(str::to_string), sql.to_string()),
            RecentPlan {
                plan: plan.clone(),
                custom_views: custom_views.to_vec(),
                at: std::time::Instant::now(),
            },
        );
    }
}

impl QueryEngine {
    pub fn new(storage: Arc<Storage>, limits: QueryLimits) -> Result<Self> {
        let guard = Arc::new(limits::Guard::new(limits));
        let mut runtime = RuntimeEnvBuilder::new().with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        );
        if let Some(pool) = guard.memory_pool() {
            runtime = runtime.with_memory_pool(pool);
        }
        let runtime = runtime.build_arc()?;
        let url = url::Url::parse(LAKE_URL).map_err(|e| Error::Internal(e.to_string()))?;
        runtime.register_object_store(&url, Arc::clone(&storage.lake().store));
        let audit = AuditLog::open(storage.config().data_dir.join("audit"))?;
        let maintained = materialized::MAINTAINED
            .iter()
            .map(|view| {
                materialized::Maintained::new(
                    view,
                    storage.subscribe_conversation_changes(materialized::MAX_UPDATE_CONVERSATIONS),
                )
            })
            .collect();
        Ok(Self {
            storage,
            maintained,
            journey_map: Arc::default(),
            sessions: Some(Arc::default()),
            runtime,
            guard,
            exports: Arc::new(export::Exports {
                location: None,
                audit,
            }),
        })
    }

    /// Allows `COPY … TO 'file'` into `location` (`--export-dir`): a local
    /// directory (created if missing) or an object store URL prefix.
    pub fn with_export_location(mut self, location: &str) -> Result<Self> {
        let (location, store) = export::ExportLocation::open(location)?;
        let url =
            url::Url::parse(export::EXPORT_URL).map_err(|e| Error::Internal(e.to_string()))?;
        self.runtime.register_object_store(&url, store);
        self.exports = Arc::new(export::Exports {
            location: Some(location),
            audit: self.exports.audit.clone(),
        });
        Ok(self)
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// A new session seeing every tenant (`scope = None`) or only one:
    /// the caller may change it (pgwire installs its catalog).
    pub fn session(&self, scope: Option<&str>) -> Result<SessionContext> {
        self.build_session(scope, Some(Served::All))
    }

    /// The session statements of `scope` run in, made once and kept: a
    /// session costs functions and views to build, and a view planned in it
    /// stays planned for the next statement (`views.rs`). Sharing is safe
    /// because nothing run through [`QueryExecutor`] changes a session:
    /// DDL, DML and `SET` are refused, custom views go to the catalog, and
    /// every table reads storage at scan time.
    pub(crate) fn shared_session(&self, scope: Option<&str>) -> Result<SessionContext> {
        let Some(sessions) = &self.sessions else {
            return self.session(scope);
        };
        let key = scope.map(str::to_string);
        if let Some(ctx) = lock(&sessions.by_scope).get(&key) {
            return Ok(ctx.clone());
        }
        // Built outside the lock; two racing first statements build two and
        // keep one.
        let ctx = self.session(scope)?;
        let mut sessions = lock(&sessions.by_scope);
        if sessions.len() >= MAX_CACHED_SESSIONS {
            sessions.clear();
        }
        Ok(sessions.entry(key).or_insert(ctx).clone())
    }

    /// An unscoped session that computes maintained rows, outside the query
    /// limits but in the shared memory pool: the maintained views other
    /// than `computing` are read maintained; with `None`, every view is
    /// plain (a computation over a few conversations' events).
    pub(crate) fn internal_session(
        &self,
        computing: Option<&'static str>,
    ) -> Result<SessionContext> {
        self.build_session(None, computing.map(Served::AllBut))
    }

    pub(crate) fn maintained(
        &self,
        view: &str,
    ) -> datafusion::common::Result<&materialized::Maintained> {
        materialized::MAINTAINED
            .iter()
            .position(|v| *v == view)
            .and_then(|i| self.maintained.get(i))
            .ok_or_else(|| {
                datafusion::common::DataFusionError::Internal(format!("{view} is not maintained"))
            })
    }

    /// Brings every maintained view up to date (built from every event the
    /// first time).
    pub async fn warm_up(&self) -> Result<()> {
        for m in self.maintained.iter() {
            m.read(self, |_| false).await?;
        }
        Ok(())
    }

    /// How the maintained rows of `view` were kept up to date (`None`: it is
    /// not a maintained view).
    pub fn maintenance_stats(&self, view: &str) -> Option<MaintenanceStats> {
        self.maintained(view).ok().map(|m| m.stats())
    }

    fn build_session(&self, scope: Option<&str>, served: Option<Served>) -> Result<SessionContext> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("cxdb", "public");
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_default_features();
        // Queries run under the limits. The computation of the maintained
        // state does not: it runs inside a query (which holds a slot and
        // its time limit) or at start, must not wait for a second slot,
        // and its rows are not a result; it shares the memory pool.
        state = if served == Some(Served::All) {
            state.with_query_planner(Arc::new(limits::LimitedPlanner {
                guard: Arc::clone(&self.guard),
            }))
        } else {
            state.with_query_planner(Arc::new(lag::Planner))
        };
        let state = state.build();
        let ctx = SessionContext::new_with_state(state);
        // Before anything that plans SQL (views) can refer to them.
        functions::register_all_live(&ctx, Arc::clone(&self.storage), scope);
        views::install(
            &ctx,
            views::CustomViews {
                storage: Arc::clone(&self.storage),
                scope: scope.map(str::to_string),
            },
            served.map(|served| views::Materialized {
                engine: Self {
                    sessions: None,
                    ..self.clone()
                },
                scope: scope.map(str::to_string),
                except: match served {
                    Served::All => None,
                    Served::AllBut(view) => Some(view),
                },
            }),
            Arc::clone(&self.journey_map),
        )?;
        let scope = scope.map(str::to_string);
        ctx.register_table(
            "events",
            Arc::new(EventsTable::new(Arc::clone(&self.storage), scope.clone())),
        )?;
        ctx.register_table(
            "audit_log",
            Arc::new(audit::AuditTable::new(
                self.exports.audit.clone(),
                scope.clone(),
            )),
        )?;
        for kind in [ConfigKind::BusinessCalendars, ConfigKind::SlaPolicies] {
            ctx.register_table(
                kind.table_name(),
                Arc::new(ConfigTable::new(
                    Arc::clone(&self.storage),
                    kind,
                    scope.clone(),
                )),
            )?;
        }
        Ok(ctx)
    }
}

/// Locks a mutex whose data is whole after any panic (maps and caches
/// updated in one step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The only one of `inputs`, for a node (`what`) with one input.
pub(crate) fn only_input<T>(mut inputs: Vec<T>, what: &str) -> datafusion::common::Result<T> {
    match (inputs.pop(), inputs.is_empty()) {
        (Some(input), true) => Ok(input),
        _ => Err(datafusion::common::DataFusionError::Internal(format!(
            "{what} takes exactly one input"
        ))),
    }
}

/// Which maintained views a session reads maintained rather than plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// Every one (sessions that run queries).
    All,
    /// Every one but the view being computed from every event.
    AllBut(&'static str),
}
