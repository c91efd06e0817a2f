//! The group-commit thread: sole owner of the active segment file.
//!
//! It blocks for one command, drains whatever else is already queued (no timers, so an
//! idle WAL adds no latency), writes all queued records with one `writev` and one
//! `fdatasync`, then answers every waiter.

use std::collections::VecDeque;
use std::fs::File;
use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{error, warn};

use crate::error::{Error, Result};
use crate::segment::{self, MAGIC_LEN, SegmentInfo};

/// Slices per `writev` (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

pub(crate) enum Command {
    Append { payload: Bytes, done: Completion },
    Rotate(Completion),
    Close,
}

/// Where the writer reports a result: an async task or a blocked thread.
pub(crate) enum Completion {
    Async(oneshot::Sender<Result<u64>>),
    Blocking(SyncSender<Result<u64>>),
}

impl Completion {
    fn complete(self, result: Result<u64>) {
        // A waiter that went away (dropped future) needs no answer; its record still counts.
        match self {
            Completion::Async(tx) => drop(tx.send(result)),
            Completion::Blocking(tx) => drop(tx.send(result)),
        }
    }
}

/// State the writer publishes to `Wal` handles.
pub(crate) struct Shared {
    pub(crate) segments: Mutex<Segments>,
    pub(crate) last_seq: AtomicU64,
    pub(crate) appends: AtomicU64,
    pub(crate) syncs: AtomicU64,
    /// Cumulative counts of write+fsync latencies per [`SYNC_BUCKETS_SECS`] bucket.
    pub(crate) sync_buckets: [AtomicU64; SYNC_BUCKETS_SECS.len()],
    pub(crate) sync_micros: AtomicU64,
}

/// Upper bounds (seconds) of the write+fsync latency histogram.
pub const SYNC_BUCKETS_SECS: [f64; 11] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

impl Shared {
    pub(crate) fn new(segments: Segments, last_seq: u64) -> Self {
        Self {
            segments: Mutex::new(segments),
            last_seq: AtomicU64::new(last_seq),
            appends: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync_buckets: Default::default(),
            sync_micros: AtomicU64::new(0),
        }
    }

    fn record_sync(&self, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = SYNC_BUCKETS_SECS.iter().position(|le| secs <= *le) {
            self.sync_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sync_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) struct Segments {
    /// Oldest first; only these may be removed.
    pub(crate) closed: VecDeque<SegmentInfo>,
    pub(crate) active: SegmentInfo,
}

pub(crate) struct Writer {
    dir: PathBuf,
    segment_max_bytes: u64,
    file: File,
    next_seq: u64,
    shared: Arc<Shared>,
    /// Set once a write or sync failed: the file may hold a partial batch.
    poisoned: Option<String>,
}

impl Writer {
    pub(crate) fn new(
        dir: PathBuf,
        segment_max_bytes: u64,
        file: File,
        next_seq: u64,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            dir,
            segment_max_bytes,
            file,
            next_seq,
            shared,
            poisoned: None,
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        let mut batch = Vec::new();
        while let Ok(first) = rx.recv() {
            for command in std::iter::once(first).chain(rx.try_iter()) {
                match command {
                    Command::Append { payload, done } => batch.push((payload, done)),
                    Command::Rotate(done) => {
                        self.commit(&mut batch);
                        done.complete(self.rotate());
                    }
                    Command::Close => {
                        // Dropping the receiver fails anything sent after Close with `Closed`.
                        self.commit(&mut batch);
                        return;
                    }
                }
            }
            self.commit(&mut batch);
        }
    }

    fn commit(&mut self, batch: &mut Vec<(Bytes, Completion)>) {
        if batch.is_empty() {
            return;
        }
        if let Some(reason) = &self.poisoned {
            for (_, done) in batch.drain(..) {
                done.complete(Err(Error::Poisoned {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        let first_seq = self.next_seq;
        // Headers here, payloads where they are: one `writev` per
        // IOV_MAX slices, no copy of the records into a buffer first.
        let headers: Vec<_> = (first_seq..)
            .zip(batch.iter())
            .map(|(seq, (payload, _))| segment::record_header(seq, payload))
            .collect();
        let written: u64 = headers.len() as u64 * segment::HEADER_LEN as u64
            + batch.iter().map(|(p, _)| p.len() as u64).sum::<u64>();
        let started = std::time::Instant::now();
        let result = headers
            .iter()
            .zip(batch.iter())
            .map(|(h, (payload, _))| [IoSlice::new(h), IoSlice::new(payload)])
            .collect::<Vec<_>>()
            .chunks_mut(IOV_MAX / 2)
            .try_for_each(|pairs| {
                segment::write_all_vectored(&mut self.file, pairs.as_flattened_mut())
            })
            .and_then(|()| self.file.sync_data());

        let mut segments = self.shared.segments.lock();
        if let Err(e) = result {
            let reason = format!("writing {}: {e}", segments.active.path.display());
            error!(%reason, "WAL write failed; refusing further appends");
            for (_, done) in batch.drain(..) {
                done.complete(Err(Error::Poisoned {
                    reason: reason.clone(),
                }));
            }
            self.poisoned = Some(reason);
            return;
        }
        let count = batch.len() as u64;
        self.next_seq += count;
        segments.active.len += written;
        segments.active.last_seq = self.next_seq - 1;
        let full = segments.active.len > self.segment_max_bytes;
        drop(segments);
        self.shared
            .last_seq
            .store(self.next_seq - 1, Ordering::Release);
        self.shared.appends.fetch_add(count, Ordering::Relaxed);
        self.shared.record_sync(started.elapsed());
        for (seq, (_, done)) in (first_seq..).zip(batch.drain(..)) {
            done.complete(Ok(seq));
        }

        if full {
            // The records are already durable; keep using the big segment and retry later.
            if let Err(e) = self.rotate() {
                warn!(error = %e, "WAL segment rotation failed; will retry after the next write");
            }
        }
    }

    /// Closes the active segment and starts the next one unless the active one is empty.
    fn rotate(&mut self) -> Result<u64> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Poisoned {
                reason: reason.clone(),
            });
        }
        let last_seq = self.next_seq - 1;
        if self.shared.segments.lock().active.len <= MAGIC_LEN {
            return Ok(last_seq);
        }
        let (file, path) = segment::create_segment(&self.dir, self.next_seq)?;
        self.file = file;
        let fresh = SegmentInfo {
            last_seq,
            path,
            len: MAGIC_LEN,
        };
        let mut segments = self.shared.segments.lock();
        let closed = std::mem::replace(&mut segments.active, fresh);
        segments.closed.push_back(closed);
        Ok(last_seq)
    }
}
