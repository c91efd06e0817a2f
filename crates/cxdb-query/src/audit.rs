//! The audit log of exports, readable in SQL as `audit_log`: one row per
//! `COPY … TO 'file'` (written by the server) and per `cxdb export`
//! (written by the client from a Flight SQL `DoGet`), saying who (token id,
//! or "admin" / "anonymous"), with which role and tenant scope, when, by
//! which protocol, the query, the format, the destination, the rows and
//! how it ended.
//!
//! **Durability.** Records are appended to one NDJSON file per UTC day,
//! `<data-dir>/audit/<YYYY-MM-DD>.ndjson`, next to the WAL and the catalog,
//! and each append is fdatasync'ed before the export is answered (for a
//! `COPY`, before its `COPY <rows>`; for `cxdb export`, before the stream's
//! end). Append-only files are the simplest durable store that never
//! rewrites what is written: the catalog manifest is rewritten whole on
//! every commit and would grow with every export, and the lake's object
//! store has no append. They are also readable without cxdb (`jq`,
//! `grep`). At start-up every file is read back into memory (one short
//! line per export); a last line cut short by a crash is removed, other
//! unreadable lines are skipped with a warning.
//!
//! A tenant-scoped session sees only the records of principals scoped to
//! its tenant; an unscoped session sees all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use cxdb_model::time::{day_of, format_day};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{Error, Result};

/// One export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the export started, µs since the epoch (UTC).
    pub exported_at_us: i64,
    /// The token id, "admin" (the bootstrap `--admin-token`) or
    /// "anonymous" (`--auth none`).
    pub who: String,
    pub role: String,
    /// The principal's tenant scope; `None`: unscoped.
    pub tenant_scope: Option<String>,
    /// `pgwire`, `grpc` or `flight-sql`.
    pub protocol: String,
    /// `server` (COPY TO a file under the export location) or `client`
    /// (`cxdb export`: the client wrote the rows it was sent).
    pub written_by: String,
    pub query: String,
    /// `parquet`, `csv`, `json` (COPY) or `ndjson` (`cxdb export`).
    pub format: String,
    /// The server path or URL written (COPY), or the file the client said
    /// it writes (`cxdb export`).
    pub destination: String,
    /// Rows written (COPY) or sent (`cxdb export`).
    pub rows: u64,
    /// `ok`, `error: …`, or `incomplete: …` (the client stopped reading).
    pub status: String,
}

/// The audit log of one server; clones share it.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Every record, in append order. The lock also serializes appends.
    records: Mutex<Vec<AuditRecord>>,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("audit log {}: {e}", path.display()))
}

