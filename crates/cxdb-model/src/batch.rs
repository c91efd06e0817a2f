use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Float64Builder, Int32Array,
    Int32Builder, Int64Array, Int64Builder, ListArray, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder, new_null_array,
};
use arrow::compute::{cast, filter};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::event::{Event, EventFields, default_is_public};
use crate::schema::{EVENT_COLUMNS, events_schema};

/// Builds a `RecordBatch` of the events schema from [`Event`] rows.
pub struct EventBatchBuilder {
    strings: Vec<StringBuilder>,
    event_time: TimestampMicrosecondBuilder,
    ingested_at: TimestampMicrosecondBuilder,
    is_public: BooleanBuilder,
    csat_score: Int32Builder,
    confidence: Float64Builder,
    order_total: Float64Builder,
    duration_ms: Int64Builder,
    tags: ListBuilder<StringBuilder>,
    rows: usize,
}

/// The string columns in the order the builder keeps them.
const STRING_COLUMNS: [&str; 23] = [
    "tenant_id",
    "event_id",
    "event_type",
    "channel",
    "conversation_id",
    "ticket_id",
    "customer_id",
    "customer_email",
    "customer_phone",
    "actor_type",
    "agent_id",
    "team_id",
    "status",
    "priority",
    "message_id",
    "body",
    "bot_id",
    "intent",
    "workflow_id",
    "store",
    "order_id",
    "currency",
    "attributes",
];

fn string_values(e: &Event) -> [Option<&str>; 23] {
    [
        Some(e.tenant_id.as_str()),
        Some(e.event_id.as_str()),
        Some(e.event_type.as_str()),
        e.channel.as_deref(),
        e.conversation_id.as_deref(),
        e.ticket_id.as_deref(),
        e.customer_id.as_deref(),
        e.customer_email.as_deref(),
        e.customer_phone.as_deref(),
        e.actor_type.as_deref(),
        e.agent_id.as_deref(),
        e.team_id.as_deref(),
        e.status.as_deref(),
        e.priority.as_deref(),
        e.message_id.as_deref(),
        e.body.as_deref(),
        e.bot_id.as_deref(),
        e.intent.as_deref(),
        e.workflow_id.as_deref(),
        e.store.as_deref(),
        e.order_id.as_deref(),
        e.currency.as_deref(),
        e.attributes.as_deref(),
    ]
}

impl Default for EventBatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl EventBatchBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        let utc = || TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
        Self {
            strings: (0..STRING_COLUMNS.len())
                .map(|_| StringBuilder::with_capacity(rows, rows * 8))
                .collect(),
            event_time: utc(),
            ingested_at: utc(),
            is_public: BooleanBuilder::with_capacity(rows),
            csat_score: Int32Builder::with_capacity(rows),
            confidence: Float64Builder::with_capacity(rows),
            order_total: Float64Builder::with_capacity(rows),
            duration_ms: Int64Builder::with_capacity(rows),
            tags: ListBuilder::new(StringBuilder::new()),
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(&mut self, e: &Event) {
        for (builder, value) in self.strings.iter_mut().zip(string_values(e)) {
            builder.append_option(value);
        }
        self.event_time.append_value(e.event_time);
        self.ingested_at.append_value(e.ingested_at);
        self.is_public.append_option(e.is_public);
        self.csat_score.append_option(e.csat_score);
        self.confidence.append_option(e.confidence);
        self.order_total.append_option(e.order_total);
        self.duration_ms.append_option(e.duration_ms);
        match &e.tags {
            Some(tags) => {
                for t in tags {
                    self.tags.values().append_value(t);
                }
                self.tags.append(true);
            }
            None => self.tags.append(false),
        }
        self.rows += 1;
    }

    pub fn finish(&mut self) -> RecordBatch {
        let mut strings: Vec<ArrayRef> = self
            .strings
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let mut take = |name: &str| {
            let pos = STRING_COLUMNS.iter().position(|c| *c == name).unwrap_or(0);
            std::mem::replace(&mut strings[pos], Arc::new(StringArray::new_null(0)))
        };
        let columns: Vec<ArrayRef> = EVENT_COLUMNS
            .iter()
            .map(|name| match *name {
                "event_time" => Arc::new(self.event_time.finish()) as ArrayRef,
                "ingested_at" => Arc::new(self.ingested_at.finish()),
                "is_public" => Arc::new(self.is_public.finish()),
                "csat_score" => Arc::new(self.csat_score.finish()),
                "confidence" => Arc::new(self.confidence.finish()),
                "order_total" => Arc::new(self.order_total.finish()),
                "duration_ms" => Arc::new(self.duration_ms.finish()),
                "tags" => Arc::new(self.tags.finish()),
                other => take(other),
            })
            .collect();
        self.rows = 0;
        // Every column was built with the schema's exact type and length.
        RecordBatch::try_new(events_schema(), columns)
            .unwrap_or_else(|_| RecordBatch::new_empty(events_schema()))
    }
}

