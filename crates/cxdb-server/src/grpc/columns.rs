//! Decodes a `cxdb.v1.WriteRequest` straight into an Arrow batch of the
//! events schema.
//!
//! prost would decode each event into a struct of ~20 `String`s (one
//! allocation per field), which the server then copied into Arrow builders
//! and freed: measured at about half of a gRPC write's server CPU. Here the
//! message is read twice in place: the first pass checks its structure and
//! sizes every column, the second appends each field's bytes into builders
//! allocated once at their final size. The batch then takes the same path as
//! a Flight `DoPut` batch ([`cxdb_storage::Storage::write_batch`]): the same
//! per-event rules, run on the columns.
//!
//! Wire semantics are protobuf's, as prost implements them for the generated
//! `WriteRequest`: a field given twice keeps its last value, unknown fields
//! are skipped, a proto3 `string` that is absent is `""` (an `optional` one
//! is null), a string must be valid UTF-8, a field with the wrong wire type
//! is an error. The test below checks this against prost on random events.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

/// A `WriteRequest` decoded into columns.
#[derive(Debug)]
pub(crate) struct WriteColumns {
    /// The events schema without `ingested_at` (set on acceptance).
    pub(crate) batch: RecordBatch,
    pub(crate) atomic: bool,
}

/// Why a message is not a `WriteRequest`: names the event and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed to decode cxdb.v1.WriteRequest: {}", self.0)
    }
}

/// How a column is stored in `cxdb.v1.Event` (proto/cxdb/v1/event.proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// proto3 `string`: absent is `""`.
    Text,
    /// `optional string`: absent is null.
    OptionalText,
    /// `int64 event_time_us`: absent is 0.
    Micros,
    OptionalBool,
    OptionalInt32,
    OptionalInt64,
    OptionalDouble,
    /// `repeated string tags` with `bool has_tags` (field 30): null unless
    /// a tag is given or `has_tags` is set.
    Tags,
}

impl Kind {
    fn wire_type(self) -> WireType {
        match self {
            Kind::Text | Kind::OptionalText | Kind::Tags => WireType::LengthDelimited,
            Kind::Micros | Kind::OptionalBool | Kind::OptionalInt32 | Kind::OptionalInt64 => {
                WireType::Varint
            }
            Kind::OptionalDouble => WireType::SixtyFourBit,
        }
    }
}

/// The events schema's columns (without `ingested_at`), in schema order,
/// with the `cxdb.v1.Event` field each one comes from.
const COLUMNS: [(&str, u32, Kind); 30] = [
    ("tenant_id", 1, Kind::Text),
    ("event_id", 2, Kind::Text),
    ("event_time", 3, Kind::Micros),
    ("event_type", 4, Kind::Text),
    ("channel", 5, Kind::OptionalText),
    ("conversation_id", 6, Kind::OptionalText),
    ("ticket_id", 7, Kind::OptionalText),
    ("customer_id", 8, Kind::OptionalText),
    ("customer_email", 9, Kind::OptionalText),
    ("customer_phone", 10, Kind::OptionalText),
    ("actor_type", 11, Kind::OptionalText),
    ("agent_id", 12, Kind::OptionalText),
    ("team_id", 13, Kind::OptionalText),
    ("status", 14, Kind::OptionalText),
    ("priority", 15, Kind::OptionalText),
    ("message_id", 16, Kind::OptionalText),
    ("body", 17, Kind::OptionalText),
    ("is_public", 18, Kind::OptionalBool),
    ("csat_score", 19, Kind::OptionalInt32),
    ("bot_id", 20, Kind::OptionalText),
    ("intent", 21, Kind::OptionalText),
    ("confidence", 22, Kind::OptionalDouble),
    ("workflow_id", 23, Kind::OptionalText),
    ("store", 24, Kind::OptionalText),
    ("order_id", 25, Kind::OptionalText),
    ("order_total", 26, Kind::OptionalDouble),
    ("currency", 27, Kind::OptionalText),
    ("duration_ms", 28, Kind::OptionalInt64),
    ("tags", TAGS, Kind::Tags),
    ("attributes", 31, Kind::OptionalText),
];

