//! Statement tickets and prepared-statement handles.
//!
//! Both are stateless: the bytes carry the SQL and, once parameters are
//! bound, the bound values (a one-row Arrow IPC stream), so any cxdb
//! process can serve a `DoGet` or `GetFlightInfo` for a handle another call
//! (or another server behind a load balancer, or one since restarted)
//! created. A handle carries no authority: the SQL in it runs as the
//! principal of the request that presents it, exactly as if it had been
//! sent as text.
//!
//! Binding answers with a new handle (`DoPutPreparedStatementResult`,
//! Flight SQL 15+), which current clients use from then on. Older clients
//! keep presenting the original handle, so the values last bound to each
//! prepared statement are also kept in a small bounded map keyed by the
//! statement's random id; a handle's own values win over the map's.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use datafusion::common::ScalarValue;
use parking_lot::Mutex;
use prost::Message;
use tonic::Status;

/// Marks cxdb statement bytes, so anything else is refused by name.
const MAGIC: &[u8] = b"cxdb.stmt.1:";

/// How many prepared statements' bound values the fallback map keeps.
const BOUND_CAPACITY: usize = 4096;

#[derive(Clone, PartialEq, Message)]
struct StatementProto {
    #[prost(string, tag = "1")]
    sql: String,
    /// Bound values: an Arrow IPC stream with one row; empty when none.
    #[prost(bytes = "bytes", tag = "2")]
    params: Bytes,
    /// Random per prepared statement; empty for plain statement tickets.
    #[prost(bytes = "bytes", tag = "3")]
    id: Bytes,
}

/// A statement as carried by a ticket or prepared-statement handle.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub(crate) sql: String,
    params: Bytes,
    id: Bytes,
}

impl Statement {
    /// A one-off query (`CommandStatementQuery`'s ticket).
    pub(crate) fn query(sql: String) -> Self {
        Self {
            sql,
            params: Bytes::new(),
            id: Bytes::new(),
        }
    }

    /// A new prepared statement with its own id.
    pub(crate) fn prepared(sql: String) -> Self {
        Self {
            sql,
            params: Bytes::new(),
            id: Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes()),
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let proto = StatementProto {
            sql: self.sql.clone(),
            params: self.params.clone(),
            id: self.id.clone(),
        };
        let mut out = Vec::with_capacity(MAGIC.len() + proto.encoded_len());
        out.extend_from_slice(MAGIC);
        proto.encode(&mut out).unwrap_or_else(|e| {
            unreachable!("encoding into a Vec with enough capacity cannot fail: {e}")
        });
        out.into()
    }

    /// `what` names the bytes in the error ("prepared statement handle",
    /// "ticket").
    pub(crate) fn decode(bytes: &[u8], what: &str) -> Result<Self, Status> {
        let unknown = || {
            Status::invalid_argument(format!(
                "unknown {what}: not one this server issued (create the prepared statement again)"
            ))
        };
        let body = bytes.strip_prefix(MAGIC).ok_or_else(unknown)?;
        let proto = StatementProto::decode(body).map_err(|_| unknown())?;
        Ok(Self {
            sql: proto.sql,
            params: proto.params,
            id: proto.id,
        })
    }

    /// The same statement with `batch` (one row) bound to `$1`, `$2`, ….
    pub(crate) fn bind(&self, batch: &RecordBatch) -> Result<Self, Status> {
        let invalid = |e: arrow::error::ArrowError| {
            Status::invalid_argument(format!("cannot encode the bound parameters: {e}"))
        };
        let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema()).map_err(invalid)?;
        writer.write(batch).map_err(invalid)?;
        let params = writer.into_inner().map_err(invalid)?;
        Ok(Self {
            params: params.into(),
            ..self.clone()
        })
    }

    /// This statement with the values last bound to its id when it carries
    /// none itself (clients that ignore the handle a bind returns).
    pub(crate) fn resolve(self, bound: &BoundParams) -> Self {
        if !self.params.is_empty() {
            return self;
        }
        match bound.get(&self.id) {
            Some(params) => {
                tracing::debug!(
                    sql = %self.sql,
                    "prepared statement run with its original handle; values from the bound map"
                );
                Self { params, ..self }
            }
            None => self,
        }
    }

    /// The bound values in parameter order; none when nothing is bound.
    pub(crate) fn values(&self) -> Result<Vec<ScalarValue>, Status> {
        if self.params.is_empty() {
            return Ok(Vec::new());
        }
        let corrupt = |e: &dyn std::fmt::Display| {
            Status::invalid_argument(format!("bound parameters do not decode: {e}"))
        };
        let reader = StreamReader::try_new(Cursor::new(self.params.clone()), None)
            .map_err(|e| corrupt(&e))?;
        let mut values = Vec::new();
        for batch in reader {
            values = row_values(&batch.map_err(|e| corrupt(&e))?)?;
        }
        Ok(values)
    }

    /// Drops the values the fallback map holds for this statement
    /// (`ClosePreparedStatement`).
    pub(crate) fn forget(&self, bound: &BoundParams) {
        bound.remove(&self.id);
    }

    /// Remembers this statement's bound values under its id.
    pub(crate) fn remember(&self, bound: &BoundParams) {
        if !self.id.is_empty() && !self.params.is_empty() {
            bound.insert(self.id.clone(), self.params.clone());
        }
    }
}

