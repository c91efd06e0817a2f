//! The cxdb storage engine (SPEC §7).
//!
//! ```text
//! write(events) ─► validate ─► dedup (hot ids + Bloom, exact check on a hit)
//!               ─► WAL append (group commit, fsync) ─► write buffer ─► ack
//! persister (size / age / flush / shutdown):
//!   buffer ─► sort by event_time ─► Parquet (zstd, page stats, event_id Bloom)
//!          ─► object store events/tenant_id=<t>/date=<d>/<uuid>.parquet
//!          ─► catalog commit (atomic) ─► WAL segments removed
//! compactor: small files of a partition ─► one file, atomic catalog swap,
//!            old files deleted after a grace period
//! ```
//!
//! Queries take a [`ScanSnapshot`]: catalog files plus buffered batches,
//! taken under one lock so every event is seen exactly once even while a
//! persist or a compaction commits.

mod buffer;
mod changes;
mod compactor;
mod dedup;
mod error;
pub mod lake;
mod record;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use cxdb_catalog::{Catalog, FileMeta, Manifest};
use cxdb_model::{
    Event, EventBatchBuilder, EventColumns, EventError, EventFields, column, time::now_micros,
};
use cxdb_wal::{Recovery, Wal, WalConfig};
use futures::{StreamExt, TryStreamExt};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tracing::{info, warn};

use buffer::PartitionParts;
pub use buffer::{BufferedPartition, PartitionKey};
pub use changes::{Changes, ConversationChanges, Touched};
pub use compactor::{CompactionOutcome, RetentionOutcome};
pub use cxdb_catalog as catalog;
pub use cxdb_wal::SYNC_BUCKETS_SECS as WAL_SYNC_BUCKETS_SECS;
pub use error::{Error, Result};
pub use lake::Lake;

use buffer::Buffer;
use dedup::{DedupIndex, Verdict};

/// Persisted ids removed from the hot set per hold of the dedup lock.
const PERSISTED_IDS_PER_LOCK: usize = 8_192;

/// Settings of the storage engine. [`StorageConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Local state: `wal/` and `catalog/` (and the lake by default).
    pub data_dir: PathBuf,
    /// Where the Parquet lake lives; `None` = `file://<data_dir>`.
    pub object_store_url: Option<String>,
    /// Persist the buffer when it holds this many rows.
    pub persist_rows: usize,
    /// Persist the buffer when its oldest row is this old.
    pub persist_age: Duration,
    /// Merge a partition's files when it has at least this many small ones.
    pub compaction_min_files: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Files with fewer rows than this are "small" for compaction.
    pub target_file_rows: u64,
    /// How long replaced files stay readable for queries already running.
    pub delete_grace: Duration,
    pub wal_segment_bytes: u64,
    pub wal_recovery: Recovery,
    /// Run the persister / compactor task in the background.
    pub background: bool,
    /// How often the background task looks at the buffer.
    pub background_tick: Duration,
    /// How often the background task compacts, applies retention and
    /// deletes replaced files.
    pub maintenance_interval: Duration,
}

impl StorageConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            object_store_url: None,
            persist_rows: 1_000_000,
            persist_age: Duration::from_secs(60),
            row_group_rows: lake::ROW_GROUP_ROWS,
            compaction_min_files: 4,
            target_file_rows: 4_000_000,
            delete_grace: Duration::from_secs(300),
            wal_segment_bytes: 64 << 20,
            wal_recovery: Recovery::Strict,
            background: true,
            background_tick: Duration::from_millis(250),
            maintenance_interval: Duration::from_secs(60),
        }
    }
}

/// Options of one write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// All or nothing: if any event is rejected, none is written.
    pub atomic: bool,
    /// The only tenant the writer may write (a tenant-scoped token): an
    /// event of another tenant is rejected, per event, on `tenant_id`.
    pub tenant: Option<String>,
}

/// The answer to one write. Every input event is in exactly one of:
/// accepted, `duplicates`, `rejected`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    pub accepted: usize,
    /// Positions of events already stored (or repeated within the request).
    pub duplicates: Vec<usize>,
    pub rejected: Vec<EventError>,
}

