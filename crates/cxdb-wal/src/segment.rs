//! Segment files: naming, the record encoding, and the verifying scan run when the WAL opens.
//!
//! A segment is `<first_seq as 20 digits>.wal`: the magic `CXDBWAL1`, then records of
//! `u32 LE payload_len | u32 LE crc32(seq LE ++ payload) | u64 LE seq | payload`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::warn;

use crate::error::{Error, Result, io};
use crate::{Recovery, ReplayedRecord};

pub(crate) const MAGIC: &[u8; 8] = b"CXDBWAL1";
pub(crate) const MAGIC_LEN: u64 = MAGIC.len() as u64;
pub(crate) const HEADER_LEN: usize = 16;

/// Largest payload a record may carry. A larger length on disk is treated as corruption
/// instead of being trusted.
pub const MAX_PAYLOAD_LEN: usize = 256 << 20;

/// One segment file as known to the WAL after recovery or rotation.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    /// Highest seq in the segment; `first_seq - 1` while it holds no record.
    pub(crate) last_seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of one record (the payload follows it). The caller has
/// checked the payload size.
pub(crate) fn record_header(seq: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    debug_assert!(payload.len() <= MAX_PAYLOAD_LEN);
    let seq = seq.to_le_bytes();
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..8].copy_from_slice(&crc(&seq, payload).to_le_bytes());
    header[8..].copy_from_slice(&seq);
    header
}

/// Appends one encoded record to `buf`.
#[cfg(test)]
fn encode_record(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    buf.extend_from_slice(&record_header(seq, payload));
    buf.extend_from_slice(payload);
}

/// Writes all of `slices` (a partial `writev` continues where it stopped).
pub(crate) fn write_all_vectored(
    file: &mut File,
    mut slices: &mut [std::io::IoSlice<'_>],
) -> std::io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn crc(seq: &[u8; 8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(seq);
    hasher.update(payload);
    hasher.finalize()
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

struct Decoded {
    seq: u64,
    payload: Range<usize>,
}

/// Decodes and checksums the record starting at `off`; the error says what is wrong.
fn decode_at(data: &[u8], off: usize) -> Result<Decoded, String> {
    let available = data.len().saturating_sub(off);
    let Some(header) = data.get(off..off + HEADER_LEN) else {
        return Err(format!(
            "short record header ({available} of {HEADER_LEN} bytes)"
        ));
    };
    let len = le_u32(&header[0..4]) as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(format!(
            "payload length {len} exceeds the limit of {MAX_PAYLOAD_LEN} bytes"
        ));
    }
    let payload = off + HEADER_LEN..off + HEADER_LEN + len;
    let Some(body) = data.get(payload.clone()) else {
        return Err(format!(
            "short payload ({} of {len} bytes)",
            available - HEADER_LEN
        ));
    };
    let seq_bytes = [
        header[8], header[9], header[10], header[11], header[12], header[13], header[14],
        header[15],
    ];
    if crc(&seq_bytes, body) != le_u32(&header[4..8]) {
        return Err("crc mismatch".to_owned());
    }
    Ok(Decoded {
        seq: le_u64(&header[8..16]),
        payload,
    })
}

struct Defect {
    offset: usize,
    reason: String,
    /// A checksummed record exists after the defect, so it is not a torn tail.
    followed_by_valid: bool,
}

/// Result of verifying the records of one segment (after its magic).
struct Scan {
    records: Vec<(u64, Range<usize>)>,
    defect: Option<Defect>,
}

/// Verifies records in order. `look_ahead` (only worth it for the last segment) searches
/// byte by byte past a bad record for any record whose crc validates, which tells
/// corruption in the middle apart from a torn tail.
fn scan_records(data: &[u8], first_seq: u64, look_ahead: bool) -> Scan {
    let mut records = Vec::new();
    let mut off = MAGIC.len();
    let mut expected = first_seq;
    while off < data.len() {
        let defect = match decode_at(data, off) {
            Ok(rec) if rec.seq == expected => {
                off = rec.payload.end;
                records.push((rec.seq, rec.payload));
                expected += 1;
                continue;
            }
            // A checksummed record with the wrong seq cannot come from a torn write.
            Ok(rec) => Defect {
                offset: off,
                reason: format!("sequence gap: expected seq {expected}, found {}", rec.seq),
                followed_by_valid: true,
            },
            Err(reason) => Defect {
                offset: off,
                reason,
                followed_by_valid: look_ahead
                    && (off + 1..data.len()).any(|p| decode_at(data, p).is_ok()),
            },
        };
        return Scan {
            records,
            defect: Some(defect),
        };
    }
    Scan {
        records,
        defect: None,
    }
}

/// What `open` learns from the segment files.
pub(crate) struct Recovered {
    pub(crate) records: Vec<ReplayedRecord>,
    /// Surviving segments in seq order; the last one is where appends may continue.
    pub(crate) segments: Vec<SegmentInfo>,
}

/// Verifies every segment in `dir`, repairs a torn tail, applies `recovery` to corruption
/// and returns the records with seq > `after_seq`.
pub(crate) fn recover(dir: &Path, after_seq: u64, recovery: Recovery) -> Result<Recovered> {
    let files = list_segments(dir)?;
    let mut records = Vec::new();
    let mut segments: Vec<SegmentInfo> = Vec::new();
    for (i, (first_seq, path)) in files.iter().enumerate() {
        let first_seq = *first_seq;
        let is_last = i + 1 == files.len();
        let empty = |len| SegmentInfo {
            last_seq: first_seq.saturating_sub(1),
            path: path.clone(),
            len,
        };

        if let Some(prev) = segments.last() {
            let expected = prev.last_seq + 1;
            // open() starts a fresh segment at after_seq + 1 when the caller is ahead of the
            // log, so a forward gap is only missing data if the caller still wants it.
            let gap_is_persisted = first_seq > expected && first_seq - 1 <= after_seq;
            if first_seq != expected && !gap_is_persisted {
                let reason = format!(
                    "segment starts at seq {first_seq} but the previous one ends at seq {}",
                    prev.last_seq
                );
                on_corruption(recovery, &files[i..], 0, reason)?;
                remove_segment(path)?;
                sync_dir(dir)?;
                break;
            }
        }

        let data =
            Bytes::from(fs::read(path).map_err(io(|| format!("reading {}", path.display())))?);
        if data.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            if is_last && data.len() < MAGIC.len() {
                // Crash between creating the file and making its magic durable.
                warn!(
                    segment = %path.display(),
                    bytes = data.len(),
                    "WAL segment has a torn header; rewriting it"
                );
            } else {
                on_corruption(recovery, &files[i..], 0, "bad segment magic".to_owned())?;
            }
            reset_segment(path)?;
            segments.push(empty(MAGIC_LEN));
            break;
        }

        let scan = scan_records(&data, first_seq, is_last);
        let last_seq = scan
            .records
            .last()
            .map_or(first_seq.saturating_sub(1), |r| r.0);
        records.extend(
            scan.records
                .into_iter()
                .filter(|(seq, _)| *seq > after_seq)
                .map(|(seq, range)| ReplayedRecord {
                    seq,
                    payload: data.slice(range),
                }),
        );
        let mut info = SegmentInfo {
            last_seq,
            len: data.len() as u64,
            ..empty(0)
        };
        let Some(defect) = scan.defect else {
            segments.push(info);
            continue;
        };
        let offset = defect.offset as u64;
        if is_last && !defect.followed_by_valid {
            warn!(
                segment = %path.display(),
                offset,
                bytes_cut = info.len - offset,
                reason = %defect.reason,
                "WAL has a torn tail (a write interrupted by a crash); cutting it off"
            );
        } else {
            on_corruption(recovery, &files[i..], offset, defect.reason)?;
        }
        cut_segment(path, offset)?;
        info.len = offset;
        segments.push(info);
        break;
    }
    Ok(Recovered { records, segments })
}

/// Strict turns corruption at `offset` of `files[0]` into an error; TruncateCorrupt deletes
/// every later segment and leaves cutting `files[0]` to the caller.
fn on_corruption(
    recovery: Recovery,
    files: &[(u64, PathBuf)],
    offset: u64,
    reason: String,
) -> Result<()> {
    let Some(((_, segment), later)) = files.split_first() else {
        return Ok(());
    };
    if recovery == Recovery::Strict {
        return Err(Error::Corrupt {
            segment: segment.clone(),
            offset,
            reason,
        });
    }
    warn!(
        segment = %segment.display(),
        offset,
        %reason,
        later_segments_deleted = later.len(),
        "CORRUPT WAL RECORD: truncating the WAL here as configured; this record and every \
         record after it are LOST"
    );
    for (_, path) in later {
        remove_segment(path)?;
    }
    if let Some(dir) = segment.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let ctx = || format!("listing {}", dir.display());
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(ctx))? {
        let entry = entry.map_err(io(ctx))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// Creates an empty segment and makes both the file and its directory entry durable.
pub(crate) fn create_segment(dir: &Path, first_seq: u64) -> Result<(File, PathBuf)> {
    let path = segment_path(dir, first_seq);
    // Truncating is safe: a file with this name can only be an earlier attempt to create
    // this segment that never received a record.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(MAGIC).and_then(|()| f.sync_all()).map(|()| f))
        .map_err(io(|| format!("creating segment {}", path.display())))?;
    sync_dir(dir)?;
    Ok((file, path))
}

pub(crate) fn open_for_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io(|| format!("opening segment {}", path.display())))
}