/// `repeated string tags` and `bool has_tags` of `cxdb.v1.Event`.
const TAGS: u32 = 29;
const HAS_TAGS: u32 = 30;
/// Field numbers are below this (`Event` has fields 1..=31).
const FIELDS: usize = 32;

/// `WriteRequest`'s fields.
const EVENTS: u32 = 1;
const ATOMIC: u32 = 2;

/// The column (index into [`COLUMNS`]) and kind of each `Event` field.
static BY_FIELD: LazyLock<[Option<(usize, Kind)>; FIELDS]> = LazyLock::new(|| {
    let mut by_field = [None; FIELDS];
    for (i, (_, field, kind)) in COLUMNS.iter().enumerate() {
        by_field[*field as usize] = Some((i, *kind));
    }
    by_field
});

/// The events schema without `ingested_at`, in [`COLUMNS`] order.
static WIRE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let events = cxdb_model::events_schema();
    let fields: Vec<_> = COLUMNS
        .iter()
        .filter_map(|(name, _, _)| events.field_with_name(name).ok().cloned())
        .collect();
    Arc::new(Schema::new(fields))
});

fn field_name(field: u32) -> &'static str {
    match field {
        HAS_TAGS => "has_tags",
        _ => BY_FIELD
            .get(field as usize)
            .copied()
            .flatten()
            .map_or("?", |(i, _)| COLUMNS[i].0),
    }
}

/// One field's last value in an event.
#[derive(Debug, Clone, Copy, Default)]
enum Value<'a> {
    #[default]
    Absent,
    Bytes(&'a [u8]),
    Varint(u64),
    Fixed64(u64),
}

/// One event's fields, borrowed from the message.
#[derive(Debug, Default)]
struct Row<'a> {
    values: [Value<'a>; FIELDS],
    tags: Vec<&'a [u8]>,
    has_tags: bool,
}

impl<'a> Row<'a> {
    fn parse(&mut self, mut body: &'a [u8]) -> Result<(), String> {
        self.values = [Value::Absent; FIELDS];
        self.tags.clear();
        self.has_tags = false;
        while !body.is_empty() {
            let (field, wire_type) = decode_key(&mut body).map_err(|e| e.to_string())?;
            let expected = match BY_FIELD.get(field as usize).copied().flatten() {
                Some((_, kind)) => kind.wire_type(),
                None if field == HAS_TAGS => WireType::Varint,
                None => {
                    skip_field(wire_type, field, &mut body, DecodeContext::default())
                        .map_err(|e| format!("unknown field {field}: {e}"))?;
                    continue;
                }
            };
            let name = field_name(field);
            if wire_type != expected {
                return Err(format!(
                    "field {field} ({name}) has wire type {wire_type:?}, expected {expected:?}"
                ));
            }
            let value = match wire_type {
                WireType::Varint => Value::Varint(
                    decode_varint(&mut body).map_err(|e| format!("field {field} ({name}): {e}"))?,
                ),
                WireType::SixtyFourBit => {
                    let Some((bytes, rest)) = body.split_first_chunk::<8>() else {
                        return Err(format!("field {field} ({name}): message ends inside it"));
                    };
                    body = rest;
                    Value::Fixed64(u64::from_le_bytes(*bytes))
                }
                _ => Value::Bytes(
                    take_delimited(&mut body)
                        .map_err(|e| format!("field {field} ({name}): {e}"))?,
                ),
            };
            match (field, value) {
                (HAS_TAGS, Value::Varint(v)) => self.has_tags = v != 0,
                (TAGS, Value::Bytes(tag)) => self.tags.push(tag),
                _ => self.values[field as usize] = value,
            }
        }
        Ok(())
    }
}

/// Reads a length-delimited value.
fn take_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = decode_varint(buf).map_err(|e| format!("length prefix: {e}"))?;
    if len > buf.len() as u64 {
        return Err(format!(
            "length {len} runs past the end of the message ({} bytes left)",
            buf.len()
        ));
    }
    let (value, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(value)
}

