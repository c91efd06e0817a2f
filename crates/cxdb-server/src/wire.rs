//! The Arrow types results leave the server with, on Flight SQL and on
//! gRPC `QueryService.Sql`.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

/// The schema results are sent with: view types (`Utf8View`, `BinaryView`),
/// at any depth, as their plain forms, and every field nullable.
/// DataFusion's logical plans (the schema `GetFlightInfo` announces) and its
/// execution (the batches `DoGet` streams) do not always agree on either —
/// `array_agg` over a string column is `List(Utf8)` in one and
/// `List(Utf8View)` in the other; `coalesce(x, 0)` over an outer join is
/// NOT NULL in one and nullable in the other — and clients (ADBC) refuse a
/// stream whose schema differs from the announced one. Not every Flight SQL
/// client reads view types either. (`GetTables` still reports the tables'
/// NOT NULL columns.)
pub(crate) fn wire_schema(schema: &Schema) -> Schema {
    Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| wire_field(f))
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    )
}

fn wire_field(field: &Field) -> Field {
    field
        .clone()
        .with_data_type(wire_type(field.data_type()))
        .with_nullable(true)
}

fn wire_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(Arc::new(wire_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(wire_field(f))),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(Arc::new(wire_field(f)), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| wire_field(f)).collect())
        }
        DataType::Map(f, sorted) => DataType::Map(Arc::new(wire_field(f)), *sorted),
        other => other.clone(),
    }
}

/// `batch` with the columns of `schema` (casting view types to plain ones).
fn to_wire(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// `batches` in the wire schema.
pub(crate) fn wire_stream(batches: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let schema = Arc::new(wire_schema(&batches.schema()));
    let target = Arc::clone(&schema);
    let converted =
        batches.map(move |batch| batch.and_then(|b| to_wire(b, &target).map_err(Into::into)));
    Box::pin(RecordBatchStreamAdapter::new(schema, converted))
}