/// What a query sees: the catalog's files and the buffered partitions,
/// taken at one instant.
#[derive(Debug, Clone, Default)]
pub struct ScanSnapshot {
    pub files: Vec<FileMeta>,
    pub buffered: Vec<BufferedPartition>,
}

/// Result of [`Storage::persist`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersistOutcome {
    pub files: usize,
    pub rows: usize,
}

/// Counters and gauges for `/metrics` and `AdminService.Stats`.
#[derive(Debug, Clone, Default)]
pub struct StorageStats {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub buffer_rows: usize,
    pub buffer_bytes: usize,
    pub files: usize,
    pub persisted_rows: u64,
    pub persisted_bytes: u64,
    pub wal_segments: usize,
    pub wal_syncs: u64,
    /// Write+fsync latency per bucket of [`WAL_SYNC_BUCKETS_SECS`].
    pub wal_sync_buckets: [u64; WAL_SYNC_BUCKETS_SECS.len()],
    pub wal_sync_seconds: f64,
    pub wal_appends: u64,
    pub dedup_hot_ids: usize,
    pub dedup_bloom_bytes: usize,
}

/// Catalog and buffer, swapped together so that a query never sees a
/// persisted partition both as files and as buffered rows.
#[derive(Debug)]
struct State {
    manifest: Arc<Manifest>,
    buffer: Buffer,
}

/// The storage engine. Cheap to share as `Arc<Storage>`.
pub struct Storage {
    config: StorageConfig,
    lake: Lake,
    catalog: Catalog,
    wal: Wal,
    state: RwLock<State>,
    dedup: Mutex<DedupIndex>,
    /// One persist at a time.
    persist_lock: tokio::sync::Mutex<()>,
    /// One compaction / retention / cleanup at a time.
    maintenance_lock: tokio::sync::Mutex<()>,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    closed: AtomicBool,
    stop: Notify,
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Who is told which conversations writes touched (`changes.rs`).
    change_subscribers: Mutex<Vec<std::sync::Weak<ConversationChanges>>>,
    /// Bumped whenever the set of visible events changes (a write, retention).
    data_version: AtomicU64,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("data_dir", &self.config.data_dir)
            .field("lake", &self.lake)
            .finish()
    }
}

