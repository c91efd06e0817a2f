//! Support-specific SQL functions (SPEC §4), registered on every session by
//! [`register_all`]:
//!
//! | function | returns |
//! |---|---|
//! | `business_seconds(start, end, calendar_id [, tenant_id])` | DOUBLE: seconds of `[start, end)` inside the calendar's opening hours |
//! | `business_add(start, seconds, calendar_id [, tenant_id])` | TIMESTAMP(µs, UTC): when `seconds` business seconds have elapsed |
//! | `sla_policy_for(tenant_id, priority, channel)` | TEXT: the most specific matching SLA policy id |
//! | `sentiment(text)` | DOUBLE in [-1, 1]: VADER lexicon and rules |
//!
//! `date_trunc` is DataFusion's own, with timestamps in UTC truncated by
//! arithmetic instead of a time-zone conversion per value ([`UtcDateTrunc`]).
//!
//! The calendar and SLA functions read a [`CatalogSnapshot`] narrowed to the
//! session's tenant scope, so a scoped session can neither see nor probe
//! another tenant's configuration. Server sessions ([`register_all_live`])
//! follow the catalog: a calendar or policy changed while a pgwire
//! connection is open is in its next statement, as the configuration tables
//! are.

mod business_add;
mod business_clock;
mod business_seconds;
mod date_trunc;
pub mod sentiment;
mod sla_policy_for;
mod snapshot;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, TimeUnit};
use cxdb_storage::Storage;
use cxdb_storage::catalog::{BusinessCalendar, SlaPolicy};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};
use datafusion::prelude::SessionContext;
use parking_lot::Mutex;

pub use business_add::BusinessAdd;
pub use business_clock::{BusinessClock, MAX_SPAN_DAYS};
pub use business_seconds::BusinessSeconds;
pub use date_trunc::UtcDateTrunc;
pub use sentiment::{Sentiment, SentimentScorer};
pub use sla_policy_for::SlaPolicyFor;
pub use snapshot::{CatalogSnapshot, CompiledCalendar};

/// Registers every support function on `ctx`, reading the fixed `snapshot`.
pub fn register_all(ctx: &SessionContext, snapshot: Arc<CatalogSnapshot>) {
    register(ctx, SnapshotRef(Arc::new(Live::fixed(snapshot))));
}

/// Registers every support function on `ctx`, reading the calendars and SLA
/// policies of `storage`'s current catalog visible to `scope`.
pub fn register_all_live(ctx: &SessionContext, storage: Arc<Storage>, scope: Option<&str>) {
    register(ctx, SnapshotRef(Arc::new(Live::following(storage, scope))));
}

fn register(ctx: &SessionContext, snapshot: SnapshotRef) {
    ctx.register_udf(ScalarUDF::from(BusinessSeconds::new(snapshot.clone())));
    ctx.register_udf(ScalarUDF::from(BusinessAdd::new(snapshot.clone())));
    ctx.register_udf(ScalarUDF::from(SlaPolicyFor::new(snapshot)));
    ctx.register_udf(ScalarUDF::from(Sentiment::new()));
    ctx.register_udf(ScalarUDF::from(UtcDateTrunc::new()));
}

/// A snapshot compared by identity, so the function structs can be `Eq +
/// Hash` as DataFusion requires without comparing whole catalogs.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotRef(Arc<Live>);

impl SnapshotRef {
    /// The snapshot to evaluate a batch with.
    pub(crate) fn get(&self) -> Arc<CatalogSnapshot> {
        self.0.current()
    }
}

/// The configuration the functions read: fixed, or following a storage's
/// catalog (recompiled when its calendars or policies change).
#[derive(Debug)]
pub(crate) struct Live {
    source: Option<(Arc<Storage>, Option<String>)>,
    current: Mutex<(Vec<BusinessCalendar>, Vec<SlaPolicy>, Arc<CatalogSnapshot>)>,
}

impl Live {
    fn fixed(snapshot: Arc<CatalogSnapshot>) -> Self {
        Self {
            source: None,
            current: Mutex::new((Vec::new(), Vec::new(), snapshot)),
        }
    }

    fn following(storage: Arc<Storage>, scope: Option<&str>) -> Self {
        let manifest = storage.manifest();
        let snapshot = Arc::new(CatalogSnapshot::new(&manifest, scope));
        Self {
            current: Mutex::new((
                manifest.calendars.clone(),
                manifest.sla_policies.clone(),
                snapshot,
            )),
            source: Some((storage, scope.map(str::to_string))),
        }
    }