/// The one row of a parameter batch as scalars.
pub(crate) fn row_values(batch: &RecordBatch) -> Result<Vec<ScalarValue>, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind exactly one row of parameters to a query, got {} rows",
            batch.num_rows()
        )));
    }
    batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(column, field)| {
            ScalarValue::try_from_array(column, 0)
                .map_err(|e| Status::invalid_argument(format!("parameter {:?}: {e}", field.name())))
        })
        .collect()
}

/// The fallback for clients that keep the original handle: values last
/// bound per prepared-statement id, oldest forgotten first.
#[derive(Debug, Default)]
pub(crate) struct BoundParams {
    inner: Mutex<Bound>,
}

#[derive(Debug, Default)]
struct Bound {
    by_id: HashMap<Bytes, Bytes>,
    order: VecDeque<Bytes>,
}

impl BoundParams {
    fn insert(&self, id: Bytes, params: Bytes) {
        let mut b = self.inner.lock();
        if b.by_id.insert(id.clone(), params).is_none() {
            b.order.push_back(id);
        }
        while b.order.len() > BOUND_CAPACITY {
            if let Some(old) = b.order.pop_front() {
                b.by_id.remove(&old);
            }
        }
    }

    fn get(&self, id: &Bytes) -> Option<Bytes> {
        if id.is_empty() {
            return None;
        }
        self.inner.lock().by_id.get(id).cloned()
    }

    fn remove(&self, id: &Bytes) {
        let mut b = self.inner.lock();
        if b.by_id.remove(id).is_some() {
            b.order.retain(|x| x != id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().by_id.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    fn params(tenant: &str, n: i64) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("$1", Arc::new(StringArray::from(vec![tenant])) as ArrayRef),
            ("$2", Arc::new(Int64Array::from(vec![n])) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn handle_round_trips_sql_and_bound_values() {
        let bound = BoundParams::default();
        let stmt = Statement::prepared("SELECT $1, $2".into());
        let decoded = Statement::decode(&stmt.encode(), "handle").unwrap();
        assert_eq!(decoded, stmt);
        assert!(decoded.resolve(&bound).values().unwrap().is_empty());

        let with = stmt.bind(&params("acme", 7)).unwrap();
        let decoded = Statement::decode(&with.encode(), "handle").unwrap();
        assert_eq!(
            decoded.values().unwrap(),
            vec![ScalarValue::from("acme"), ScalarValue::Int64(Some(7))]
        );
    }

    #[test]
    fn original_handle_finds_the_values_bound_last() {
        let bound = BoundParams::default();
        let stmt = Statement::prepared("SELECT $1, $2".into());
        stmt.bind(&params("a", 1)).unwrap().remember(&bound);
        stmt.bind(&params("b", 2)).unwrap().remember(&bound);
        assert_eq!(bound.len(), 1);
        let resolved = stmt.clone().resolve(&bound);
        assert_eq!(resolved.values().unwrap()[0], ScalarValue::from("b"));
        // Another prepared statement of the same SQL sees nothing.
        let other = Statement::prepared("SELECT $1, $2".into());
        assert!(other.resolve(&bound).values().unwrap().is_empty());
        stmt.forget(&bound);
        assert!(stmt.resolve(&bound).values().unwrap().is_empty());
        assert_eq!(bound.len(), 0);
    }

    #[test]
    fn fallback_map_is_bounded() {
        let bound = BoundParams::default();
        let first = Statement::prepared("SELECT $1, $2".into());
        first.bind(&params("a", 1)).unwrap().remember(&bound);
        for _ in 0..BOUND_CAPACITY {
            let s = Statement::prepared("SELECT $1, $2".into());
            s.bind(&params("x", 1)).unwrap().remember(&bound);
        }
        assert_eq!(bound.len(), BOUND_CAPACITY);
        assert!(first.resolve(&bound).values().unwrap().is_empty());
    }

    #[test]
    fn foreign_bytes_are_refused_by_name() {
        for bytes in [&b""[..], b"SELECT 1", b"cxdb.stmt.1:\xff\xff\xff"] {
            let err = Statement::decode(bytes, "prepared statement handle").unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().contains("unknown prepared statement handle"),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn only_one_parameter_row_binds() {
        let two = RecordBatch::try_from_iter(vec![(
            "$1",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        let err = row_values(&two).unwrap_err();
        assert!(err.message().contains("got 2 rows"), "{}", err.message());
    }
}
