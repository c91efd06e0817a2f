//! `journey_map()`: identity stitching for journeys (SPEC §3 "Journey").
//!
//! Identities — customer_id, lower-cased trimmed customer_email,
//! customer_phone — that share any value are one person, transitively; so
//! are the events of one conversation (a conversation has one customer, and
//! agent messages carry no identity of their own). Transitive closure is a
//! connected-components problem: in SQL it needs a recursive CTE whose rows
//! grow with paths, not with events (quadratic in a component's size, and
//! with cycles it does not terminate without a distinct UNION), so it is a
//! union-find here: one pass over the identity columns of the session's
//! `events` (tenant scope applies, as to every scan), O(n α(n)).
//!
//! Output, one row per event that has a conversation_id or an identity:
//! `(tenant_id, event_id, conversation_id, person_id)`. `person_id` names the person by its
//! smallest customer id (`customer:<id>`), else smallest e-mail
//! (`email:<address>`), else smallest phone (`phone:<number>`), else its
//! smallest conversation (`conversation:<id>`). The map is computed when the
//! statement is planned, only for the tenants the statement's filters and
//! scope allow (stitching never crosses tenants, so a tenant's map does not
//! depend on the others), and kept per engine with the storage's data
//! version: `journeys` reads it six times through `journey_steps`, and a
//! dashboard asks again and again, so it is computed once per version of
//! the data rather than per reference (10M events: ~1 GiB each time).

use std::collections::BTreeSet;

use ahash::AHashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringViewBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use cxdb_storage::Storage;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};

use crate::pruning::ScanBounds;
use datafusion::physical_plan::{ExecutionPlan, collect};

/// What `journey_map()` reads: every event that can belong to a person.
const IDENTITIES: &str = "SELECT tenant_id, event_id, conversation_id, customer_id, \
    lower(trim(customer_email)) AS email, trim(customer_phone) AS phone FROM events \
    WHERE conversation_id IS NOT NULL OR customer_id IS NOT NULL \
       OR customer_email IS NOT NULL OR customer_phone IS NOT NULL";

fn schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            // Views, as `events`' strings are: joins with `events` then
            // have plain column keys, so a tenant filter on one side is
            // inferred for the other and reaches this table's scan.
            Field::new("tenant_id", DataType::Utf8View, false),
            Field::new("event_id", DataType::Utf8View, false),
            Field::new("conversation_id", DataType::Utf8View, true),
            Field::new("person_id", DataType::Utf8View, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The last map an engine computed, with what it was computed for: the
/// storage's data version and the tenants (`None`: every tenant).
///
/// A statement that reads the map several times has them planned
/// concurrently; the lock makes the first compute it and the others wait
/// for it instead of stitching the same events at the same time.
#[derive(Debug, Default)]
pub(crate) struct MapCache {
    last: tokio::sync::Mutex<Option<(MapKey, Vec<RecordBatch>)>>,
}

type MapKey = (u64, Option<BTreeSet<String>>);

/// The table function `journey_map()` of one session.
#[derive(Debug)]
pub(crate) struct JourneyMapFunction {
    pub(crate) cache: Arc<MapCache>,
    pub(crate) storage: Arc<Storage>,
    /// The session's tenant scope.
    pub(crate) scope: Option<String>,
}

impl TableFunctionImpl for JourneyMapFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return plan_err!("journey_map() takes no arguments");
        }
        Ok(Arc::new(JourneyMap {
            cache: Arc::clone(&self.cache),
            storage: Arc::clone(&self.storage),
            scope: self.scope.clone(),
        }))
    }
}

#[derive(Debug)]
struct JourneyMap {
    cache: Arc<MapCache>,
    storage: Arc<Storage>,
    scope: Option<String>,
}

#[async_trait]
impl TableProvider for JourneyMap {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(crate::pruning::inexact(filters))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| {
                DataFusionError::Internal("journey_map() needs a SessionState".into())
            })?;
        let bounds = ScanBounds::of_scan(filters, self.scope.as_deref());
        let key = (self.storage.data_version(), bounds.tenants.clone());
        let mut last = self.cache.last.lock().await;
        let batches = match last.as_ref().filter(|(k, _)| *k == key) {
            Some((_, batches)) => batches.clone(),
            None => {
                let sql = match &bounds.tenants {
                    None => IDENTITIES.to_string(),
                    Some(tenants) => {
                        let list: Vec<String> = tenants
                            .iter()
                            .map(|t| format!("'{}'", t.replace('\'', "''")))
                            .collect();
                        format!(
                            "SELECT * FROM ({IDENTITIES}) WHERE tenant_id IN ({})",
                            if list.is_empty() {
                                "NULL".to_string()
                            } else {
                                list.join(", ")
                            }
                        )
                    }
                };
                let plan = state.create_logical_plan(&sql).await?;
                let plan = state.create_physical_plan(&plan).await?;
                let events = collect(plan, state.task_ctx()).await?;
                let batches = stitch(&events, state.config().batch_size())?;
                *last = Some((key, batches.clone()));
                batches
            }
        };
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            schema(),
            projection.cloned(),
        )?)
    }
}