/// Calls `each` with every event of the message, in order; returns `atomic`.
fn for_each_event<'a>(
    mut msg: &'a [u8],
    mut each: impl FnMut(&Row<'a>) -> Result<(), String>,
) -> Result<bool, DecodeError> {
    let mut row = Row::default();
    let mut atomic = false;
    let mut index = 0usize;
    while !msg.is_empty() {
        let (field, wire_type) = decode_key(&mut msg).map_err(|e| DecodeError(e.to_string()))?;
        match (field, wire_type) {
            (EVENTS, WireType::LengthDelimited) => {
                let at = |e: String| DecodeError(format!("event {index}: {e}"));
                let body = take_delimited(&mut msg).map_err(at)?;
                row.parse(body).map_err(at)?;
                each(&row).map_err(at)?;
                index += 1;
            }
            (ATOMIC, WireType::Varint) => {
                atomic =
                    decode_varint(&mut msg).map_err(|e| DecodeError(format!("atomic: {e}")))? != 0;
            }
            (EVENTS | ATOMIC, _) => {
                return Err(DecodeError(format!(
                    "field {field} has wire type {wire_type:?}"
                )));
            }
            _ => skip_field(wire_type, field, &mut msg, DecodeContext::default())
                .map_err(|e| DecodeError(format!("unknown field {field}: {e}")))?,
        }
    }
    Ok(atomic)
}

/// What the first pass found: the rows and the bytes of each string column.
#[derive(Debug)]
pub(crate) struct Sizes {
    rows: usize,
    bytes: [usize; COLUMNS.len()],
    tags: usize,
}

impl Sizes {
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }
}

/// First pass: checks the message's structure and measures it (strings are
/// checked for UTF-8 in [`decode`]).
pub(crate) fn measure(msg: &[u8]) -> Result<Sizes, DecodeError> {
    let mut sizes = Sizes {
        rows: 0,
        bytes: [0; COLUMNS.len()],
        tags: 0,
    };
    for_each_event(msg, |row| {
        sizes.rows += 1;
        for (i, (_, field, kind)) in COLUMNS.iter().enumerate() {
            match (kind, row.values[*field as usize]) {
                (Kind::Tags, _) => {
                    sizes.bytes[i] += row.tags.iter().map(|t| t.len()).sum::<usize>()
                }
                (_, Value::Bytes(b)) => sizes.bytes[i] += b.len(),
                _ => {}
            }
        }
        sizes.tags += row.tags.len();
        Ok(())
    })?;
    Ok(sizes)
}

/// Builds one column.
enum Builder {
    Text(StringBuilder),
    Micros(TimestampMicrosecondBuilder),
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Double(Float64Builder),
    Tags(ListBuilder<StringBuilder>),
}

fn text(bytes: &[u8], field: u32) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "field {field} ({}) is not valid UTF-8: {e}",
            field_name(field)
        )
    })
}

impl Builder {
    fn new(kind: Kind, rows: usize, bytes: usize, tags: usize) -> Self {
        match kind {
            Kind::Text | Kind::OptionalText => {
                Builder::Text(StringBuilder::with_capacity(rows, bytes))
            }
            Kind::Micros => Builder::Micros(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            Kind::OptionalBool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::OptionalInt32 => Builder::Int32(Int32Builder::with_capacity(rows)),
            Kind::OptionalInt64 => Builder::Int64(Int64Builder::with_capacity(rows)),
            Kind::OptionalDouble => Builder::Double(Float64Builder::with_capacity(rows)),
            Kind::Tags => Builder::Tags(ListBuilder::with_capacity(
                StringBuilder::with_capacity(tags, bytes),
                rows,
            )),
        }
    }

    fn append(&mut self, row: &Row<'_>, field: u32, kind: Kind) -> Result<(), String> {
        let value = row.values[field as usize];
        match (self, value) {
            (Builder::Text(b), Value::Bytes(v)) => b.append_value(text(v, field)?),
            (Builder::Text(b), _) if kind == Kind::Text => b.append_value(""),
            (Builder::Text(b), _) => b.append_null(),
            (Builder::Micros(b), Value::Varint(v)) => b.append_value(v as i64),
            (Builder::Micros(b), _) => b.append_value(0),
            (Builder::Bool(b), Value::Varint(v)) => b.append_value(v != 0),
            (Builder::Bool(b), _) => b.append_null(),
            // As prost: an int32 is the varint's low 32 bits.
            (Builder::Int32(b), Value::Varint(v)) => b.append_value(v as i32),
            (Builder::Int32(b), _) => b.append_null(),
            (Builder::Int64(b), Value::Varint(v)) => b.append_value(v as i64),
            (Builder::Int64(b), _) => b.append_null(),
            (Builder::Double(b), Value::Fixed64(v)) => b.append_value(f64::from_bits(v)),
            (Builder::Double(b), _) => b.append_null(),
            (Builder::Tags(b), _) => {
                if row.tags.is_empty() && !row.has_tags {
                    b.append_null();
                } else {
                    for tag in &row.tags {
                        b.values().append_value(text(tag, field)?);
                    }
                    b.append(true);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Micros(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Double(b) => Arc::new(b.finish()),
            Builder::Tags(b) => Arc::new(b.finish()),
        }
    }
}

/// Second pass: the message's events as one batch, sized by [`measure`].
pub(crate) fn decode(msg: &[u8], sizes: &Sizes) -> Result<WriteColumns, DecodeError> {
    let mut builders: Vec<Builder> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, _, kind))| Builder::new(*kind, sizes.rows, sizes.bytes[i], sizes.tags))
        .collect();
    let atomic = for_each_event(msg, |row| {
        for (builder, (_, field, kind)) in builders.iter_mut().zip(COLUMNS) {
            builder.append(row, field, kind)?;
        }
        Ok(())
    })?;
    let columns = builders.iter_mut().map(Builder::finish).collect();
    let batch = RecordBatch::try_new(Arc::clone(&WIRE_SCHEMA), columns)
        .map_err(|e| DecodeError(format!("building the batch: {e}")))?;
    Ok(WriteColumns { batch, atomic })
}

#[cfg(test)]
mod tests {
    use cxdb_model::{Event, EventBatchBuilder};
    use cxdb_proto::v1;
    use prost::Message;

