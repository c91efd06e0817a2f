use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column names of `events`, in schema order (SPEC §2).
pub const EVENT_COLUMNS: [&str; 31] = [
    "tenant_id",
    "event_id",
    "event_time",
    "ingested_at",
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
    "is_public",
    "csat_score",
    "bot_id",
    "intent",
    "confidence",
    "workflow_id",
    "store",
    "order_id",
    "order_total",
    "currency",
    "duration_ms",
    "tags",
    "attributes",
];

/// Column positions in [`events_schema`].
pub mod column {
    pub const TENANT_ID: usize = 0;
    pub const EVENT_ID: usize = 1;
    pub const EVENT_TIME: usize = 2;
    pub const INGESTED_AT: usize = 3;
    pub const EVENT_TYPE: usize = 4;
    pub const CONVERSATION_ID: usize = 6;
}

/// `Timestamp(Microsecond, "UTC")`, the one timestamp type of cxdb.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = timestamp_type;
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("tenant_id", false),
        s("event_id", false),
        Field::new("event_time", ts(), false),
        Field::new("ingested_at", ts(), false),
        s("event_type", false),
        s("channel", true),
        s("conversation_id", true),
        s("ticket_id", true),
        s("customer_id", true),
        s("customer_email", true),
        s("customer_phone", true),
        s("actor_type", true),
        s("agent_id", true),
        s("team_id", true),
        s("status", true),
        s("priority", true),
        s("message_id", true),
        s("body", true),
        Field::new("is_public", DataType::Boolean, true),
        Field::new("csat_score", DataType::Int32, true),
        s("bot_id", true),
        s("intent", true),
        Field::new("confidence", DataType::Float64, true),
        s("workflow_id", true),
        s("store", true),
        s("order_id", true),
        Field::new("order_total", DataType::Float64, true),
        s("currency", true),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ),
        s("attributes", true),
    ]))
});

/// The Arrow schema of the `events` table, exactly as SPEC §2.
pub fn events_schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_list_matches_schema() {
        let schema = events_schema();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, EVENT_COLUMNS);
        assert_eq!(schema.field(column::EVENT_TIME).name(), "event_time");
        assert_eq!(
            schema.field(column::CONVERSATION_ID).name(),
            "conversation_id"
        );
    }
}