/// Identity kinds, in the order person ids prefer them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Customer,
    Email,
    Phone,
    Conversation,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Customer => "customer:",
            Self::Email => "email:",
            Self::Phone => "phone:",
            Self::Conversation => "conversation:",
        }
    }
}

/// Union-find over identity nodes, with path halving and union by size.
#[derive(Default)]
struct Components {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl Components {
    fn add(&mut self) -> usize {
        self.parent.push(self.parent.len());
        self.size.push(1);
        self.parent.len() - 1
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a;
        self.size[a] += self.size[b];
    }
}

fn utf8(batch: &RecordBatch, i: usize) -> Result<StringArray> {
    crate::functions::text_column(batch.column(i), &format!("journey_map: column {i}"))
}

/// The map in batches of `batch_size` rows, each with buffers of its own:
/// one batch of all events would make every batch cut from it (a filter, a
/// hash repartition) carry, and be charged for, the whole map's strings.
fn stitch(batches: &[RecordBatch], batch_size: usize) -> Result<Vec<RecordBatch>> {
    // Nodes are keyed by strings borrowed from the input: no allocation per
    // row, only per distinct identity.
    let columns = batches
        .iter()
        .map(|b| (0..6).map(|i| utf8(b, i)).collect::<Result<Vec<_>>>())
        .collect::<Result<Vec<_>>>()?;
    let mut nodes: AHashMap<(&str, Kind, &str), usize> = AHashMap::new();
    let mut names: Vec<(Kind, &str)> = Vec::new();
    let mut sets = Components::default();
    // (batch, row, first node of the event)
    let mut events: Vec<(usize, usize, usize)> = Vec::new();
    for (b, cols) in columns.iter().enumerate() {
        let tenant = &cols[0];
        let identities = [
            (Kind::Conversation, &cols[2]),
            (Kind::Customer, &cols[3]),
            (Kind::Email, &cols[4]),
            (Kind::Phone, &cols[5]),
        ];
        for row in 0..tenant.len() {
            let t = tenant.value(row);
            let mut first = None;
            for (kind, column) in identities {
                if column.is_null(row) || column.value(row).is_empty() {
                    continue;
                }
                let value = column.value(row);
                let node = *nodes.entry((t, kind, value)).or_insert_with(|| {
                    names.push((kind, value));
                    sets.add()
                });
                match first {
                    None => first = Some(node),
                    Some(f) => sets.union(f, node),
                }
            }
            if let Some(node) = first {
                events.push((b, row, node));
            }
        }
    }
    // The preferred name of each component: smallest (kind, value).
    let mut best: AHashMap<usize, usize> = AHashMap::new();
    for node in 0..names.len() {
        let root = sets.find(node);
        let entry = best.entry(root).or_insert(node);
        if names[node] < names[*entry] {
            *entry = node;
        }
    }
    let mut person_names: AHashMap<usize, String> = AHashMap::new();
    let mut out = Vec::with_capacity(events.len().div_ceil(batch_size.max(1)));
    for chunk in events.chunks(batch_size.max(1)) {
        let mut tenant_ids = StringViewBuilder::with_capacity(chunk.len());
        let mut event_ids = StringViewBuilder::with_capacity(chunk.len());
        let mut conversation_ids = StringViewBuilder::with_capacity(chunk.len());
        let mut person_ids = StringViewBuilder::with_capacity(chunk.len());
        for &(b, row, node) in chunk {
            let root = sets.find(node);
            let person = person_names.entry(root).or_insert_with(|| {
                let (kind, value) = names[best.get(&root).copied().unwrap_or(root)];
                format!("{}{value}", kind.prefix())
            });
            let cols = &columns[b];
            tenant_ids.append_value(cols[0].value(row));
            event_ids.append_value(cols[1].value(row));
            conversation_ids.append_option((!cols[2].is_null(row)).then(|| cols[2].value(row)));
            person_ids.append_value(person.as_str());
        }
        let batch: Vec<ArrayRef> = vec![
            Arc::new(tenant_ids.finish()),
            Arc::new(event_ids.finish()),
            Arc::new(conversation_ids.finish()),
            Arc::new(person_ids.finish()),
        ];
        out.push(RecordBatch::try_new(schema(), batch)?);
    }
    Ok(out)
}

/// `journey_id(conversation_id, customer_id, customer_email, customer_phone,
/// event_time [, gap_seconds]) OVER (PARTITION BY tenant_id)`: the journey
/// of each event, as a window function — identity-stitched sessionization
/// (SPEC §4). Over the rows of its partition, the identities of a row
/// (conversation, customer id, lower-cased trimmed e-mail, trimmed phone)
/// are one person, transitively (the union-find of `journey_map()`); a
/// person's events in time order start a new journey after a gap of more
/// than `gap_seconds` (default 86,400: 24 h). The value is
/// `<person_id>#<n>`, `person_id` named as `journey_map()` names it and `n`
/// counting the person's journeys from 1. A row with no identity or no
/// event_time gets NULL. Partition by tenant_id: identities of different
/// tenants are different people, and a partition is one tenant's events.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct JourneyIdFunction {
    signature: datafusion::logical_expr::Signature,
}