/// The columns of an Arrow batch a client sent, in the events schema's
/// order and types: nullable columns may be omitted (all null here),
/// `ingested_at` may be missing, timestamps of any unit and
/// Utf8View/LargeUtf8 strings are converted. Required columns may still hold
/// nulls: those rows fail [`EventFields::check`] ("is required").
#[derive(Debug, Clone)]
pub struct EventColumns {
    columns: Vec<ArrayRef>,
    rows: usize,
}

impl EventColumns {
    /// Unknown columns, missing required ones or wrong types are an
    /// [`Error::Schema`] naming the column.
    pub fn from_batch(batch: &RecordBatch) -> Result<Self> {
        let schema = events_schema();
        let input = batch.schema();
        for f in input.fields() {
            if schema.field_with_name(f.name()).is_err() {
                return Err(Error::Schema(format!(
                    "unknown column {:?}; the events table has the columns of SPEC §2",
                    f.name()
                )));
            }
        }
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(EVENT_COLUMNS.len());
        for field in schema.fields() {
            let Some(array) = batch.column_by_name(field.name()) else {
                if field.name() == "ingested_at" {
                    // Set on acceptance.
                    columns.push(Arc::new(
                        TimestampMicrosecondArray::from(vec![0; rows]).with_timezone("UTC"),
                    ));
                    continue;
                }
                if !field.is_nullable() {
                    return Err(Error::Schema(format!(
                        "required column {:?} is missing",
                        field.name()
                    )));
                }
                columns.push(new_null_array(field.data_type(), rows));
                continue;
            };
            let want = field.data_type();
            let got = array.data_type();
            let convertible = got == want
                || matches!(
                    (got, want),
                    (DataType::Timestamp(..), DataType::Timestamp(..))
                )
                || (*want == DataType::Utf8 && is_string(got))
                || (matches!(
                    got,
                    DataType::List(_) | DataType::LargeList(_) | DataType::ListView(_)
                ) && matches!(want, DataType::List(_)));
            if !convertible {
                return Err(Error::Schema(format!(
                    "column {:?} has type {got}, expected {want}",
                    field.name()
                )));
            }
            let array = if got == want {
                Arc::clone(array)
            } else {
                cast(array, want).map_err(|e| {
                    Error::Schema(format!(
                        "column {:?} cannot be read as {want}: {e}",
                        field.name()
                    ))
                })?
            };
            columns.push(array);
        }
        Ok(Self { columns, rows })
    }

    pub fn num_rows(&self) -> usize {
        self.rows
    }

    fn column(&self, name: &str) -> &ArrayRef {
        &self.columns[index(name)]
    }

