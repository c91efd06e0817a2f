//! Incrementally maintained per-conversation state: the rows of the
//! [`MAINTAINED`] views — `conversation_state` (sql/views/conversation_state.sql,
//! what `conversations` reads) and `replies` — kept in memory and brought up
//! to date by every query that reads them.
//!
//! Why: `conversations` is the base of most metric views (`sla_status` reads
//! it six times, `journeys` twice) and computing it means grouping every
//! conversation event several ways — 9 s over 10M events on two cores,
//! and a dashboard filter such as `created_at >= now() - INTERVAL '7 days'`
//! cannot be pushed below those aggregates; `replies` (a window over every
//! message, 3 s for one tenant of 10M events) is read twice by `sla_status`.
//! A conversation's rows in either depend only on its own events and the
//! SLA configuration, so they can be maintained the way ClickHouse maintains
//! an aggregating materialized view, per key:
//!
//! * storage tells a subscriber which `(tenant_id, conversation_id)` each
//!   write made visible, with the earliest `event_time` written
//!   ([`cxdb_storage::ConversationChanges`]);
//! * a query that reads a maintained view first takes its changes and
//!   recomputes exactly the touched conversations: the view's own SQL, planned
//!   in an unscoped session whose `events` are the touched conversations'
//!   events, read once into memory (a semi join on the touched keys, the
//!   scan pruned to `event_time >=` the earliest event any of them can have:
//!   the cached `first_event_at`, or the new events' time); their rows
//!   replace the old ones;
//! * removing events (retention) or changing calendars / SLA policies
//!   rebuilds everything, as does the first read after start (the state is
//!   not persisted: it is derived, and rebuilding costs one full
//!   computation; the server builds it at start). A rebuild of `replies`
//!   reads the maintained `conversation_state`; an update of `replies`
//!   brings `conversation_state` up to date first, for its `first_event_at`.
//!
//! Freshness is exact, not eventual: the changes of every write acknowledged
//! before a query are applied before that query reads. The time-dependent
//! column (`conversations.is_abandoned`) stays out of the state and is
//! computed at query time by the `conversations` view on top. Tenant scope
//! applies when the state is read: it is computed for every tenant, and a
//! scoped session sees only its tenant's rows.
//!
//! Readers of the same engine share one state; a refresh holds its lock, so
//! concurrent readers wait for it rather than compute the same rows twice. A
//! refresh that fails or is cancelled gives its changes back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, AsArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use async_trait::async_trait;
use cxdb_storage::catalog::{BusinessCalendar, SlaPolicy};
use cxdb_storage::{Changes, ConversationChanges, Touched};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, JoinType, Result, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::{MemTable, MemorySourceConfig};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use futures::future::BoxFuture;

use tracing::{debug, info};

use crate::QueryEngine;
use crate::compact::compact_batch;
use crate::functions::text_column;
use crate::pruning::ScanBounds;

/// The views whose rows are maintained, each after the maintained views it
/// reads. Each is keyed by `(tenant_id, conversation_id)` (one or more rows
/// per conversation), and a conversation's rows depend only on its events
/// and the SLA configuration, never on the time of the query.
pub const MAINTAINED: [&str; 2] = [CONVERSATION_STATE, "replies"];

/// Above this many touched conversations (a server that ingested for hours
/// without anyone reading the views), an update would hold all their events
/// in memory at once; a rebuild streams them through aggregations instead.
pub(crate) const MAX_UPDATE_CONVERSATIONS: usize = 50_000;

/// The per-conversation facts; its `first_event_at` bounds every
/// maintained view's recomputation scan.
pub(crate) const CONVERSATION_STATE: &str = "conversation_state";

/// The configuration a state was computed under.
type Config = (Vec<BusinessCalendar>, Vec<SlaPolicy>);

/// The maintained rows of one view in one engine.
#[derive(Debug)]
pub(crate) struct Maintained {
    view: &'static str,
    changes: Arc<ConversationChanges>,
    /// `None` until the first full computation.
    cache: tokio::sync::Mutex<Option<Built>>,
    rebuilds: AtomicU64,
    updates: AtomicU64,
    recomputed: AtomicU64,
}

