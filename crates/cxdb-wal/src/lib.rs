//! `cxdb-wal`: the segmented write-ahead log under cxdb's write buffer. It stores opaque
//! byte records (the storage layer puts Arrow IPC in them), acknowledges each one only
//! after it is fsynced, and shares one write + fsync among concurrent appenders.
//!
//! On disk, `dir` holds segments named `<first seq, 20 digits>.wal`; each starts with the
//! magic `CXDBWAL1` followed by records
//! `u32 LE payload_len | u32 LE crc32(seq LE ++ payload) | u64 LE seq | payload`, with seqs
//! increasing by one across segments. [`Wal::open`] verifies everything: a torn tail of the
//! last segment (a crash mid-write) is cut off; anything else that fails verification is
//! [`Error::Corrupt`] unless [`Recovery::TruncateCorrupt`] is chosen.

mod error;
mod segment;
mod writer;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{info, warn};

pub use error::{Error, Result};
pub use segment::MAX_PAYLOAD_LEN;

use error::io;
use segment::{MAGIC_LEN, SegmentInfo};
pub use writer::SYNC_BUCKETS_SECS;
use writer::{Command, Completion, Segments, Shared, Writer};

/// Default size at which the writer starts a new segment.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory holding the segment files; created if missing.
    pub dir: PathBuf,
    /// Rotate to a new segment once the active one grows beyond this many bytes.
    pub segment_max_bytes: u64,
    /// What `open` does with a corrupt record that is not a torn tail.
    pub recovery: Recovery,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            recovery: Recovery::default(),
        }
    }
}

/// Handling of corruption found while opening (a torn tail is always repaired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Refuse to open, so an operator decides whether to lose data.
    #[default]
    Strict,
    /// Cut the log at the corrupt record, deleting it and everything after it.
    TruncateCorrupt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedRecord {
    pub seq: u64,
    pub payload: Bytes,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WalStats {
    /// Segment files currently on disk, the active one included.
    pub segments: usize,
    /// Total size of those files.
    pub bytes: u64,
    /// Records appended since open.
    pub appends: u64,
    /// `fdatasync` calls since open; below `appends` when group commit shares them.
    pub syncs: u64,
    /// Write+fsync latency: count per bucket of [`SYNC_BUCKETS_SECS`] (not
    /// cumulative; a sync slower than the last bound is counted only in
    /// `syncs`), and the total time.
    pub sync_buckets: [u64; SYNC_BUCKETS_SECS.len()],
    pub sync_seconds: f64,
    pub last_seq: u64,
}

/// Handle to an open WAL. `Send + Sync`; share it in an `Arc`.
pub struct Wal {
    tx: Sender<Command>,
    shared: Arc<Shared>,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

impl Wal {
    /// Opens (creating the dir if needed), replays every record with seq > `after_seq`
    /// in order, and is then ready to append with seq continuing after the highest seq seen
    /// (or after `after_seq` if larger: segments may all have been removed).
    pub fn open(config: WalConfig, after_seq: u64) -> Result<(Wal, Vec<ReplayedRecord>)> {
        let dir = config.dir;
        std::fs::create_dir_all(&dir).map_err(io(|| format!("creating {}", dir.display())))?;
        let recovered = segment::recover(&dir, after_seq, config.recovery)?;
        let mut closed = VecDeque::from(recovered.segments);
        let last_seq = closed.back().map_or(0, |s| s.last_seq).max(after_seq);
        let next_seq = last_seq + 1;

        let (file, active) = match closed.pop_back() {
            Some(last) if last.last_seq == last_seq => {
                (segment::open_for_append(&last.path)?, last)
            }
            last => {
                // The caller is ahead of the log: start a segment at its position.
                closed.extend(last);
                let (file, path) = segment::create_segment(&dir, next_seq)?;
                let active = SegmentInfo {
                    last_seq,
                    path,
                    len: MAGIC_LEN,
                };
                (file, active)
            }
        };
        info!(
            dir = %dir.display(),
            segments = closed.len() + 1,
            last_seq,
            replayed = recovered.records.len(),
            "WAL opened"
        );

        let shared = Arc::new(Shared::new(Segments { closed, active }, last_seq));
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            dir.clone(),
            config.segment_max_bytes,
            file,
            next_seq,
            Arc::clone(&shared),
        );
        let handle = std::thread::Builder::new()
            .name("cxdb-wal-writer".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(io(|| "starting the WAL writer thread".to_owned()))?;
        let wal = Wal {
            tx,
            shared,
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(handle)),
            dir,
        };
        Ok((wal, recovered.records))
    }

    /// Appends one record; returns its sequence number only once the record is written AND
    /// fsynced (fdatasync) to disk. Concurrent callers share one write+sync (group commit).
    /// Dropping the future does not withdraw a record that was already queued.
    pub async fn append(&self, payload: Bytes) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.send_append(payload, Completion::Async(tx))?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Blocking variant for non-async callers (same semantics).
    pub fn append_blocking(&self, payload: Bytes) -> Result<u64> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send_append(payload, Completion::Blocking(tx))?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    fn send_append(&self, payload: Bytes, done: Completion) -> Result<()> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::PayloadTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        self.send(Command::Append { payload, done })
    }

    fn send(&self, command: Command) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.tx.send(command).map_err(|_| Error::Closed)
    }

    /// Starts a new segment (so that everything before it can later be removed) and returns
    /// the last seq written so far. Does nothing but return it if the active segment is
    /// still empty.
    pub fn rotate(&self) -> Result<u64> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Command::Rotate(Completion::Blocking(tx)))?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Deletes every closed segment whose records all have seq <= `seq`. Never deletes the
    /// active segment. Returns how many files were removed.
    pub fn remove_through(&self, seq: u64) -> Result<usize> {
        let mut segments = self.shared.segments.lock();
        let mut removed = 0;
        while let Some(oldest) = segments.closed.front().filter(|s| s.last_seq <= seq) {
            segment::remove_segment(&oldest.path)?;
            segments.closed.pop_front();
            removed += 1;
        }
        if removed > 0 {
            segment::sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Acquire)
    }

    /// Stops the writer thread after completing queued appends. Appends after close fail
    /// with [`Error::Closed`]. Calling it again is a no-op.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        // Held across the join so a concurrent close returns only once the writer is gone.
        let mut writer = self.writer.lock();
        let Some(handle) = writer.take() else {
            return Ok(());
        };
        // Fails only if the writer already exited, which join reports.
        let _ = self.tx.send(Command::Close);
        handle.join().map_err(|_| Error::WriterPanicked)
    }

    pub fn stats(&self) -> WalStats {
        let segments = self.shared.segments.lock();
        WalStats {
            segments: segments.closed.len() + 1,
            bytes: segments.closed.iter().map(|s| s.len).sum::<u64>() + segments.active.len,
            appends: self.shared.appends.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            sync_buckets: std::array::from_fn(|i| {
                self.shared.sync_buckets[i].load(Ordering::Relaxed)
            }),
            sync_seconds: self.shared.sync_micros.load(Ordering::Relaxed) as f64 / 1e6,
            last_seq: self.last_seq(),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            warn!(error = %e, "closing the WAL failed");
        }
    }
}