    fn strings(&self, name: &str) -> Result<&StringArray> {
        self.column(name)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Schema(format!("column {name:?} is not Utf8")))
    }

    fn typed<T: Array + 'static>(&self, name: &str) -> Result<&T> {
        self.column(name)
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| Error::Schema(format!("column {name:?} has an unexpected type")))
    }

    /// Row-wise access to what validation looks at.
    pub fn fields(&self) -> Result<BatchFields<'_>> {
        Ok(BatchFields {
            tenant_id: self.strings("tenant_id")?,
            event_id: self.strings("event_id")?,
            event_time: self.typed("event_time")?,
            event_type: self.strings("event_type")?,
            channel: self.strings("channel")?,
            conversation_id: self.strings("conversation_id")?,
            actor_type: self.strings("actor_type")?,
            agent_id: self.strings("agent_id")?,
            status: self.strings("status")?,
            priority: self.strings("priority")?,
            csat_score: self.typed("csat_score")?,
            bot_id: self.strings("bot_id")?,
            confidence: self.typed("confidence")?,
            workflow_id: self.strings("workflow_id")?,
            store: self.strings("store")?,
            order_id: self.strings("order_id")?,
            order_total: self.typed("order_total")?,
            currency: self.strings("currency")?,
            duration_ms: self.typed("duration_ms")?,
            attributes: self.strings("attributes")?,
        })
    }

    /// The rows `keep` selects as a batch of the events schema, accepted at
    /// `ingested_at` (µs), with `is_public` defaulted for messages. The kept
    /// rows must have passed [`EventFields::check`] (no null in a required
    /// column).
    pub fn accept(&self, keep: &BooleanArray, ingested_at: i64) -> Result<RecordBatch> {
        let all_kept = keep.true_count() == self.rows;
        let mut columns: Vec<ArrayRef> = if all_kept {
            self.columns.clone()
        } else {
            self.columns
                .iter()
                .map(|c| filter(c, keep))
                .collect::<std::result::Result<_, _>>()?
        };
        let kept = keep.true_count();
        columns[index("ingested_at")] =
            Arc::new(TimestampMicrosecondArray::from(vec![ingested_at; kept]).with_timezone("UTC"));
        let event_type = columns[index("event_type")]
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Schema("column \"event_type\" is not Utf8".into()))?;
        let is_public = columns[index("is_public")]
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::Schema("column \"is_public\" is not Boolean".into()))?;
        let defaulted: BooleanArray = (0..kept)
            .map(|i| {
                let given = is_public.is_valid(i).then(|| is_public.value(i));
                default_is_public(event_type.value(i), given)
            })
            .collect();
        columns[index("is_public")] = Arc::new(defaulted);
        Ok(RecordBatch::try_new(events_schema(), columns)?)
    }
}

/// The position of a column of the events schema (every name passed here
/// is one; `EventColumns` holds every column).
fn index(name: &str) -> usize {
    EVENT_COLUMNS.iter().position(|c| *c == name).unwrap_or(0)
}

/// Typed columns of an [`EventColumns`], read row by row as [`EventFields`].
#[derive(Debug)]
pub struct BatchFields<'a> {
    tenant_id: &'a StringArray,
    event_id: &'a StringArray,
    event_time: &'a TimestampMicrosecondArray,
    event_type: &'a StringArray,
    channel: &'a StringArray,
    conversation_id: &'a StringArray,
    actor_type: &'a StringArray,
    agent_id: &'a StringArray,
    status: &'a StringArray,
    priority: &'a StringArray,
    csat_score: &'a Int32Array,
    bot_id: &'a StringArray,
    confidence: &'a Float64Array,
    workflow_id: &'a StringArray,
    store: &'a StringArray,
    order_id: &'a StringArray,
    order_total: &'a Float64Array,
    currency: &'a StringArray,
    duration_ms: &'a Int64Array,
    attributes: &'a StringArray,
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn opt<T: arrow::datatypes::ArrowPrimitiveType>(
    a: &arrow::array::PrimitiveArray<T>,
    i: usize,
) -> Option<T::Native> {
    a.is_valid(i).then(|| a.value(i))
}