/// How the maintained state has been kept up to date since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceStats {
    /// Full computations (the first read, retention, configuration changes).
    pub rebuilds: u64,
    /// Incremental updates.
    pub updates: u64,
    /// Conversations recomputed by the incremental updates.
    pub recomputed: u64,
}

#[derive(Debug)]
struct Built {
    config: Config,
    schema: SchemaRef,
    /// Each tenant's rows.
    tenants: BTreeMap<String, RecordBatch>,
}

impl Maintained {
    pub(crate) fn new(view: &'static str, changes: Arc<ConversationChanges>) -> Self {
        Self {
            view,
            changes,
            cache: tokio::sync::Mutex::new(None),
            rebuilds: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            recomputed: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> MaintenanceStats {
        MaintenanceStats {
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
            updates: self.updates.load(Ordering::Relaxed),
            recomputed: self.recomputed.load(Ordering::Relaxed),
        }
    }

    /// The earliest event any of the `touched` conversations can have
    /// (this must be the [`CONVERSATION_STATE`] state), after bringing the
    /// state up to date.
    async fn earliest_event(&self, engine: &QueryEngine, touched: &Touched) -> Result<i64> {
        self.read(engine, |_| false).await?;
        let cache = self.cache.lock().await;
        match &*cache {
            Some(built) => earliest_event(built, touched),
            None => Ok(i64::MIN),
        }
    }

    /// The up-to-date rows of the tenants `keep` accepts, and their schema.
    ///
    /// Boxed: reading one maintained view may first bring another up to date
    /// (a cycle of async calls, which needs a named, `Send` future type).
    pub(crate) fn read<'a>(
        &'a self,
        engine: &'a QueryEngine,
        keep: impl Fn(&str) -> bool + Send + 'a,
    ) -> BoxFuture<'a, Result<(SchemaRef, Vec<RecordBatch>)>> {
        Box::pin(self.read_inner(engine, keep))
    }

    async fn read_inner(
        &self,
        engine: &QueryEngine,
        keep: impl Fn(&str) -> bool + Send,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut cache = self.cache.lock().await;
        let manifest = engine.storage().manifest();
        let config: Config = (manifest.calendars.clone(), manifest.sla_policies.clone());
        let mut changes = Restore::new(&self.changes, self.changes.take());
        let rebuild = match &*cache {
            None => true,
            Some(built) => {
                changes.get().reset
                    || built.config != config
                    || changes.get().touched.len() > MAX_UPDATE_CONVERSATIONS
            }
        };
        if rebuild {
            let started = std::time::Instant::now();
            let (schema, batches) = compute(engine, self.view, None).await?;
            let tenants = by_tenant(&schema, &batches)?;
            info!(
                view = self.view,
                rows = tenants.values().map(RecordBatch::num_rows).sum::<usize>(),
                bytes = tenants
                    .values()
                    .map(RecordBatch::get_array_memory_size)
                    .sum::<usize>(),
                secs = started.elapsed().as_secs_f64(),
                "maintained view built from every event"
            );
            *cache = Some(Built {
                config,
                tenants,
                schema,
            });
            self.rebuilds.fetch_add(1, Ordering::Relaxed);
        } else if !changes.get().touched.is_empty() {
            let built = cache.as_mut().expect("built above");
            let touched = &changes.get().touched;
            let started = std::time::Instant::now();
            let earliest = if self.view == CONVERSATION_STATE {
                earliest_event(built, touched)?
            } else {
                engine
                    .maintained(CONVERSATION_STATE)?
                    .earliest_event(engine, touched)
                    .await?
            };
            update(engine, self.view, built, touched, earliest).await?;
            debug!(
                view = self.view,
                conversations = touched.len(),
                secs = started.elapsed().as_secs_f64(),
                "maintained view updated"
            );
            self.updates.fetch_add(1, Ordering::Relaxed);
            self.recomputed
                .fetch_add(touched.len() as u64, Ordering::Relaxed);
        }
        changes.applied();
        let built = cache.as_ref().expect("built above");
        let batches = built
            .tenants
            .iter()
            .filter(|(tenant, _)| keep(tenant))
            .map(|(_, b)| b.clone())
            .collect();
        Ok((Arc::clone(&built.schema), batches))
    }
}