impl JourneyIdFunction {
    pub(crate) fn new() -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::user_defined(
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }
}

/// The default gap that ends a journey: 24 h.
const DEFAULT_GAP_S: i64 = 86_400;

impl datafusion::logical_expr::WindowUDFImpl for JourneyIdFunction {
    fn name(&self) -> &str {
        "journey_id"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(5..=6).contains(&arg_types.len()) {
            return plan_err!(
                "journey_id(conversation_id, customer_id, customer_email, customer_phone, \
                 event_time [, gap_seconds]) takes 5 or 6 arguments, got {}",
                arg_types.len()
            );
        }
        let mut types = vec![DataType::Utf8; 4];
        types.push(DataType::Timestamp(
            arrow::datatypes::TimeUnit::Microsecond,
            Some("UTC".into()),
        ));
        if arg_types.len() == 6 {
            types.push(DataType::Int64);
        }
        Ok(types)
    }

    fn partition_evaluator(
        &self,
        _args: datafusion::logical_expr::function::PartitionEvaluatorArgs,
    ) -> Result<Box<dyn datafusion::logical_expr::PartitionEvaluator>> {
        Ok(Box::new(JourneyIdEvaluator))
    }

    fn field(
        &self,
        field_args: datafusion::logical_expr::function::WindowUDFFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Utf8,
            true,
        )))
    }
}

#[derive(Debug)]
struct JourneyIdEvaluator;

impl datafusion::logical_expr::PartitionEvaluator for JourneyIdEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let text = |i: usize| crate::functions::text_column(&values[i], "journey_id: argument");
        let columns = [
            (Kind::Conversation, text(0)?),
            (Kind::Customer, text(1)?),
            (Kind::Email, text(2)?),
            (Kind::Phone, text(3)?),
        ];
        let times = arrow::compute::cast(
            &values[4],
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        )?;
        let times = times
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal("journey_id: not a timestamp".into()))?;
        let gap_us = match values.get(5) {
            Some(gap) => {
                let gap = gap
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .ok_or_else(|| DataFusionError::Internal("journey_id: gap".into()))?;
                let gap_s = if gap.is_empty() || gap.is_null(0) {
                    DEFAULT_GAP_S
                } else {
                    gap.value(0)
                };
                if gap_s <= 0 {
                    return datafusion::common::exec_err!(
                        "journey_id: gap_seconds must be positive, got {gap_s}"
                    );
                }
                gap_s.saturating_mul(1_000_000)
            }
            None => DEFAULT_GAP_S * 1_000_000,
        };

        let mut nodes: AHashMap<(Kind, String), usize> = AHashMap::new();
        let mut names: Vec<(Kind, String)> = Vec::new();
        let mut sets = Components::default();
        let mut row_node: Vec<Option<usize>> = vec![None; num_rows];
        for (row, slot) in row_node.iter_mut().enumerate() {
            for (kind, column) in &columns {
                if column.is_null(row) {
                    continue;
                }
                // Normalised as journey_map() reads them.
                let value = match kind {
                    Kind::Email => column.value(row).trim().to_lowercase(),
                    Kind::Phone => column.value(row).trim().to_string(),
                    Kind::Customer | Kind::Conversation => column.value(row).to_string(),
                };
                if value.is_empty() {
                    continue;
                }
                let node = *nodes.entry((*kind, value.clone())).or_insert_with(|| {
                    names.push((*kind, value));
                    sets.add()
                });
                match *slot {
                    None => *slot = Some(node),
                    Some(first) => sets.union(first, node),
                }
            }
        }
        // Each person's preferred name, and its events in time order.
        let mut best: AHashMap<usize, usize> = AHashMap::new();
        for node in 0..names.len() {
            let root = sets.find(node);
            let entry = best.entry(root).or_insert(node);
            if names[node] < names[*entry] {
                *entry = node;
            }
        }
        let mut by_person: AHashMap<usize, Vec<(i64, usize)>> = AHashMap::new();
        for (row, node) in row_node.iter().enumerate() {
            if let Some(node) = node
                && !times.is_null(row)
            {
                by_person
                    .entry(sets.find(*node))
                    .or_default()
                    .push((times.value(row), row));
            }
        }
        let mut out: Vec<Option<String>> = vec![None; num_rows];
        for (root, mut rows) in by_person {
            rows.sort_unstable();
            let (kind, value) = &names[best.get(&root).copied().unwrap_or(root)];
            let person = format!("{}{value}", kind.prefix());
            let mut journey = 1;
            let mut previous: Option<i64> = None;
            for (time, row) in rows {
                if previous.is_some_and(|p| time.saturating_sub(p) > gap_us) {
                    journey += 1;
                }
                previous = Some(time);
                out[row] = Some(format!("{person}#{journey}"));
            }
        }
        Ok(Arc::new(StringArray::from(out)))
    }
}