    use super::*;
    use crate::convert::{event_from_proto, event_to_proto};

    fn decoded(msg: &[u8]) -> Result<WriteColumns, DecodeError> {
        decode(msg, &measure(msg)?)
    }

    /// The batch prost + the row path would build, without `ingested_at`.
    fn via_prost(msg: &[u8]) -> RecordBatch {
        let req = v1::WriteRequest::decode(msg).unwrap_or_else(|e| panic!("{e}"));
        let mut builder = EventBatchBuilder::with_capacity(req.events.len());
        for e in req.events {
            builder.push(&event_from_proto(e));
        }
        let full = builder.finish();
        let keep: Vec<usize> = (0..full.num_columns())
            .filter(|&i| full.schema().field(i).name() != "ingested_at")
            .collect();
        full.project(&keep).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A small deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn chance(&mut self) -> bool {
            !self.next().is_multiple_of(3)
        }
        fn text(&mut self) -> String {
            let n = (self.next() % 12) as usize;
            let alphabet = ["a", "é", "z", "0", " ", "日本", "\u{1F600}", ""];
            (0..n)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
                .collect()
        }
        fn opt_text(&mut self) -> Option<String> {
            self.chance().then(|| self.text())
        }
    }

    fn random_event(rng: &mut Rng) -> Event {
        Event {
            tenant_id: rng.text(),
            event_id: rng.text(),
            event_time: rng.next() as i64,
            ingested_at: 0,
            event_type: rng.text(),
            channel: rng.opt_text(),
            conversation_id: rng.opt_text(),
            ticket_id: rng.opt_text(),
            customer_id: rng.opt_text(),
            customer_email: rng.opt_text(),
            customer_phone: rng.opt_text(),
            actor_type: rng.opt_text(),
            agent_id: rng.opt_text(),
            team_id: rng.opt_text(),
            status: rng.opt_text(),
            priority: rng.opt_text(),
            message_id: rng.opt_text(),
            body: rng.opt_text(),
            is_public: rng.chance().then(|| rng.chance()),
            csat_score: rng.chance().then(|| rng.next() as i32),
            bot_id: rng.opt_text(),
            intent: rng.opt_text(),
            confidence: rng.chance().then(|| f64::from_bits(rng.next() >> 2)),
            workflow_id: rng.opt_text(),
            store: rng.opt_text(),
            order_id: rng.opt_text(),
            order_total: rng.chance().then(|| -(rng.next() as f64)),
            currency: rng.opt_text(),
            duration_ms: rng.chance().then(|| rng.next() as i64),
            tags: rng
                .chance()
                .then(|| (0..rng.next() % 4).map(|_| rng.text()).collect()),
            attributes: rng.opt_text(),
        }
    }

