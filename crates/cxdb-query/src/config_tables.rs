//! `business_calendars` and `sla_policies` (SPEC §2): read-only SQL views
//! of the catalog, read at scan time so they are never stale.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Date32Builder, Int64Array, ListBuilder, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use cxdb_storage::Storage;
use cxdb_storage::catalog::Manifest;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// Which configuration table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    BusinessCalendars,
    SlaPolicies,
}

impl ConfigKind {
    pub fn table_name(self) -> &'static str {
        match self {
            Self::BusinessCalendars => "business_calendars",
            Self::SlaPolicies => "sla_policies",
        }
    }

    fn schema(self) -> SchemaRef {
        static CALENDARS: LazyLock<SchemaRef> = LazyLock::new(|| {
            Arc::new(Schema::new(vec![
                Field::new("tenant_id", DataType::Utf8, false),
                Field::new("calendar_id", DataType::Utf8, false),
                Field::new("timezone", DataType::Utf8, false),
                // JSON: {"mon": [["09:00","17:00"]], …}
                Field::new("weekly_hours", DataType::Utf8, false),
                Field::new(
                    "holidays",
                    DataType::List(Arc::new(Field::new_list_field(DataType::Date32, true))),
                    false,
                ),
            ]))
        });
        static POLICIES: LazyLock<SchemaRef> = LazyLock::new(|| {
            let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
            Arc::new(Schema::new(vec![
                s("tenant_id", false),
                s("policy_id", false),
                s("priority", true),
                s("channel", true),
                s("calendar_id", true),
                Field::new("first_response_s", DataType::Int64, true),
                Field::new("next_response_s", DataType::Int64, true),
                Field::new("resolution_s", DataType::Int64, true),
            ]))
        });
        match self {
            Self::BusinessCalendars => Arc::clone(&CALENDARS),
            Self::SlaPolicies => Arc::clone(&POLICIES),
        }
    }

    fn batch(self, m: &Manifest, scope: Option<&str>) -> Result<RecordBatch> {
        let keep = |t: &str| scope.is_none_or(|s| s == t);
        let columns: Vec<ArrayRef> = match self {
            Self::BusinessCalendars => {
                let rows: Vec<_> = m.calendars.iter().filter(|c| keep(&c.tenant_id)).collect();
                let mut holidays = ListBuilder::new(Date32Builder::new());
                for c in &rows {
                    for d in &c.holidays {
                        holidays.values().append_value(cxdb_days(*d));
                    }
                    holidays.append(true);
                }
                vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|c| &c.tenant_id),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|c| &c.calendar_id),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|c| &c.timezone),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|c| c.weekly_hours.to_json()),
                    )),
                    Arc::new(holidays.finish()),
                ]
            }
            Self::SlaPolicies => {
                let rows: Vec<_> = m
                    .sla_policies
                    .iter()
                    .filter(|p| keep(&p.tenant_id))
                    .collect();
                let opt = |f: fn(&cxdb_storage::catalog::SlaPolicy) -> Option<&str>| {
                    Arc::new(rows.iter().map(|p| f(p)).collect::<StringArray>()) as ArrayRef
                };
                let num = |f: fn(&cxdb_storage::catalog::SlaPolicy) -> Option<i64>| {
                    Arc::new(rows.iter().map(|p| f(p)).collect::<Int64Array>()) as ArrayRef
                };
                vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|p| &p.tenant_id),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|p| &p.policy_id),
                    )),
                    opt(|p| p.priority.as_deref()),
                    opt(|p| p.channel.as_deref()),
                    opt(|p| p.calendar_id.as_deref()),
                    num(|p| p.first_response_s),
                    num(|p| p.next_response_s),
                    num(|p| p.resolution_s),
                ]
            }
        };
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// Days since 1970-01-01 of a date.
fn cxdb_days(d: chrono::NaiveDate) -> i32 {
    d.signed_duration_since(chrono::NaiveDate::default())
        .num_days() as i32
}

/// A configuration table for one session.
#[derive(Debug)]
pub struct ConfigTable {
    storage: Arc<Storage>,
    kind: ConfigKind,
    scope: Option<String>,
}

impl ConfigTable {
    pub fn new(storage: Arc<Storage>, kind: ConfigKind, scope: Option<String>) -> Self {
        Self {
            storage,
            kind,
            scope,
        }
    }
}

#[async_trait]
impl TableProvider for ConfigTable {
    fn schema(&self) -> SchemaRef {
        self.kind.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self
            .kind
            .batch(&self.storage.manifest(), self.scope.as_deref())?;
        MemorySourceConfig::try_new_exec(&[vec![batch]], self.kind.schema(), projection.cloned())
            .map(|e| e as Arc<dyn ExecutionPlan>)
    }
}