/// Gives taken changes back unless they were applied.
struct Restore<'a> {
    target: &'a ConversationChanges,
    changes: Option<Changes>,
}

impl<'a> Restore<'a> {
    fn new(target: &'a ConversationChanges, changes: Changes) -> Self {
        Self {
            target,
            changes: Some(changes),
        }
    }

    fn get(&mut self) -> &Changes {
        self.changes.get_or_insert_with(Changes::default)
    }

    fn applied(&mut self) {
        self.changes = None;
    }
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Some(changes) = self.changes.take() {
            self.target.restore(changes);
        }
    }
}

/// The view's rows for every conversation (`only = None`) or for the given
/// keys, read from events at or after `since`.
async fn compute(
    engine: &QueryEngine,
    view: &'static str,
    only: Option<(&HashSet<(String, String)>, i64)>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    // From every event, the maintained views `view` reads are read
    // maintained; over a few conversations' events, everything is plain.
    let ctx = engine
        .internal_session(only.is_none().then_some(view))
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    if let Some((keys, since)) = only {
        let (tenants, conversations): (Vec<&str>, Vec<&str>) =
            keys.iter().map(|(t, c)| (t.as_str(), c.as_str())).unzip();
        let keys = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("k_tenant_id", DataType::Utf8, false),
                Field::new("k_conversation_id", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(StringArray::from(tenants)),
                Arc::new(StringArray::from(conversations)),
            ],
        )?;
        let keys = ctx.read_table(Arc::new(MemTable::try_new(
            keys.schema(),
            vec![vec![keys]],
        )?))?;
        let distinct_tenants: HashSet<&str> = only
            .map(|(k, _)| k.iter().map(|(t, _)| t.as_str()).collect())
            .unwrap_or_default();
        let since = ScalarValue::TimestampMicrosecond(Some(since), Some("UTC".into()));
        let restricted = ctx
            .table("events")
            .await?
            .filter(
                col("tenant_id")
                    .in_list(distinct_tenants.into_iter().map(lit).collect(), false)
                    .and(col("event_time").gt_eq(lit(since))),
            )?
            .join(
                keys,
                JoinType::LeftSemi,
                &["tenant_id", "conversation_id"],
                &["k_tenant_id", "k_conversation_id"],
                None,
            )?;
        // Read once: the view reads `events` in several places (its CTEs,
        // `handoffs`, `bot_sessions`), each of which would scan the files
        // again.
        let schema: SchemaRef = Arc::new(restricted.schema().as_arrow().clone());
        let events = collect_compact(restricted).await?;
        ctx.deregister_table("events")?;
        ctx.register_table("events", Arc::new(MemTable::try_new(schema, vec![events])?))?;
    }
    let df = ctx.sql(&format!("SELECT * FROM {view}")).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = collect_compact(df).await?;
    Ok((schema, batches))
}

/// The rows of `df`, each batch compacted as it arrives (see compact.rs):
/// rows kept in memory must not pin the batches they were computed from.
async fn collect_compact(df: DataFrame) -> Result<Vec<RecordBatch>> {
    let mut stream = df.execute_stream().await?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        out.push(compact_batch(&batch?)?);
    }
    Ok(out)
}

/// The earliest event any touched conversation can have: the earliest one
/// just written, or the first event of its cached row (`first_event_at` of
/// [`CONVERSATION_STATE`], whose rows `built` must be).
fn earliest_event(built: &Built, touched: &Touched) -> Result<i64> {
    let mut since = touched.values().copied().min().unwrap_or(i64::MAX);
    let first_event = built.schema.index_of("first_event_at")?;
    let conversation_col = built.schema.index_of("conversation_id")?;
    for (tenant, conversations) in touched_by_tenant(touched) {
        let Some(batch) = built.tenants.get(tenant) else {
            continue;
        };
        let ids = text_column(batch.column(conversation_col), "conversation_id")?;
        let firsts = batch
            .column(first_event)
            .as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            if firsts.is_valid(i) && conversations.contains(ids.value(i)) {
                since = since.min(firsts.value(i));
            }
        }
    }
    Ok(since)
}