impl Storage {
    /// Opens the engine on `config.data_dir`: loads the catalog, removes
    /// lake files no catalog version names (left by a crash between upload
    /// and commit), rebuilds the dedup index from the persisted files and
    /// replays the WAL into the buffer.
    pub async fn open(config: StorageConfig) -> Result<Arc<Self>> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let dir = dir.canonicalize().map_err(|e| Error::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let url = match &config.object_store_url {
            Some(u) => u.clone(),
            None => url::Url::from_directory_path(&dir)
                .map_err(|()| Error::ObjectStoreUrl {
                    url: dir.display().to_string(),
                    reason: "not an absolute path".into(),
                })?
                .to_string(),
        };
        let lake = Lake::open(&url)?;
        let catalog = Catalog::open(dir.join("catalog"))?;
        let manifest = catalog.snapshot();

        remove_orphans(&lake, &manifest).await?;

        let mut dedup = DedupIndex::default();
        let loaded: Vec<(String, Vec<RecordBatch>)> = futures::stream::iter(manifest.files.iter())
            .map(|f| {
                let lake = lake.clone();
                async move {
                    let b = lake.read_file(&f.path, Some(&[column::EVENT_ID])).await?;
                    Ok::<_, Error>((f.tenant_id.clone(), b))
                }
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        for (tenant, batches) in &loaded {
            for b in batches {
                for id in string_values(b.column(0)) {
                    dedup.insert_persisted(tenant, id);
                }
            }
        }
        drop(loaded);

        let mut wal_config = WalConfig::new(dir.join("wal"));
        wal_config.segment_max_bytes = config.wal_segment_bytes;
        wal_config.recovery = config.wal_recovery;
        let after = manifest.wal_persisted_through;
        let (wal, records) = tokio::task::spawn_blocking(move || Wal::open(wal_config, after))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let mut buffer = Buffer::new(after);
        let replayed = records.len();
        for r in records {
            let batch = record::decode(r.seq, r.payload)?;
            let tenants = batch.column(column::TENANT_ID);
            let ids = batch.column(column::EVENT_ID);
            for (t, id) in string_values(tenants).zip(string_values(ids)) {
                dedup.insert_hot(t, id);
            }
            buffer.insert(r.seq, &batch)?;
        }
        info!(
            files = manifest.files.len(),
            wal_records = replayed,
            buffered_rows = buffer.rows(),
            lake = %url,
            "storage opened"
        );

        let storage = Arc::new(Self {
            config: config.clone(),
            lake,
            catalog,
            wal,
            state: RwLock::new(State { manifest, buffer }),
            dedup: Mutex::new(dedup),
            persist_lock: tokio::sync::Mutex::new(()),
            maintenance_lock: tokio::sync::Mutex::new(()),
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            stop: Notify::new(),
            background: Mutex::new(None),
            change_subscribers: Mutex::new(Vec::new()),
            data_version: AtomicU64::new(0),
        });
        if config.background {
            let handle = tokio::spawn(background(Arc::downgrade(&storage)));
            *storage.background.lock() = Some(handle);
        }
        Ok(storage)
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The current catalog manifest.
    pub fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&self.state.read().manifest)
    }

    /// Validates, deduplicates and durably writes `events`. Returns once
    /// the accepted events are synced to the WAL and visible to queries.
    pub async fn write(
        self: &Arc<Self>,
        events: Vec<Event>,
        opts: WriteOptions,
    ) -> Result<WriteOutcome> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        let now = now_micros();
        let mut outcome = WriteOutcome::default();
        let mut builder = EventBatchBuilder::with_capacity(events.len());
        let mut positions = Vec::with_capacity(events.len());
        for (i, mut e) in events.into_iter().enumerate() {
            let checked = e
                .validate(i)
                .and_then(|()| check_scope(&opts, &e.fields(), i));
            match checked {
                Ok(()) => {
                    e.ingested_at = now;
                    builder.push(&e);
                    positions.push(i);
                }
                Err(err) => outcome.rejected.push(err),
            }
        }
        self.write_accepted(builder.finish(), positions, outcome, &opts)
            .await
    }