impl AuditLog {
    /// Reads the log kept in `dir` (created at the first export).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let mut records = Vec::new();
        if dir.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| io_error(&dir, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
                .collect();
            files.sort();
            for file in files {
                read_file(&file, &mut records)?;
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                records: Mutex::new(records),
            }),
        })
    }

    /// Appends `record` durably (fdatasync), then makes it visible.
    pub async fn record(&self, record: AuditRecord) -> Result<()> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.append(record))
            .await
            .map_err(|e| Error::Internal(format!("audit log: {e}")))?
    }

    fn append(&self, record: AuditRecord) -> Result<()> {
        let dir = &self.inner.dir;
        let mut line = serde_json::to_string(&record).map_err(|e| io_error(dir, e))?;
        line.push('\n');
        let mut records = self.inner.records.lock();
        let created_dir = !dir.is_dir();
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join(format!(
            "{}.ndjson",
            format_day(day_of(record.exported_at_us))
        ));
        let created_file = !path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error(&path, e))?;
        // A new file (or directory) is durable once its directory is.
        if created_file {
            sync_dir(dir)?;
        }
        if created_dir && let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        records.push(record);
        Ok(())
    }

    /// The records a session scoped to `scope` may see.
    pub fn records(&self, scope: Option<&str>) -> Vec<AuditRecord> {
        self.inner
            .records
            .lock()
            .iter()
            .filter(|r| scope.is_none_or(|s| r.tenant_scope.as_deref() == Some(s)))
            .cloned()
            .collect()
    }

    /// Streams `batches` to a client that writes them to a file, and
    /// records the export when the stream ends (status `ok`), fails
    /// (`error: …`) or is dropped before its end (`incomplete: …`), with
    /// the rows sent. The end of the stream reaches the client only once
    /// the record is durable; if it cannot be written, the stream ends
    /// with that error instead.
    pub fn watch(
        &self,
        record: AuditRecord,
        batches: SendableRecordBatchStream,
    ) -> SendableRecordBatchStream {
        let schema = batches.schema();
        let watch = Watch {
            log: self.clone(),
            record: Some(record),
            rows: 0,
            batches,
        };
        let stream = futures::stream::unfold(watch, |mut w| async move {
            w.record.as_ref()?;
            match w.batches.next().await {
                Some(Ok(batch)) => {
                    w.rows += batch.num_rows() as u64;
                    Some((Ok(batch), w))
                }
                Some(Err(e)) => {
                    let status = format!("error: {e}");
                    if let Err(audit) = w.finish(status).await {
                        warn!(error = %audit, "cannot record a failed export");
                    }
                    Some((Err(e), w))
                }
                None => match w.finish("ok".into()).await {
                    Ok(()) => None,
                    Err(e) => Some((Err(DataFusionError::External(Box::new(e))), w)),
                },
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

/// A stream being watched for [`AuditLog::watch`]; `record` is taken
/// when it is written.
struct Watch {
    log: AuditLog,
    record: Option<AuditRecord>,
    rows: u64,
    batches: SendableRecordBatchStream,
}

impl Watch {
    async fn finish(&mut self, status: String) -> Result<()> {
        match self.record.take() {
            Some(mut record) => {
                record.rows = self.rows;
                record.status = status;
                self.log.record(record).await
            }
            None => Ok(()),
        }
    }
}

impl Drop for Watch {
    /// The client went away before the end: what it was sent is recorded.
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.rows = self.rows;
        record.status = format!(
            "incomplete: the client stopped reading after {} rows",
            self.rows
        );
        let log = self.log.clone();
        let append = move || {
            if let Err(e) = log.append(record) {
                warn!(error = %e, "cannot record an incomplete export");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(append)),
            Err(_) => append(),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Reads one day's file; a last line without its newline (a crash during
/// an append, before its fsync returned) is cut off.
fn read_file(path: &Path, records: &mut Vec<AuditRecord>) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let complete = match text.rfind('\n') {
        Some(end) => end + 1,
        None => 0,
    };
    if complete < text.len() {
        warn!(file = %path.display(), "cutting a torn last line off the audit log");
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| {
                f.set_len(complete as u64)?;
                f.sync_all()
            })
            .map_err(|e| io_error(path, e))?;
    }
    for (i, line) in text[..complete].lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(e) => {
                warn!(file = %path.display(), line = i + 1, error = %e, "unreadable audit record skipped")
            }
        }
    }
    Ok(())
}

fn schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
        Arc::new(Schema::new(vec![
            Field::new(
                "exported_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            text("who", false),
            text("role", false),
            text("tenant_scope", true),
            text("protocol", false),
            text("written_by", false),
            text("query", false),
            text("format", false),
            text("destination", false),
            Field::new("rows", DataType::Int64, false),
            text("status", false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

fn batch(records: &[AuditRecord]) -> datafusion::common::Result<RecordBatch> {
    let text = |f: fn(&AuditRecord) -> &str| {
        Arc::new(StringArray::from_iter_values(records.iter().map(f))) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.exported_at_us))
                .with_timezone("UTC"),
        ),
        text(|r| &r.who),
        text(|r| &r.role),
        Arc::new(
            records
                .iter()
                .map(|r| r.tenant_scope.as_deref())
                .collect::<StringArray>(),
        ),
        text(|r| &r.protocol),
        text(|r| &r.written_by),
        text(|r| &r.query),
        text(|r| &r.format),
        text(|r| &r.destination),
        Arc::new(Int64Array::from_iter_values(
            records
                .iter()
                .map(|r| i64::try_from(r.rows).unwrap_or(i64::MAX)),
        )),
        text(|r| &r.status),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// `audit_log` for one session, read at scan time.
#[derive(Debug)]
pub(crate) struct AuditTable {
    log: AuditLog,
    scope: Option<String>,
}

impl AuditTable {
    pub(crate) fn new(log: AuditLog, scope: Option<String>) -> Self {
        Self { log, scope }
    }
}

#[async_trait]
impl TableProvider for AuditTable {
    fn schema(&self) -> SchemaRef {
        schema()
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
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let batch = batch(&self.log.records(self.scope.as_deref()))?;
        MemorySourceConfig::try_new_exec(&[vec![batch]], schema(), projection.cloned())
            .map(|e| e as Arc<dyn ExecutionPlan>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: Option<&str>, at: i64) -> AuditRecord {
        AuditRecord {
            exported_at_us: at,
            who: "abc".into(),
            role: "analyst".into(),
            tenant_scope: tenant.map(str::to_string),
            protocol: "pgwire".into(),
            written_by: "server".into(),
            query: "COPY (SELECT 1) TO 'x.csv'".into(),
            format: "csv".into(),
            destination: "/exports/x.csv".into(),
            rows: 1,
            status: "ok".into(),
        }
    }

    #[tokio::test]
    async fn records_survive_reopening_and_a_torn_line_is_cut() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("audit");
        let log = AuditLog::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(log.records(None).is_empty());
        let day = 86_400_000_000;
        for r in [
            record(Some("acme"), 0),
            record(None, 1),
            record(Some("beta"), day),
        ] {
            log.record(r).await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(dir.join("1970-01-01.ndjson").exists());
        assert!(dir.join("1970-01-02.ndjson").exists());
        // A crash in the middle of an append.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("1970-01-02.ndjson"))
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(b"{\"exported_at_us\":")
            .unwrap_or_else(|e| panic!("{e}"));

        let again = AuditLog::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.records(None).len(), 3);
        assert_eq!(again.records(Some("acme")), vec![record(Some("acme"), 0)]);
        again
            .record(record(Some("beta"), day + 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let third = AuditLog::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(third.records(Some("beta")).len(), 2);
    }

    /// Two batches of one row each.
    fn two_batches() -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = |v: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(vec![v])) as ArrayRef],
            )
            .map_err(DataFusionError::from)
        };
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter([batch(1), batch(2)]),
        ))
    }

    #[tokio::test]
    async fn a_watched_stream_is_recorded_at_its_end_or_when_dropped() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = AuditLog::open(tmp.path().join("audit")).unwrap_or_else(|e| panic!("{e}"));
        let template = record(None, 0);

        // Read to the end: recorded before the end reaches the reader.
        let mut stream = log.watch(template.clone(), two_batches());
        while let Some(batch) = stream.next().await {
            batch.unwrap_or_else(|e| panic!("{e}"));
        }
        let records = log.records(None);
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].rows, records[0].status.as_str()), (2, "ok"));

        // The reader goes away after one batch.
        let mut stream = log.watch(template, two_batches());
        assert!(stream.next().await.is_some());
        drop(stream);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.records(None).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "not recorded");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let incomplete = &log.records(None)[1];
        assert_eq!(incomplete.rows, 1);
        assert_eq!(
            incomplete.status,
            "incomplete: the client stopped reading after 1 rows"
        );
        assert_eq!(
            AuditLog::open(tmp.path().join("audit"))
                .unwrap_or_else(|e| panic!("{e}"))
                .records(None)
                .len(),
            2
        );
    }
}