fn touched_by_tenant(touched: &Touched) -> HashMap<&str, HashSet<&str>> {
    let mut by_tenant: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (tenant, conversation) in touched.keys() {
        by_tenant
            .entry(tenant.as_str())
            .or_default()
            .insert(conversation.as_str());
    }
    by_tenant
}

/// Recomputes the rows of the touched conversations from their events
/// (none earlier than `since`) and swaps them in.
async fn update(
    engine: &QueryEngine,
    view: &'static str,
    built: &mut Built,
    touched: &Touched,
    since: i64,
) -> Result<()> {
    let conversation_col = built.schema.index_of("conversation_id")?;
    let keys: HashSet<(String, String)> = touched.keys().cloned().collect();
    let (_, fresh) = compute(engine, view, Some((&keys, since))).await?;
    let fresh = by_tenant(&built.schema, &fresh)?;
    for (tenant, conversations) in touched_by_tenant(touched) {
        let kept = match built.tenants.get(tenant) {
            Some(batch) => {
                let ids = text_column(batch.column(conversation_col), "conversation_id")?;
                let keep: arrow::array::BooleanArray = (0..batch.num_rows())
                    .map(|i| Some(!conversations.contains(ids.value(i))))
                    .collect();
                Some(filter_record_batch(batch, &keep)?)
            }
            None => None,
        };
        let parts: Vec<&RecordBatch> = kept.iter().chain(fresh.get(tenant)).collect();
        let merged = concat_batches(&built.schema, parts)?;
        if merged.num_rows() == 0 {
            built.tenants.remove(tenant);
        } else {
            built.tenants.insert(tenant.to_string(), merged);
        }
    }
    Ok(())
}

/// Splits rows into one batch per tenant.
fn by_tenant(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<BTreeMap<String, RecordBatch>> {
    let all = concat_batches(schema, batches)?;
    let tenants = text_column(all.column(schema.index_of("tenant_id")?), "tenant_id")?;
    let mut rows: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for i in 0..all.num_rows() {
        let row = u32::try_from(i)
            .map_err(|_| DataFusionError::Internal("more than 2^32 conversations".into()))?;
        rows.entry(tenants.value(i).to_string())
            .or_default()
            .push(row);
    }
    rows.into_iter()
        .map(|(tenant, rows)| {
            let batch = take_record_batch(&all, &UInt32Array::from(rows))?;
            Ok((tenant, batch))
        })
        .collect()
}

/// A maintained view in a session: its maintained rows, scoped.
#[derive(Debug)]
pub(crate) struct StateTable {
    view: &'static str,
    /// The view's `CREATE VIEW` text (what catalogs show).
    definition: Option<String>,
    engine: QueryEngine,
    scope: Option<String>,
    schema: SchemaRef,
}

impl StateTable {
    pub(crate) fn new(
        view: &'static str,
        definition: Option<String>,
        engine: QueryEngine,
        scope: Option<String>,
        schema: SchemaRef,
    ) -> Self {
        Self {
            view,
            definition,
            engine,
            scope,
            schema,
        }
    }
}

#[async_trait]
impl TableProvider for StateTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.definition.as_deref()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(crate::pruning::inexact(filters))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bounds = ScanBounds::of_scan(filters, self.scope.as_deref());
        let (schema, batches) = self
            .engine
            .maintained(self.view)?
            .read(&self.engine, |tenant| bounds.keeps_tenant(tenant))
            .await?;
        if schema.fields() != self.schema.fields() {
            return Err(DataFusionError::Internal(format!(
                "{}: the maintained rows do not have the view's schema",
                self.view
            )));
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_rows_by_tenant() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("conversation_id", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["b", "a", "b"])),
                Arc::new(StringArray::from(vec!["1", "2", "3"])),
            ],
        )?;
        let split = by_tenant(&schema, &[batch])?;
        assert_eq!(split.keys().collect::<Vec<_>>(), ["a", "b"]);
        let b = split["b"].column(1).as_string::<i32>();
        assert_eq!(b.iter().flatten().collect::<Vec<_>>(), ["1", "3"]);
        Ok(())
    }
}
