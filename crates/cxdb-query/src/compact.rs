//! Self-contained string views.
//!
//! `events` reads strings as `Utf8View` (see events_table.rs): a decoded
//! batch's views point into the Parquet pages they came from, and every
//! later `filter` or `take` (joins, sorts, repartitioning) keeps pointing
//! there. Rows kept in memory (the maintained views) would pin the pages of
//! every row they were computed from: measured on 10M demo events
//! (2026-11-26), building `conversation_state` from uncompacted results
//! reached 23 GiB RSS and was killed; compacted as they arrive, the build
//! peaks at 3.7 GiB. Compacting copies the strings longer than 12 bytes
//! (shorter ones live inside the view) into buffers of the batch's own.
//!
//! Scans are not compacted: doing it for every batch of `events` cost 2 %
//! of the query benchmark's geomean and did not fix what it was tried for
//! (`journeys` exceeding its memory limit: `journey_map()` handed out one
//! batch of every event, so every batch cut from it was charged for all of
//! its strings — it now hands out batches of `batch_size` rows).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch, RecordBatchOptions};
use arrow::datatypes::DataType;
use datafusion::common::Result;

/// `array` with its view strings copied into buffers of its own (nested in
/// lists too); other arrays as they are.
pub(crate) fn compact(array: &ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Utf8View => Arc::new(array.as_string_view().gc()),
        DataType::BinaryView => Arc::new(array.as_binary_view().gc()),
        DataType::List(field) => {
            let list = array.as_list::<i32>();
            Arc::new(ListArray::new(
                Arc::clone(field),
                list.offsets().clone(),
                compact(list.values()),
                list.nulls().cloned(),
            ))
        }
        _ => Arc::clone(array),
    }
}

/// [`compact`] on every column.
pub(crate) fn compact_batch(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch.columns().iter().map(compact).collect();
    // A projection of no column (`count(*)`) still has its rows.
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &options,
    )?)
}
