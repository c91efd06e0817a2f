//! The write buffer: acknowledged events as immutable Arrow batches per
//! `(tenant, day)` partition, visible to queries at once, until the persister
//! has written them to Parquet and the catalog lists the files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use cxdb_model::{column, time::day_of};
use parking_lot::Mutex;

use crate::error::Result;

/// A `(tenant, UTC date)` partition of `events`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    pub tenant: Arc<str>,
    /// Days since 1970-01-01.
    pub day: i32,
}

/// Buffered rows of one partition, as handed to a query.
#[derive(Debug, Clone)]
pub struct BufferedPartition {
    pub key: PartitionKey,
    pub batches: Vec<RecordBatch>,
}

/// Buffered rows of one partition as the buffer holds them (see [`Part`]).
#[derive(Debug, Clone)]
pub(crate) struct PartitionParts {
    pub(crate) key: PartitionKey,
    pub(crate) parts: Vec<Arc<Part>>,
}

impl PartitionParts {
    /// The rows as batches, copied out of shared write batches where needed.
    pub(crate) fn materialize(&self) -> Result<BufferedPartition> {
        Ok(BufferedPartition {
            key: self.key.clone(),
            batches: self
                .parts
                .iter()
                .map(|p| p.batch())
                .collect::<Result<_>>()?,
        })
    }
}

/// A batch and which of its rows (`None`: all of them).
pub(crate) type RowSource = (RecordBatch, Option<UInt32Array>);

/// One write's rows of one partition. A write inside one partition is kept
/// as it came. A write spanning several partitions is kept once, shared by
/// its partitions, each with the indices of its rows: the write path does
/// not copy rows; a partition's rows are copied out (`take`) the first time
/// a query reads them, and the persister gathers them straight into the
/// sorted file batch (one copy, where split + concat + sort copied three
/// times).
#[derive(Debug)]
pub(crate) struct Part {
    rows: usize,
    /// Memory held for this part: its share of the write's batch.
    bytes: usize,
    state: Mutex<PartState>,
}

#[derive(Debug, Clone)]
enum PartState {
    /// Every row of `batch` (a write inside one partition, or rows taken).
    Whole(RecordBatch),
    /// The rows `rows` of a write's batch that other partitions share.
    Shared {
        batch: RecordBatch,
        rows: UInt32Array,
    },
}

impl Part {
    fn whole(batch: RecordBatch) -> Self {
        Self {
            rows: batch.num_rows(),
            bytes: batch.get_array_memory_size(),
            state: Mutex::new(PartState::Whole(batch)),
        }
    }

    fn shared(batch: RecordBatch, rows: UInt32Array) -> Self {
        let bytes = batch.get_array_memory_size() * rows.len() / batch.num_rows().max(1);
        Self {
            rows: rows.len(),
            bytes,
            state: Mutex::new(PartState::Shared { batch, rows }),
        }
    }

    pub(crate) fn num_rows(&self) -> usize {
        self.rows
    }

    /// The part's rows as one batch. Rows of a shared write batch are
    /// copied out once and kept, and this part's hold on the shared batch
    /// ends (it is freed once every partition of the write has done so or
    /// has been persisted).
    pub(crate) fn batch(&self) -> Result<RecordBatch> {
        let (batch, rows) = self.source();
        let Some(rows) = rows else {
            return Ok(batch);
        };
        // The copy runs outside the lock; two concurrent readers may both
        // copy, and either result is the same rows.
        let taken = take_record_batch(&batch, &rows)?;
        *self.state.lock() = PartState::Whole(taken.clone());
        Ok(taken)
    }

    /// The batch holding the part's rows and which rows of it (`None`: all).
    pub(crate) fn source(&self) -> RowSource {
        match &*self.state.lock() {
            PartState::Whole(b) => (b.clone(), None),
            PartState::Shared { batch, rows } => (batch.clone(), Some(rows.clone())),
        }
    }
}

#[derive(Debug)]
struct Chunk {
    seq: u64,
    part: Arc<Part>,
}

#[derive(Debug, Default)]
pub(crate) struct Buffer {
    active: BTreeMap<PartitionKey, Vec<Chunk>>,
    /// Taken by the running persist; still visible until its catalog commit.
    persisting: Vec<PartitionParts>,
    /// Every WAL record with seq <= this is in the buffer (or persisted).
    inserted_through: u64,
    /// Records inserted ahead of a gap (concurrent writers finish out of order).
    ahead: BTreeSet<u64>,
    rows: usize,
    bytes: usize,
    oldest: Option<Instant>,
}

impl Buffer {
    pub(crate) fn new(persisted_through: u64) -> Self {
        Self {
            inserted_through: persisted_through,
            ..Default::default()
        }
    }

    /// Adds the batch of WAL record `seq`, split by partition.
    pub(crate) fn insert(&mut self, seq: u64, batch: &RecordBatch) -> Result<()> {
        self.insert_split(seq, split_by_partition(batch)?);
        Ok(())
    }

