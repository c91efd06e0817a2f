//! Encoding of WAL records: one Arrow IPC stream (schema + one batch) per
//! record, so replay needs nothing but the record itself.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;

use crate::error::{Error, Result};

pub(crate) fn encode(batch: &RecordBatch) -> Result<Bytes> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 4096);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(Bytes::from(out))
}

pub(crate) fn decode(seq: u64, payload: Bytes) -> Result<RecordBatch> {
    let bad = |reason: String| Error::WalRecord { seq, reason };
    let mut reader =
        StreamReader::try_new(Cursor::new(payload), None).map_err(|e| bad(e.to_string()))?;
    match reader.next() {
        Some(Ok(batch)) => Ok(batch),
        Some(Err(e)) => Err(bad(e.to_string())),
        None => Err(bad("no record batch in the record".into())),
    }
}
