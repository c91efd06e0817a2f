use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Float64Builder, Int32Array,
    Int32Builder, Int64Array, Int64Builder, ListArray, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::event::Event;
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

/// Reads the rows of an Arrow batch that carries (a subset of) the events
/// columns: nullable columns may be omitted, `ingested_at` may be missing,
/// timestamps of any unit and Utf8View/LargeUtf8 strings are converted.
/// Unknown columns or wrong types are an [`Error::Schema`] naming the column.
pub fn events_from_batch(batch: &RecordBatch) -> Result<Vec<Event>> {
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
    let mut cols: Vec<Option<ArrayRef>> = Vec::with_capacity(EVENT_COLUMNS.len());
    for field in schema.fields() {
        let Some(array) = batch.column_by_name(field.name()) else {
            if !field.is_nullable() && field.name() != "ingested_at" {
                return Err(Error::Schema(format!(
                    "required column {:?} is missing",
                    field.name()
                )));
            }
            cols.push(None);
            continue;
        };
        let want = field.data_type();
        let got = array.data_type();
        let convertible = got == want
            || matches!(
                (got, want),
                (DataType::Timestamp(..), DataType::Timestamp(..))
            )
            || (matches!(got, DataType::Utf8View | DataType::LargeUtf8) && *want == DataType::Utf8)
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
        cols.push(Some(array));
    }

    let str_col = |name: &str| -> Option<&StringArray> {
        let pos = EVENT_COLUMNS.iter().position(|c| *c == name)?;
        cols[pos].as_ref()?.as_any().downcast_ref::<StringArray>()
    };
    let typed = |name: &str| -> Option<&ArrayRef> {
        let pos = EVENT_COLUMNS.iter().position(|c| *c == name)?;
        cols[pos].as_ref()
    };
    let s = |a: Option<&StringArray>, i: usize| -> Option<String> {
        a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_owned())
    };
    macro_rules! prim {
        ($name:literal, $ty:ty) => {
            typed($name).and_then(|a| a.as_any().downcast_ref::<$ty>())
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