    #[test]
    fn equals_prost_on_random_events() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..20 {
            let events: Vec<v1::Event> = (0..(round * 37) % 200)
                .map(|_| event_to_proto(&random_event(&mut rng)))
                .collect();
            let req = v1::WriteRequest {
                events,
                atomic: round % 2 == 1,
            };
            let msg = req.encode_to_vec();
            let got = decoded(&msg).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.atomic, req.atomic);
            assert_eq!(got.batch, via_prost(&msg), "round {round}");
        }
    }

    /// Encodes one event field by hand: `key` then `payload`.
    fn field(number: u32, wire_type: WireType, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(number, wire_type, &mut out);
        if wire_type == WireType::LengthDelimited {
            prost::encoding::encode_varint(payload.len() as u64, &mut out);
        }
        out.extend_from_slice(payload);
        out
    }

    fn request(events: &[Vec<u8>]) -> Vec<u8> {
        let mut msg = Vec::new();
        for e in events {
            msg.extend(field(EVENTS, WireType::LengthDelimited, e));
        }
        msg
    }

    #[test]
    fn repeated_fields_keep_the_last_and_unknown_fields_are_skipped() {
        let mut varint = Vec::new();
        prost::encoding::encode_varint(7, &mut varint);
        let event = [
            field(1, WireType::LengthDelimited, b"acme"),
            field(5, WireType::LengthDelimited, b"chat"),
            field(99, WireType::LengthDelimited, b"from a newer client"),
            field(98, WireType::Varint, &varint),
            field(97, WireType::SixtyFourBit, &[0; 8]),
            field(96, WireType::ThirtyTwoBit, &[0; 4]),
            field(5, WireType::LengthDelimited, b"email"),
            field(HAS_TAGS, WireType::Varint, &[1]),
        ]
        .concat();
        let mut msg = request(&[event]);
        msg.extend(field(
            7,
            WireType::LengthDelimited,
            b"unknown in WriteRequest",
        ));
        let got = decoded(&msg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.batch, via_prost(&msg));
        let channel = got
            .batch
            .column_by_name("channel")
            .map(|c| arrow::util::display::array_value_to_string(c, 0).unwrap_or_default());
        assert_eq!(channel.as_deref(), Some("email"));
        // has_tags with no tag: an empty list, not null.
        let tags = got.batch.column_by_name("tags").map(|c| c.is_null(0));
        assert_eq!(tags, Some(false));
    }

    #[test]
    fn malformed_messages_are_errors_naming_event_and_field() {
        let ok = field(1, WireType::LengthDelimited, b"acme");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // A string whose length runs past the end of the event.
            (
                request(&[ok.clone(), vec![0x12, 0x7f, b'x']]),
                "event 1: field 2 (event_id): length 127 runs past the end",
            ),
            // Not UTF-8.
            (
                request(&[field(17, WireType::LengthDelimited, &[0xff, 0xfe])]),
                "event 0: field 17 (body) is not valid UTF-8",
            ),
            (
                request(&[field(29, WireType::LengthDelimited, &[0xc3])]),
                "event 0: field 29 (tags) is not valid UTF-8",
            ),
            // A string field sent as a varint.
            (
                request(&[field(6, WireType::Varint, &[1])]),
                "event 0: field 6 (conversation_id) has wire type Varint",
            ),
            // A double cut short.
            (
                request(&[field(22, WireType::SixtyFourBit, &[0; 3])]),
                "event 0: field 22 (confidence): message ends inside it",
            ),
            // The events field as a varint; a truncated key.
            (vec![0x08, 0x01], "field 1 has wire type Varint"),
            (
                vec![0x0a, 0xff, 0xff, 0xff],
                "event 0: length prefix: failed to decode Protobuf message: invalid varint",
            ),
            (vec![0x80], "invalid varint"),
        ];
        for (msg, want) in cases {
            let err = decoded(&msg)
                .err()
                .unwrap_or_else(|| panic!("accepted: {want}"));
            assert!(err.to_string().contains(want), "{err} (wanted {want:?})");
            assert!(v1::WriteRequest::decode(msg.as_slice()).is_err(), "{want}");
        }
    }
}