impl<'a> BatchFields<'a> {
    /// Row `i`; a null in a required column reads as empty (rejected by
    /// [`EventFields::check`] as "is required").
    pub fn row(&self, i: usize) -> EventFields<'a> {
        EventFields {
            tenant_id: opt_str(self.tenant_id, i).unwrap_or_default(),
            event_id: opt_str(self.event_id, i).unwrap_or_default(),
            event_time: opt(self.event_time, i).unwrap_or(i64::MIN),
            event_type: opt_str(self.event_type, i).unwrap_or_default(),
            channel: opt_str(self.channel, i),
            conversation_id: opt_str(self.conversation_id, i),
            actor_type: opt_str(self.actor_type, i),
            agent_id: opt_str(self.agent_id, i),
            status: opt_str(self.status, i),
            priority: opt_str(self.priority, i),
            csat_score: opt(self.csat_score, i),
            bot_id: opt_str(self.bot_id, i),
            confidence: opt(self.confidence, i),
            workflow_id: opt_str(self.workflow_id, i),
            store: opt_str(self.store, i),
            order_id: opt_str(self.order_id, i),
            order_total: opt(self.order_total, i),
            currency: opt_str(self.currency, i),
            duration_ms: opt(self.duration_ms, i),
            attributes: opt_str(self.attributes, i),
        }
    }
}

/// Reads the rows of an Arrow batch that carries (a subset of) the events
/// columns, converted as [`EventColumns::from_batch`] does.
pub fn events_from_batch(batch: &RecordBatch) -> Result<Vec<Event>> {
    let normalized = EventColumns::from_batch(batch)?;
    let str_col = |name: &str| normalized.strings(name).ok();
    let s = |a: Option<&StringArray>, i: usize| -> Option<String> {
        a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_owned())
    };
    macro_rules! prim {
        ($name:literal, $ty:ty) => {
            normalized.typed::<$ty>($name).ok()
        };
    }
    let tenant_id = str_col("tenant_id");
    let event_id = str_col("event_id");
    let event_type = str_col("event_type");
    let event_time = prim!("event_time", TimestampMicrosecondArray);
    let ingested_at = prim!("ingested_at", TimestampMicrosecondArray);
    let is_public = prim!("is_public", BooleanArray);
    let csat = prim!("csat_score", Int32Array);
    let confidence = prim!("confidence", Float64Array);
    let order_total = prim!("order_total", Float64Array);
    let duration = prim!("duration_ms", Int64Array);
    let tags = prim!("tags", ListArray);
    let named: Vec<Option<&StringArray>> =
        STRING_COLUMNS[3..23].iter().map(|c| str_col(c)).collect();

    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let get = |a: Option<&StringArray>| s(a, i);
        let n = |k: usize| s(named[k], i);
        macro_rules! val {
            ($a:expr) => {
                $a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
            };
        }
        out.push(Event {
            tenant_id: get(tenant_id).unwrap_or_default(),
            event_id: get(event_id).unwrap_or_default(),
            event_type: get(event_type).unwrap_or_default(),
            event_time: val!(event_time).unwrap_or(i64::MIN),
            ingested_at: val!(ingested_at).unwrap_or(0),
            channel: n(0),
            conversation_id: n(1),
            ticket_id: n(2),
            customer_id: n(3),
            customer_email: n(4),
            customer_phone: n(5),
            actor_type: n(6),
            agent_id: n(7),
            team_id: n(8),
            status: n(9),
            priority: n(10),
            message_id: n(11),
            body: n(12),
            bot_id: n(13),
            intent: n(14),
            workflow_id: n(15),
            store: n(16),
            order_id: n(17),
            currency: n(18),
            attributes: n(19),
            is_public: val!(is_public),
            csat_score: val!(csat),
            confidence: val!(confidence),
            order_total: val!(order_total),
            duration_ms: val!(duration),
            tags: tags.filter(|a| a.is_valid(i)).map(|a| {
                let v = a.value(i);
                v.as_any()
                    .downcast_ref::<StringArray>()
                    .map(|v| {
                        (0..v.len())
                            .filter(|j| v.is_valid(*j))
                            .map(|j| v.value(j).to_owned())
                            .collect()
                    })
                    .unwrap_or_default()
            }),
        });
    }
    Ok(out)
}

/// Strings a client may send for a `Utf8` column: any string encoding, or a
/// dictionary of strings (pandas categoricals arrive so); cast to `Utf8`.
fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => true,
        DataType::Dictionary(_, values) => is_string(values),
        _ => false,
    }
}
