//! The catalog directory: numbered manifest files, atomic commits, crash recovery.
//!
//! Each version lives in `manifest-<version, 20 digits>.json`, holding the compact
//! manifest JSON, a newline, and a trailer line `crc32 <8 hex digits>\n` over the JSON
//! bytes, so a torn or bit-flipped file is detected. A commit writes `<name>.tmp`,
//! syncs it, renames it into place and syncs the directory; a crash at any point leaves
//! either the old or the new version complete. The newest [`KEEP_VERSIONS`] are kept so
//! a damaged newest file can fall back to the one before.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// Versions kept on disk after a commit (the new one and the two before it).
pub const KEEP_VERSIONS: u64 = 3;

const PREFIX: &str = "manifest-";
const SUFFIX: &str = ".json";
const TMP_SUFFIX: &str = ".tmp";
const CRC_TAG: &str = "crc32 ";

/// Handle on the catalog directory. Readers take cheap [`snapshot`](Self::snapshot)s;
/// writers go through [`commit`](Self::commit), one at a time.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    current: RwLock<Arc<Manifest>>,
    /// Serializes commits; readers never wait on it.
    commit_lock: Mutex<()>,
}

/// `manifest-00000000000000000042.json`
pub fn manifest_file_name(version: u64) -> String {
    format!("{PREFIX}{version:020}{SUFFIX}")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

impl Catalog {
    /// Opens `dir` (creating it): loads the newest valid manifest version, or an empty
    /// Manifest (version 0) if there is none.
    pub fn open(dir: impl AsRef<Path>) -> Result<Catalog> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let mut versions = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
                // A commit that crashed before its rename: never part of the catalog.
                match fs::remove_file(entry.path()) {
                    Ok(()) => debug!(file = name, "removed leftover temporary manifest"),
                    Err(e) => {
                        warn!(file = name, error = %e, "cannot remove leftover temporary manifest")
                    }
                }
            } else if let Some(v) = parse_file_name(name) {
                versions.push(v);
            }
        }
        versions.sort_unstable_by(|a, b| b.cmp(a));

        let mut loaded = None;
        for &v in &versions {
            let path = dir.join(manifest_file_name(v));
            let bytes = fs::read(&path).map_err(Error::io(&path))?;
            match decode(&bytes, v) {
                Ok(m) => {
                    loaded = Some(m);
                    break;
                }
                Err(reason) => warn!(
                    file = %path.display(), %reason,
                    "skipping invalid manifest version; falling back to an older one"
                ),
            }
        }
        let manifest = match loaded {
            Some(m) => m,
            None if versions.is_empty() => Manifest::default(),
            None => {
                return Err(Error::Corrupt {
                    reason: format!(
                        "none of the {} manifest files verifies (see the warnings above)",
                        versions.len()
                    ),
                    dir,
                });
            }
        };
        debug!(dir = %dir.display(), version = manifest.version, "catalog opened");
        Ok(Catalog {
            dir,
            current: RwLock::new(Arc::new(manifest)),
            commit_lock: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current manifest (cheap: an Arc clone).
    pub fn snapshot(&self) -> Arc<Manifest> {
        Arc::clone(&self.current.read())
    }

    /// Clones the current manifest, applies `f`, writes it as version+1 durably, makes it
    /// current, and returns it. Commits are serialized. If `f` errors or the write fails,
    /// nothing changes.
    pub fn commit<T>(
        &self,
        f: impl FnOnce(&mut Manifest) -> Result<T>,
    ) -> Result<(Arc<Manifest>, T)> {
        let _serialized = self.commit_lock.lock();
        let base = self.snapshot();
        let mut next = Manifest::clone(&base);
        let out = f(&mut next)?;
        next.version = base.version + 1;
        self.write(&next)?;
        let next = Arc::new(next);
        *self.current.write() = Arc::clone(&next);
        self.prune(next.version);
        Ok((next, out))
    }

    fn write(&self, m: &Manifest) -> Result<()> {
        let mut bytes = serde_json::to_vec(m)?;
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(format!("\n{CRC_TAG}{crc:08x}\n").as_bytes());

        let path = self.dir.join(manifest_file_name(m.version));
        let tmp = self
            .dir
            .join(format!("{}{TMP_SUFFIX}", manifest_file_name(m.version)));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&tmp)(e));
        }
        if let Err(e) = sync_dir(&self.dir) {
            // The rename may or may not survive a crash; undo it so that, short of a
            // crash right now, the failed commit leaves no trace.
            let _ = fs::remove_file(&path);
            return Err(Error::io(&self.dir)(e));
        }
        Ok(())
    }

    /// Deletes versions older than the newest [`KEEP_VERSIONS`]; best effort. Newer
    /// (invalid) files skipped at open are left alone: the next commits overwrite them.
    fn prune(&self, newest: u64) {
        let keep_from = newest.saturating_sub(KEEP_VERSIONS - 1);
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot list catalog to prune old manifests");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let old = name
                .to_str()
                .and_then(parse_file_name)
                .is_some_and(|v| v < keep_from);
            if old && let Err(e) = fs::remove_file(entry.path()) {
                warn!(file = %entry.path().display(), error = %e, "cannot remove old manifest");
            }
        }
    }
}

/// Verifies and parses one manifest file; the error says why it is unusable.
fn decode(bytes: &[u8], expected_version: u64) -> Result<Manifest, String> {
    let content = bytes
        .strip_suffix(b"\n")
        .ok_or("no trailing newline (torn write?)")?;
    let split = content
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or("no checksum line (torn write?)")?;
    let (body, trailer) = (&content[..split], &content[split + 1..]);
    let stored = std::str::from_utf8(trailer)
        .ok()
        .and_then(|t| t.strip_prefix(CRC_TAG))
        .filter(|hex| hex.len() == 8)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("malformed checksum line")?;
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: stored {stored:08x}, computed {actual:08x}"
        ));
    }
    let m: Manifest = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if m.version != expected_version {
        return Err(format!(
            "file name says version {expected_version}, content says {}",
            m.version
        ));
    }
    Ok(m)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(manifest_file_name(42), "manifest-00000000000000000042.json");
        assert_eq!(
            parse_file_name(&manifest_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_file_name("manifest-42.json"), None);
        assert_eq!(
            parse_file_name("manifest-00000000000000000042.json.tmp"),
            None
        );
    }

    #[test]
    fn decode_rejects_damage() {
        let m = Manifest {
            version: 7,
            ..Manifest::default()
        };
        let mut bytes = serde_json::to_vec(&m).unwrap_or_default();
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(format!("\ncrc32 {crc:08x}\n").as_bytes());
        assert_eq!(decode(&bytes, 7), Ok(m));
        assert!(decode(&bytes, 8).is_err_and(|e| e.contains("content says 7")));
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut], 7).is_err(),
                "truncated at {cut} accepted"
            );
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert!(decode(&flipped, 7).is_err(), "bit flip at {i} accepted");
        }
    }
}
