//! The Parquet lake on object storage: opening the store from a URL, the
//! hive-style layout `events/tenant_id=<t>/date=<YYYY-MM-DD>/<file>.parquet`,
//! and writing / reading one Parquet file.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::{
    SortOptions, concat_batches, interleave_record_batch, sort_to_indices, take_record_batch,
};
use bytes::Bytes;
use cxdb_model::{column, events_schema, time::format_day};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
// `ParquetObjectReader` is deprecated in parquet 59 in favour of a reader on
// a dedicated I/O runtime; it is still the simplest correct reader here.
#[allow(deprecated)]
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::buffer::RowSource;
use crate::error::{Error, Result};

/// Default rows per Parquet row group. Small enough that a time predicate inside a
/// day skips row groups, large enough to keep per-group overhead low.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The object store holding the lake, plus the local root when it is a
/// local file system (so writes can be fsynced).
#[derive(Clone)]
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    pub url: String,
    local_root: Option<PathBuf>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("url", &self.url).finish()
    }
}

impl Lake {
    /// Opens the lake at `url`: `file:///abs/path`, `memory://`, or any URL
    /// `object_store` understands (`s3://bucket/prefix`, `gs://…`, `az://…`)
    /// configured from the usual environment variables.
    pub fn open(url: &str) -> Result<Self> {
        let bad = |reason: String| Error::ObjectStoreUrl {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if parsed.scheme() == "file" {
            let root = parsed
                .to_file_path()
                .map_err(|_| bad("not an absolute file path".into()))?;
            std::fs::create_dir_all(&root).map_err(|e| bad(e.to_string()))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
                .map_err(|e| bad(e.to_string()))?;
            return Ok(Self {
                store: Arc::new(store),
                url: url.to_string(),
                local_root: Some(root),
            });
        }
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
            })
            .collect();
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, env).map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            Arc::from(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Self {
            store,
            url: url.to_string(),
            local_root: None,
        })
    }

    /// Writes `bytes` at `path`; on a local file system the file is synced
    /// before this returns, so the catalog never names a file that a power
    /// loss could empty.
    pub async fn put_durable(&self, path: &Path, bytes: Bytes) -> Result<()> {
        self.store.put(path, PutPayload::from(bytes)).await?;
        if let Some(root) = &self.local_root {
            let file = root.join(path.as_ref());
            let sync = move || -> std::io::Result<()> {
                std::fs::File::open(&file)?.sync_all()?;
                if let Some(dir) = file.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            };
            tokio::task::spawn_blocking(sync)
                .await
                .map_err(|e| Error::Task(e.to_string()))?
                .map_err(|e| Error::Io {
                    path: path.to_string(),
                    source: e,
                })?;
        }
        Ok(())
    }

    /// Reads a whole Parquet file of the lake, optionally only some columns.
    pub async fn read_file(
        &self,
        path: &str,
        columns: Option<&[usize]>,
    ) -> Result<Vec<RecordBatch>> {
        #[allow(deprecated)]
        let reader = ParquetObjectReader::new(Arc::clone(&self.store), Path::from(path));
        let mut builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        if let Some(cols) = columns {
            let mask = ProjectionMask::roots(builder.parquet_schema(), cols.iter().copied());
            builder = builder.with_projection(mask);
        }
        Ok(builder.build()?.try_collect().await?)
    }

    /// Which of `ids` occur in the `event_id` column of the file at `path`.
    /// Row groups whose Parquet Bloom filter rules every id out are skipped.
    pub async fn find_event_ids(&self, path: &str, ids: &HashSet<String>) -> Result<Vec<String>> {
        #[allow(deprecated)]
        let reader = ParquetObjectReader::new(Arc::clone(&self.store), Path::from(path));
        let mut builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let groups = builder.metadata().num_row_groups();
        let mut wanted = Vec::new();
        for rg in 0..groups {
            let maybe = match builder
                .get_row_group_column_bloom_filter(rg, column::EVENT_ID)
                .await?
            {
                Some(sbbf) => ids.iter().any(|id| sbbf.check(id.as_str())),
                None => true,
            };
            if maybe {
                wanted.push(rg);
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), [column::EVENT_ID]);
        let batches: Vec<RecordBatch> = builder
            .with_projection(mask)
            .with_row_groups(wanted)
            .build()?
            .try_collect()
            .await?;
        let mut found = Vec::new();
        for batch in &batches {
            let Some(col) = batch.column(0).as_any().downcast_ref::<StringArray>() else {
                continue;
            };
            for i in 0..col.len() {
                let v = col.value(i);
                if ids.contains(v) {
                    found.push(v.to_owned());
                }
            }
        }
        Ok(found)
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        match self.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `events/tenant_id=<t>/date=<YYYY-MM-DD>/<uuid v7>.parquet`
pub fn file_path(tenant: &str, day: i32) -> String {
    format!(
        "events/tenant_id={tenant}/date={}/{}.parquet",
        format_day(day),
        uuid::Uuid::now_v7()
    )
}

/// Columns with a Bloom filter (1 % false positives) in every row group:
/// the ids that deduplication (`event_id`) and drill-downs (one
/// conversation, ticket, customer or order) look up by equality. Their
/// min/max statistics rule nothing out (ids are not in time order), the
/// filter skips every row group that does not hold the id. The four
/// besides `event_id` cost ~0.6 byte per event (26.1 → 26.7 at 10M events,
/// benches/results/queries-10m.md).
pub const BLOOM_COLUMNS: [&str; 5] = [
    "event_id",
    "conversation_id",
    "ticket_id",
    "customer_id",
    "order_id",
];

/// Columns written without statistics (see [`encode_parquet`]).
const NO_STATISTICS: [&str; 6] = [
    "event_id",
    "message_id",
    "body",
    "customer_email",
    "customer_phone",
    "attributes",
];

/// Concatenates `batches`, sorts by the persisted sort key and encodes one
/// Parquet file.
///
/// Sort key: `event_time`. Dashboards filter on time ranges inside a day
/// ("last hour", "since 09:00"), so time-sorted row groups and pages have
/// tight min/max statistics and are skipped; per-conversation metrics group
/// across days anyway, so a conversation-first order would not spare them a
/// sort or hash. Arrival order is nearly time order, so the sort is cheap.
pub fn encode_parquet(
    batches: &[RecordBatch],
    row_group_rows: usize,
) -> Result<(Bytes, RecordBatch)> {
    let batch = concat_batches(&events_schema(), batches)?;
    let indices = sort_to_indices(
        batch.column(column::EVENT_TIME),
        Some(SortOptions {
            descending: false,
            nulls_first: false,
        }),
        None,
    )?;
    let sorted = take_record_batch(&batch, &indices)?;
    let bytes = encode_sorted(&sorted, row_group_rows)?;
    Ok((bytes, sorted))
}

/// The rows of `sources` — each a batch of the events schema and which of
/// its rows (`None`: all) — in `event_time` order (ties in the order given),
/// gathered in one copy: the persister's [`encode_parquet`] without the
/// concatenation and the sort's second copy.
pub(crate) fn gather_sorted(sources: &[RowSource]) -> Result<RecordBatch> {
    let mut keyed: Vec<(i64, u32, u32)> = Vec::new();
    for (s, (batch, rows)) in sources.iter().enumerate() {
        let times = batch
            .column(column::EVENT_TIME)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| {
                arrow::error::ArrowError::SchemaError("batch is not of the events schema".into())
            })?;
        match rows {
            Some(rows) => keyed.extend(
                rows.values()
                    .iter()
                    .map(|&r| (times.value(r as usize), s as u32, r)),
            ),
            None => keyed.extend((0..times.len()).map(|r| (times.value(r), s as u32, r as u32))),
        }
    }
    keyed.sort_unstable();
    let indices: Vec<(usize, usize)> = keyed
        .iter()
        .map(|&(_, s, r)| (s as usize, r as usize))
        .collect();
    let batches: Vec<&RecordBatch> = sources.iter().map(|(b, _)| b).collect();
    if batches.is_empty() {
        return Ok(RecordBatch::new_empty(events_schema()));
    }
    Ok(interleave_record_batch(&batches, &indices)?)
}

/// Encodes one Parquet file of rows already in `event_time` order.
pub(crate) fn encode_sorted(sorted: &RecordBatch, row_group_rows: usize) -> Result<Bytes> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)));
    // Sized for every row distinct, then folded down by the writer to the
    // values each row group really holds.
    let props = BLOOM_COLUMNS.iter().fold(props, |p, c| {
        p.set_column_bloom_filter_enabled(ColumnPath::from(*c), true)
            .set_column_bloom_filter_max_ndv(ColumnPath::from(*c), row_group_rows as u64)
            .set_column_bloom_filter_fpp(ColumnPath::from(*c), 0.01)
    });
    // No min/max for columns whose values are unique or free text: no
    // predicate is pruned by them (ids are looked up through the Bloom
    // filter), and comparing every string for them was ~3.5 % of encoding.
    let props = NO_STATISTICS.iter().fold(props, |p, c| {
        p.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::None)
    });
    let props = props
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: column::EVENT_TIME as i32,
            descending: false,
            nulls_first: false,
        }]))
        .build();
    let mut out = Vec::with_capacity(sorted.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut out, events_schema(), Some(props))?;
    writer.write(sorted)?;
    writer.close()?;
    Ok(Bytes::from(out))
}