    /// [`Storage::write`] for an Arrow batch (Flight `DoPut`), without
    /// building rows: the client's columns are converted to the events
    /// schema ([`EventColumns`]; a wrong column is an error for the whole
    /// batch), the same per-event rules run on each row in place, and the
    /// accepted rows are filtered out of the batch.
    pub async fn write_batch(
        self: &Arc<Self>,
        batch: &RecordBatch,
        opts: WriteOptions,
    ) -> Result<WriteOutcome> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        let now = now_micros();
        let columns = EventColumns::from_batch(batch)?;
        let fields = columns.fields()?;
        let mut outcome = WriteOutcome::default();
        let mut positions = Vec::with_capacity(columns.num_rows());
        let keep: BooleanArray = (0..columns.num_rows())
            .map(|i| {
                let row = fields.row(i);
                match row.check(i).and_then(|()| check_scope(&opts, &row, i)) {
                    Ok(()) => {
                        positions.push(i);
                        Some(true)
                    }
                    Err(err) => {
                        outcome.rejected.push(err);
                        Some(false)
                    }
                }
            })
            .collect();
        let accepted = columns.accept(&keep, now)?;
        self.write_accepted(accepted, positions, outcome, &opts)
            .await
    }

    /// The rest of a write once its events are validated: `batch` holds the
    /// valid ones, row `r` being the request's event `positions[r]`.
    /// Deduplicates, appends to the WAL, inserts into the buffer.
    async fn write_accepted(
        self: &Arc<Self>,
        batch: RecordBatch,
        positions: Vec<usize>,
        mut outcome: WriteOutcome,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome> {
        self.rejected
            .fetch_add(outcome.rejected.len() as u64, Ordering::Relaxed);
        if opts.atomic && !outcome.rejected.is_empty() {
            return Ok(outcome);
        }
        let ids = EventIds::of(&batch)?;
        // Hashed before the lock: concurrent writers hash in parallel.
        let keys: Vec<(&str, u128)> = (0..batch.num_rows())
            .map(|r| {
                let (tenant, id) = ids.get(r);
                (tenant, dedup::id_hash(id))
            })
            .collect();

        let mut fresh = vec![false; batch.num_rows()];
        let mut check = Vec::new();
        let verdicts = self.dedup.lock().reserve_all(&keys);
        for (r, verdict) in verdicts.into_iter().enumerate() {
            match verdict {
                Verdict::New => fresh[r] = true,
                Verdict::Duplicate => outcome.duplicates.push(positions[r]),
                Verdict::Check => check.push(r),
            }
        }
        if !check.is_empty() {
            let found = match self.persisted_ids(check.iter().map(|&r| ids.get(r))).await {
                Ok(f) => f,
                Err(err) => {
                    self.release(&keys, &fresh);
                    return Err(err);
                }
            };
            let mut dedup = self.dedup.lock();
            for r in check {
                let (tenant, id) = ids.get(r);
                if found.contains(&(tenant.to_string(), id.to_string())) {
                    outcome.duplicates.push(positions[r]);
                } else if dedup.reserve_checked(tenant, keys[r].1) == Verdict::New {
                    fresh[r] = true;
                } else {
                    outcome.duplicates.push(positions[r]);
                }
            }
        }
        outcome.duplicates.sort_unstable();
        self.duplicates
            .fetch_add(outcome.duplicates.len() as u64, Ordering::Relaxed);
        let accepted = fresh.iter().filter(|f| **f).count();
        if accepted == 0 {
            return Ok(outcome);
        }

        let batch = if accepted == batch.num_rows() {
            batch.clone()
        } else {
            filter_record_batch(&batch, &BooleanArray::from(fresh.clone()))?
        };
        // The append and the buffer insert run in their own task: a caller
        // that goes away must not leave a synced WAL record out of the buffer.
        let this = Arc::clone(self);
        let durable = tokio::spawn(async move {
            let parts = buffer::split_by_partition(&batch)?;
            let payload = record::encode(&batch)?;
            let seq = this.wal.append(payload).await?;
            this.state.write().buffer.insert_split(seq, parts);
            this.publish_changes(|c| c.record(&batch));
            Ok::<_, Error>(())
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))
        .and_then(|r| r);
        if let Err(err) = durable {
            self.release(&keys, &fresh);
            return Err(err);
        }
        outcome.accepted = accepted;
        self.accepted
            .fetch_add(outcome.accepted as u64, Ordering::Relaxed);
        Ok(outcome)
    }

    /// From now on, collects the conversations every write touches (and a
    /// reset when events are removed) for the caller; see `changes.rs`.
    /// Past `limit` touched conversations the changes collapse into a reset
    /// (the subscriber would rebuild anyway) until they are taken.
    pub fn subscribe_conversation_changes(&self, limit: usize) -> Arc<ConversationChanges> {
        let changes = Arc::new(ConversationChanges::new(limit));
        self.change_subscribers
            .lock()
            .push(Arc::downgrade(&changes));
        changes
    }

    /// Changes whenever the set of visible events changes (after a write
    /// made events visible, after retention removed some): state derived
    /// from the events at one version is valid while the version stays.
    pub fn data_version(&self) -> u64 {
        self.data_version.load(Ordering::Acquire)
    }

    fn publish_changes(&self, f: impl Fn(&ConversationChanges)) {
        self.data_version.fetch_add(1, Ordering::AcqRel);
        self.change_subscribers
            .lock()
            .retain(|weak| match weak.upgrade() {
                Some(changes) => {
                    f(&changes);
                    true
                }
                None => false,
            });
    }

    /// Gives back the reservations of the rows `reserved` marks.
    fn release(&self, keys: &[(&str, u128)], reserved: &[bool]) {
        let mut dedup = self.dedup.lock();
        for (&(tenant, key), _) in keys.iter().zip(reserved).filter(|(_, f)| **f) {
            dedup.release(tenant, key);
        }
    }

    /// Which of the `(tenant, event_id)` pairs are in a persisted file.
    async fn persisted_ids(
        &self,
        pairs: impl Iterator<Item = (&str, &str)>,
    ) -> Result<HashSet<(String, String)>> {
        let manifest = self.manifest();
        let mut by_tenant: std::collections::HashMap<String, HashSet<String>> = Default::default();
        for (tenant, id) in pairs {
            by_tenant
                .entry(tenant.to_string())
                .or_default()
                .insert(id.to_string());
        }
        let mut found = HashSet::new();
        for (tenant, ids) in by_tenant {
            let ids = Arc::new(ids);
            let lookups = manifest.files_of(&tenant).map(|f| {
                let (lake, path, ids) = (self.lake.clone(), f.path.clone(), Arc::clone(&ids));
                async move { lake.find_event_ids(&path, &ids).await }
            });
            let hits: Vec<Vec<String>> = futures::stream::iter(lookups.collect::<Vec<_>>())
                .buffer_unordered(8)
                .try_collect()
                .await?;
            for id in hits.into_iter().flatten() {
                found.insert((tenant.clone(), id));
            }
        }
        Ok(found)
    }

    /// Files and buffered partitions whose `(tenant, day)` `keep` accepts.
    pub fn snapshot(&self, keep: impl Fn(&str, i32) -> bool) -> Result<ScanSnapshot> {
        let (files, parts) = {
            let state = self.state.read();
            let files = state
                .manifest
                .files
                .iter()
                .filter(|f| keep(&f.tenant_id, f.day))
                .cloned()
                .collect();
            (files, state.buffer.partitions(|k| keep(&k.tenant, k.day)))
        };
        // Rows of writes that spanned partitions are copied out here, the
        // first time a query reads them, outside the lock writers take.
        Ok(ScanSnapshot {
            files,
            buffered: parts
                .iter()
                .map(PartitionParts::materialize)
                .collect::<Result<_>>()?,
        })
    }

    /// Every row of a snapshot read into memory (tests, exports, exact checks).
    pub async fn read_snapshot(&self, snapshot: &ScanSnapshot) -> Result<Vec<RecordBatch>> {
        let mut out: Vec<RecordBatch> = snapshot
            .buffered
            .iter()
            .flat_map(|p| p.batches.iter().cloned())
            .collect();
        for f in &snapshot.files {
            out.extend(self.lake.read_file(&f.path, None).await?);
        }
        Ok(out)
    }

    /// Writes the buffer to Parquet now; returns when the catalog lists the
    /// new files (and their WAL segments are removed).
    pub async fn persist(&self) -> Result<PersistOutcome> {
        let _guard = self.persist_lock.lock().await;
        // Close the active segment so the records persisted here can go.
        self.wal.rotate()?;
        let (parts, through) = self.state.write().buffer.begin_persist();
        if parts.is_empty() {
            self.state.write().buffer.end_persist(true, through);
            return Ok(PersistOutcome::default());
        }
        match self.write_files(&parts).await {
            Ok(metas) => {
                let outcome = PersistOutcome {
                    files: metas.len(),
                    rows: metas.iter().map(|m| m.rows as usize).sum(),
                };
                let committed = {
                    let mut state = self.state.write();
                    let committed = self.catalog.commit(|m| {
                        m.files.extend(metas.iter().cloned());
                        m.wal_persisted_through = m.wal_persisted_through.max(through);
                        Ok(())
                    });
                    match committed {
                        Ok((manifest, ())) => {
                            state.manifest = manifest;
                            state.buffer.end_persist(true, through);
                            Ok(())
                        }
                        Err(e) => {
                            state.buffer.end_persist(false, through);
                            Err(e)
                        }
                    }
                };
                if let Err(e) = committed {
                    self.delete_quietly(metas.iter().map(|m| m.path.clone()))
                        .await;
                    return Err(e.into());
                }
                // A million ids leave the hot set per persist: hashed
                // outside the lock, removed a chunk per lock hold, so writers
                // are not held up for the whole removal. (A writer meanwhile
                // sees an id as hot — a duplicate — or, once removed, checks
                // the files the catalog already lists: the same answer.)
                for p in &parts {
                    for part in &p.parts {
                        let (batch, rows) = part.source();
                        // Buffered batches are of the events schema.
                        let Some(ids) = batch.column(column::EVENT_ID).as_string_opt::<i32>()
                        else {
                            continue;
                        };
                        let hashes = match rows {
                            Some(rows) => dedup::id_hashes(
                                rows.values().iter().map(|&r| ids.value(r as usize)),
                            ),
                            None => dedup::id_hashes(ids.iter().flatten()),
                        };
                        for chunk in hashes.chunks(PERSISTED_IDS_PER_LOCK) {
                            self.dedup.lock().persisted(&p.key.tenant, chunk);
                        }
                    }
                }
                let removed = self.wal.remove_through(through)?;
                info!(
                    files = outcome.files,
                    rows = outcome.rows,
                    wal_through = through,
                    wal_segments_removed = removed,
                    "persisted write buffer"
                );
                Ok(outcome)
            }
            Err(e) => {
                warn!(error = %e, "persist failed; rows stay buffered and will be retried");
                self.state.write().buffer.end_persist(false, through);
                Err(e)
            }
        }
    }

    /// Encodes and uploads one file per partition.
    async fn write_files(&self, parts: &[PartitionParts]) -> Result<Vec<FileMeta>> {
        let mut metas = Vec::with_capacity(parts.len());
        for p in parts {
            let sources = p.parts.iter().map(|part| part.source()).collect();
            match self
                .write_file(&p.key.tenant, p.key.day, FileRows::Parts(sources))
                .await
            {
                Ok(meta) => metas.push(meta),
                Err(e) => {
                    self.delete_quietly(metas.iter().map(|m: &FileMeta| m.path.clone()))
                        .await;
                    return Err(e);
                }
            }
        }
        Ok(metas)
    }

    /// Sorts, encodes and durably uploads one Parquet file of a partition.
    async fn write_file(&self, tenant: &str, day: i32, rows: FileRows) -> Result<FileMeta> {
        let group_rows = self.config.row_group_rows.max(1);
        let (bytes, sorted) = tokio::task::spawn_blocking(move || match rows {
            FileRows::Batches(batches) => lake::encode_parquet(&batches, group_rows),
            FileRows::Parts(sources) => {
                let sorted = lake::gather_sorted(&sources)?;
                Ok((lake::encode_sorted(&sorted, group_rows)?, sorted))
            }
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let times = sorted
            .column(column::EVENT_TIME)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>();
        let (min_time, max_time) = match times {
            Some(t) if !t.is_empty() => (t.value(0), t.value(t.len() - 1)),
            _ => (0, 0),
        };
        let path = lake::file_path(tenant, day);
        let size_bytes = bytes.len() as u64;
        self.lake
            .put_durable(&object_store::path::Path::from(path.as_str()), bytes)
            .await?;
        Ok(FileMeta {
            path,
            tenant_id: tenant.to_string(),
            day,
            rows: sorted.num_rows() as u64,
            size_bytes,
            min_time,
            max_time,
            created_at: now_micros(),
        })
    }

    async fn delete_quietly(&self, paths: impl Iterator<Item = String>) {
        for p in paths {
            if let Err(e) = self.lake.delete(&p).await {
                warn!(path = %p, error = %e, "could not delete an uncommitted file");
            }
        }
    }

    /// Applies `f` to the catalog (calendars, SLA policies, retention…) and
    /// makes the result current for queries.
    pub fn commit_catalog<T>(
        &self,
        f: impl FnOnce(&mut Manifest) -> cxdb_catalog::Result<T>,
    ) -> Result<T> {
        let mut state = self.state.write();
        let (manifest, out) = self.catalog.commit(f)?;
        state.manifest = manifest;
        Ok(out)
    }

    pub fn stats(&self) -> StorageStats {
        let (buffer_rows, buffer_bytes, files, persisted_rows, persisted_bytes) = {
            let s = self.state.read();
            (
                s.buffer.rows(),
                s.buffer.bytes(),
                s.manifest.files.len(),
                s.manifest.files.iter().map(|f| f.rows).sum(),
                s.manifest.files.iter().map(|f| f.size_bytes).sum(),
            )
        };
        let wal = self.wal.stats();
        let dedup = self.dedup.lock();
        StorageStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            buffer_rows,
            buffer_bytes,
            files,
            persisted_rows,
            persisted_bytes,
            wal_segments: wal.segments,
            wal_syncs: wal.syncs,
            wal_sync_buckets: wal.sync_buckets,
            wal_sync_seconds: wal.sync_seconds,
            wal_appends: wal.appends,
            dedup_hot_ids: dedup.hot_ids(),
            dedup_bloom_bytes: dedup.bloom_bytes(),
        }
    }

    /// Graceful stop: no more writes, the buffer is persisted, the WAL closed.
    pub async fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop.notify_waiters();
        let handle = self.background.lock().take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        self.persist().await?;
        self.wal.close()?;
        Ok(())
    }
}