    /// [`Buffer::insert`] of a batch already split by partition
    /// ([`split_by_partition`]): the caller splits the rows before it takes
    /// the lock the buffer lives under.
    pub(crate) fn insert_split(&mut self, seq: u64, parts: Vec<(PartitionKey, Arc<Part>)>) {
        for (key, part) in parts {
            self.rows += part.num_rows();
            self.bytes += part.bytes;
            self.active
                .entry(key)
                .or_default()
                .push(Chunk { seq, part });
        }
        self.oldest.get_or_insert_with(Instant::now);
        if seq == self.inserted_through + 1 {
            self.inserted_through = seq;
            while self.ahead.remove(&(self.inserted_through + 1)) {
                self.inserted_through += 1;
            }
        } else if seq > self.inserted_through {
            self.ahead.insert(seq);
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn age(&self) -> Option<std::time::Duration> {
        self.oldest.map(|t| t.elapsed())
    }

    pub(crate) fn is_persisting(&self) -> bool {
        !self.persisting.is_empty()
    }

    /// Moves every chunk up to the contiguous watermark into `persisting`
    /// and returns it with that watermark: once these partitions are in the
    /// catalog, WAL records <= watermark are no longer needed.
    pub(crate) fn begin_persist(&mut self) -> (Vec<PartitionParts>, u64) {
        let through = self.inserted_through;
        let mut taken = Vec::new();
        let mut keep = BTreeMap::new();
        for (key, chunks) in std::mem::take(&mut self.active) {
            let (old, new): (Vec<_>, Vec<_>) = chunks.into_iter().partition(|c| c.seq <= through);
            if !old.is_empty() {
                taken.push(PartitionParts {
                    key: key.clone(),
                    parts: old.into_iter().map(|c| c.part).collect(),
                });
            }
            if !new.is_empty() {
                keep.insert(key, new);
            }
        }
        self.active = keep;
        self.recount();
        self.persisting = taken.clone();
        (taken, through)
    }

    /// The persist committed (or failed: then the rows go back to active so
    /// they stay visible and are retried).
    pub(crate) fn end_persist(&mut self, committed: bool, through: u64) {
        let parts = std::mem::take(&mut self.persisting);
        if !committed {
            for p in parts {
                let chunks = self.active.entry(p.key).or_default();
                let mut old: Vec<Chunk> = p
                    .parts
                    .into_iter()
                    .map(|part| Chunk { seq: through, part })
                    .collect();
                old.append(chunks);
                *chunks = old;
            }
        }
        self.recount();
    }

    fn recount(&mut self) {
        let chunks = || self.active.values().flatten();
        self.rows = chunks().map(|c| c.part.num_rows()).sum();
        self.bytes = chunks().map(|c| c.part.bytes).sum();
        if self.active.is_empty() {
            self.oldest = None;
        }
    }

    /// The buffered partitions that `keep` selects, for a query (which
    /// materializes them after the lock is released).
    pub(crate) fn partitions(&self, keep: impl Fn(&PartitionKey) -> bool) -> Vec<PartitionParts> {
        let mut out: Vec<PartitionParts> = self
            .persisting
            .iter()
            .filter(|p| keep(&p.key))
            .cloned()
            .collect();
        for (key, chunks) in &self.active {
            if keep(key) {
                out.push(PartitionParts {
                    key: key.clone(),
                    parts: chunks.iter().map(|c| Arc::clone(&c.part)).collect(),
                });
            }
        }
        out
    }
}

/// Splits a batch of events into one [`Part`] per `(tenant, day)`, without
/// copying rows.
pub(crate) fn split_by_partition(batch: &RecordBatch) -> Result<Vec<(PartitionKey, Arc<Part>)>> {
    let tenants = batch
        .column(column::TENANT_ID)
        .as_any()
        .downcast_ref::<StringArray>();
    let times = batch
        .column(column::EVENT_TIME)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>();
    let (Some(tenants), Some(times)) = (tenants, times) else {
        return Err(arrow::error::ArrowError::SchemaError(
            "batch is not of the events schema".into(),
        )
        .into());
    };
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let first = (tenants.value(0), day_of(times.value(0)));
    let uniform =
        (0..batch.num_rows()).all(|i| (tenants.value(i), day_of(times.value(i))) == first);
    if uniform {
        let key = PartitionKey {
            tenant: Arc::from(first.0),
            day: first.1,
        };
        return Ok(vec![(key, Arc::new(Part::whole(batch.clone())))]);
    }
    let mut groups: HashMap<(&str, i32), Vec<u32>> = HashMap::new();
    for i in 0..batch.num_rows() {
        groups
            .entry((tenants.value(i), day_of(times.value(i))))
            .or_default()
            .push(i as u32);
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((tenant, day), rows) in groups {
        let part = Part::shared(batch.clone(), UInt32Array::from(rows));
        out.push((
            PartitionKey {
                tenant: Arc::from(tenant),
                day,
            },
            Arc::new(part),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