    fn current(&self) -> Arc<CatalogSnapshot> {
        let mut current = self.current.lock();
        if let Some((storage, scope)) = &self.source {
            let manifest = storage.manifest();
            if manifest.calendars != current.0 || manifest.sla_policies != current.1 {
                *current = (
                    manifest.calendars.clone(),
                    manifest.sla_policies.clone(),
                    Arc::new(CatalogSnapshot::new(&manifest, scope.as_deref())),
                );
            }
        }
        Arc::clone(&current.2)
    }
}

impl PartialEq for SnapshotRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SnapshotRef {}

impl Hash for SnapshotRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

/// The type every timestamp argument is cast to.
pub(crate) fn timestamp_utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

/// Coercion of a timestamp argument: any timestamp unit or zone, dates, and
/// RFC 3339 strings become `Timestamp(µs, "UTC")`.
pub(crate) fn coerce_timestamp(function: &str, arg: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Timestamp(_, _)
        | DataType::Date32
        | DataType::Date64
        | DataType::Null
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => Ok(timestamp_utc()),
        other => plan_err!("{function}: {arg} must be a timestamp, got {other}"),
    }
}

pub(crate) fn coerce_text(function: &str, arg: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            Ok(DataType::Utf8)
        }
        DataType::Dictionary(_, v)
            if matches!(
                v.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            Ok(DataType::Utf8)
        }
        other => plan_err!("{function}: {arg} must be text, got {other}"),
    }
}

pub(crate) fn coerce_float(function: &str, arg: &str, t: &DataType) -> Result<DataType> {
    if t.is_numeric() || *t == DataType::Null {
        Ok(DataType::Float64)
    } else {
        plan_err!("{function}: {arg} must be a number, got {t}")
    }
}

/// Resolves the calendar argument row by row, remembering the last one so a
/// constant calendar costs one lookup per batch.
pub(crate) struct CalendarResolver<'a> {
    function: &'static str,
    snapshot: &'a CatalogSnapshot,
    last: Option<(String, Option<String>, CompiledCalendar)>,
}

impl<'a> CalendarResolver<'a> {
    pub(crate) fn new(function: &'static str, snapshot: &'a CatalogSnapshot) -> Self {
        Self {
            function,
            snapshot,
            last: None,
        }
    }

    /// `None` for a null calendar id (24×7 calendar time).
    pub(crate) fn resolve(
        &mut self,
        calendar: &StringArray,
        tenant: Option<&StringArray>,
        row: usize,
    ) -> Result<Option<&BusinessClock>> {
        if calendar.is_null(row) {
            return Ok(None);
        }
        let id = calendar.value(row);
        let tenant = tenant.and_then(|t| t.is_valid(row).then(|| t.value(row)));
        let hit = matches!(&self.last, Some((i, t, _)) if i == id && t.as_deref() == tenant);
        if !hit {
            let clock = self
                .snapshot
                .calendar(id, tenant)
                .map_err(|e| exec_datafusion_err!("{}: {e}", self.function))?;
            self.last = Some((id.to_string(), tenant.map(str::to_string), clock));
        }
        match self.last.as_ref().map(|(_, _, c)| c.as_ref()) {
            Some(Ok(clock)) => Ok(Some(clock)),
            Some(Err(e)) => Err(exec_datafusion_err!("{}: {e}", self.function)),
            None => Err(exec_datafusion_err!(
                "{}: calendar lookup failed",
                self.function
            )),
        }
    }
}

/// The calendar and optional tenant arguments (positions 2 and 3) as strings.
pub(crate) fn calendar_args<'a>(
    function: &str,
    arrays: &'a [ArrayRef],
) -> Result<(&'a StringArray, Option<&'a StringArray>)> {
    let text = |i: usize| -> Result<&'a StringArray> {
        arrays[i]
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| exec_datafusion_err!("{function}: argument {} is not Utf8", i + 1))
    };
    let tenant = if arrays.len() > 3 {
        Some(text(3)?)
    } else {
        None
    };
    Ok((text(2)?, tenant))
}

/// The function's result: a scalar when every argument was one (DataFusion
/// expects one value then, not `number_rows`), else the array.
/// A text column of any string type as plain `Utf8` (a cast copies views'
/// bytes; `Utf8` is passed through).
pub(crate) fn text_column(array: &ArrayRef, what: &str) -> Result<StringArray> {
    let a = arrow::compute::cast(array, &DataType::Utf8)?;
    a.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| exec_datafusion_err!("{what} is not text"))
}

pub(crate) fn output(args: &[ColumnarValue], out: ArrayRef) -> Result<ColumnarValue> {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}

/// Checks the argument count of the calendar functions.
pub(crate) fn check_calendar_arity(function: &str, n: usize, usage: &str) -> Result<()> {
    if n == 3 || n == 4 {
        Ok(())
    } else {
        plan_err!("{function} takes 3 or 4 arguments ({usage}), got {n}")
    }
}