/// The rows of one Parquet file to write.
enum FileRows {
    /// Batches of any order (compaction: the files being merged).
    Batches(Vec<RecordBatch>),
    /// Buffered parts.
    Parts(Vec<buffer::RowSource>),
}

/// The persister / maintenance loop. Holds only a weak reference so that
/// dropping the last `Arc<Storage>` ends it.
async fn background(storage: std::sync::Weak<Storage>) {
    let mut last_maintenance = tokio::time::Instant::now();
    loop {
        let Some(s) = storage.upgrade() else { return };
        if s.closed.load(Ordering::Acquire) {
            return;
        }
        let tick = s.config.background_tick;
        let (rows, age, persisting) = {
            let st = s.state.read();
            (st.buffer.rows(), st.buffer.age(), st.buffer.is_persisting())
        };
        if !persisting
            && (rows >= s.config.persist_rows || age.is_some_and(|a| a >= s.config.persist_age))
            && let Err(e) = s.persist().await
        {
            warn!(error = %e, "background persist failed");
        }
        if last_maintenance.elapsed() >= s.config.maintenance_interval {
            last_maintenance = tokio::time::Instant::now();
            if let Err(e) = s.maintain(now_micros()).await {
                warn!(error = %e, "background maintenance failed");
            }
        }
        // Holding `s` while asleep is fine: shutdown() wakes this.
        tokio::select! {
            () = s.stop.notified() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}

/// Deletes lake files that no catalog entry (current or pending deletion)
/// names: uploads of a persist or compaction that crashed before its commit.
async fn remove_orphans(lake: &Lake, manifest: &Manifest) -> Result<()> {
    let known: HashSet<&str> = manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .chain(manifest.pending_deletes.iter().map(|p| p.path.as_str()))
        .collect();
    let prefix = object_store::path::Path::from("events");
    let listed: Vec<object_store::ObjectMeta> =
        lake.store.list(Some(&prefix)).try_collect().await?;
    for meta in listed {
        let path = meta.location.to_string();
        if path.ends_with(".parquet") && !known.contains(path.as_str()) {
            warn!(path = %path, "removing a lake file no catalog entry names (left by an interrupted persist)");
            lake.delete(&path).await?;
        }
    }
    Ok(())
}

/// The non-null values of a Utf8 column.
fn string_values(array: &arrow::array::ArrayRef) -> impl Iterator<Item = &str> {
    let strings = array.as_any().downcast_ref::<StringArray>();
    strings.into_iter().flat_map(|s| s.iter().flatten())
}

/// A tenant-scoped writer may write only its tenant.
fn check_scope(opts: &WriteOptions, e: &EventFields<'_>, i: usize) -> Result<(), EventError> {
    match &opts.tenant {
        Some(scope) if *scope != e.tenant_id => Err(EventError::new(
            i,
            Some(e.event_id),
            "tenant_id",
            format!(
                "this token may only write tenant {scope:?}, not {:?}",
                e.tenant_id
            ),
        )),
        _ => Ok(()),
    }
}

/// The `(tenant_id, event_id)` columns of a batch of the events schema.
struct EventIds<'a> {
    tenants: &'a StringArray,
    ids: &'a StringArray,
}

impl<'a> EventIds<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self> {
        let strings = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| Error::Task(format!("column {i} of a write is not Utf8")))
        };
        Ok(Self {
            tenants: strings(column::TENANT_ID)?,
            ids: strings(column::EVENT_ID)?,
        })
    }

    fn get(&self, row: usize) -> (&'a str, &'a str) {
        (self.tenants.value(row), self.ids.value(row))
    }
}