fn cut_segment(path: &Path, len: u64) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        .map_err(io(|| {
            format!("truncating {} to {len} bytes", path.display())
        }))
}

fn reset_segment(path: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(MAGIC).and_then(|()| f.sync_all()))
        .map_err(io(|| format!("rewriting the header of {}", path.display())))
}

pub(crate) fn remove_segment(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            context: format!("removing {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Makes creating or removing segment files durable, not just their contents.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(|| format!("syncing directory {}", dir.display())))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let path = segment_path(Path::new("/x"), 42);
        assert_eq!(path, Path::new("/x/00000000000000000042.wal"));
        let name = path.file_name().and_then(|n| n.to_str());
        assert_eq!(name.and_then(parse_segment_name), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.wal"), None);
    }

    #[test]
    fn decode_reports_each_defect() {
        let mut buf = MAGIC.to_vec();
        encode_record(&mut buf, 7, b"hello");
        let rec = decode_at(&buf, 8).map_err(|e| e.to_string());
        assert!(matches!(rec, Ok(Decoded { seq: 7, .. })));
        assert_eq!(&buf[24..], b"hello");
        let reason = |data: &[u8]| decode_at(data, 8).err().unwrap_or_default();
        assert!(reason(&buf[..20]).starts_with("short record header"));
        assert!(reason(&buf[..26]).starts_with("short payload (2 of 5"));
        let mut flipped = buf.clone();
        flipped[27] ^= 1;
        assert_eq!(reason(&flipped), "crc mismatch");
        let mut huge = buf.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(reason(&huge).contains("exceeds the limit"));
    }
}
