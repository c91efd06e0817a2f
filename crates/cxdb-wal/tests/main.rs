//! Integration tests for `cxdb-wal` against real files in temporary directories.
#![allow(clippy::unwrap_used)]

mod append;
mod recovery;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use cxdb_wal::{ReplayedRecord, Wal, WalConfig};

const MAGIC_LEN: u64 = 8;
const HEADER_LEN: u64 = 16;

fn config(dir: &Path, segment_max_bytes: u64) -> WalConfig {
    WalConfig {
        segment_max_bytes,
        ..WalConfig::new(dir)
    }
}

/// A payload whose bytes depend on `tag`, so a record served for the wrong seq shows.
fn payload(tag: u64, len: usize) -> Bytes {
    (0..len)
        .map(|i| (tag.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8)
        .collect()
}

/// Segment files in seq order.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// End offset of each record in a segment holding records with these payload sizes.
fn record_ends(sizes: &[usize]) -> Vec<u64> {
    sizes
        .iter()
        .scan(MAGIC_LEN, |end, &len| {
            *end += HEADER_LEN + len as u64;
            Some(*end)
        })
        .collect()
}

/// Appends `payloads` to a fresh WAL in `dir` and closes it.
fn write_wal(dir: &Path, segment_max_bytes: u64, payloads: &[Bytes]) {
    let (wal, replayed) = Wal::open(config(dir, segment_max_bytes), 0).unwrap();
    assert!(replayed.is_empty());
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(wal.append_blocking(p.clone()).unwrap(), i as u64 + 1);
    }
    wal.close().unwrap();
}

/// The records `payloads` turn into, numbered from seq 1.
fn records(payloads: &[Bytes]) -> Vec<ReplayedRecord> {
    (1..)
        .zip(payloads)
        .map(|(seq, p)| ReplayedRecord {
            seq,
            payload: p.clone(),
        })
        .collect()
}
