//! Compaction (merge a partition's small files into one, atomic catalog
//! swap), retention (drop a tenant's partitions older than N days) and the
//! deferred deletion of files that left the catalog.

use std::collections::{BTreeMap, HashSet};

use cxdb_catalog::{FileMeta, PendingDelete};
use cxdb_model::time::{MICROS_PER_DAY, day_of};
use tracing::info;

use crate::Storage;
use crate::error::Result;

/// Result of [`Storage::compact`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    pub partitions: usize,
    pub files_in: usize,
    pub files_out: usize,
}

/// Result of [`Storage::apply_retention`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub partitions: usize,
    pub files: usize,
    pub rows: u64,
}

impl Storage {
    /// Merges the small files of every partition that has at least
    /// `compaction_min_files` of them (`min_files` overrides it).
    pub async fn compact(&self, min_files: Option<usize>) -> Result<CompactionOutcome> {
        let _guard = self.maintenance_lock.lock().await;
        let min_files = min_files.unwrap_or(self.config.compaction_min_files).max(2);
        let manifest = self.manifest();
        let mut partitions: BTreeMap<(&str, i32), Vec<&FileMeta>> = BTreeMap::new();
        for f in manifest
            .files
            .iter()
            .filter(|f| f.rows < self.config.target_file_rows)
        {
            partitions.entry((&f.tenant_id, f.day)).or_default().push(f);
        }
        let mut outcome = CompactionOutcome::default();
        for ((tenant, day), files) in partitions {
            if files.len() < min_files {
                continue;
            }
            let mut batches = Vec::new();
            for f in &files {
                batches.extend(self.lake.read_file(&f.path, None).await?);
            }
            let merged = self
                .write_file(tenant, day, crate::FileRows::Batches(batches))
                .await?;
            let old: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
            let now = cxdb_model::time::now_micros();
            let new_path = merged.path.clone();
            let committed = self.commit_catalog(|m| {
                // Retention may have dropped some of them meanwhile: then
                // this merge is stale and is abandoned.
                let present = m
                    .files
                    .iter()
                    .filter(|f| old.contains(f.path.as_str()))
                    .count();
                if present != old.len() {
                    return Ok(false);
                }
                m.files.retain(|f| !old.contains(f.path.as_str()));
                m.files.push(merged);
                m.pending_deletes.extend(old.iter().map(|p| PendingDelete {
                    path: p.to_string(),
                    since: now,
                }));
                Ok(true)
            });
            match committed {
                Ok(true) => {
                    outcome.partitions += 1;
                    outcome.files_in += files.len();
                    outcome.files_out += 1;
                }
                Ok(false) => self.delete_quietly(std::iter::once(new_path)).await,
                Err(e) => {
                    self.delete_quietly(std::iter::once(new_path)).await;
                    return Err(e);
                }
            }
        }
        if outcome.partitions > 0 {
            info!(?outcome, "compacted");
        }
        Ok(outcome)
    }

    /// Sets (or clears) a tenant's retention in days.
    pub fn set_retention(&self, tenant: &str, days: Option<u32>) -> Result<()> {
        self.commit_catalog(|m| {
            match days {
                Some(d) => m.retention_days.insert(tenant.to_string(), d),
                None => m.retention_days.remove(tenant),
            };
            Ok(())
        })
    }

    /// Drops the persisted partitions whose date is older than their
    /// tenant's retention (relative to `now`, epoch micros). Their files are
    /// deleted after the grace period.
    pub async fn apply_retention(&self, now: i64) -> Result<RetentionOutcome> {
        let _guard = self.maintenance_lock.lock().await;
        let manifest = self.manifest();
        let expired = |f: &FileMeta| {
            manifest
                .retention_days
                .get(&f.tenant_id)
                .is_some_and(|days| f.day < day_of(now - i64::from(*days) * MICROS_PER_DAY))
        };
        let drop: Vec<FileMeta> = manifest
            .files
            .iter()
            .filter(|f| expired(f))
            .cloned()
            .collect();
        if drop.is_empty() {
            return Ok(RetentionOutcome::default());
        }
        let paths: HashSet<&str> = drop.iter().map(|f| f.path.as_str()).collect();
        self.commit_catalog(|m| {
            m.files.retain(|f| !paths.contains(f.path.as_str()));
            m.pending_deletes
                .extend(paths.iter().map(|p| PendingDelete {
                    path: p.to_string(),
                    since: now,
                }));
            Ok(())
        })?;
        self.publish_changes(|c| c.reset());
        let outcome = RetentionOutcome {
            partitions: drop
                .iter()
                .map(|f| (&f.tenant_id, f.day))
                .collect::<HashSet<_>>()
                .len(),
            files: drop.len(),
            rows: drop.iter().map(|f| f.rows).sum(),
        };
        info!(?outcome, "retention dropped partitions");
        Ok(outcome)
    }

    /// Deletes files that left the catalog more than `delete_grace` before
    /// `now`, so queries that started before they left could finish.
    pub async fn delete_replaced_files(&self, now: i64) -> Result<usize> {
        let grace = self.config.delete_grace.as_micros() as i64;
        let due: Vec<String> = self
            .manifest()
            .pending_deletes
            .iter()
            .filter(|p| now - p.since >= grace)
            .map(|p| p.path.clone())
            .collect();
        for p in &due {
            self.lake.delete(p).await?;
        }
        if !due.is_empty() {
            let done: HashSet<&str> = due.iter().map(String::as_str).collect();
            self.commit_catalog(|m| {
                m.pending_deletes
                    .retain(|p| !done.contains(p.path.as_str()));
                Ok(())
            })?;
        }
        Ok(due.len())
    }

    /// Compaction, retention and deferred deletes, as the background task
    /// runs them.
    pub async fn maintain(&self, now: i64) -> Result<()> {
        self.compact(None).await?;
        self.apply_retention(now).await?;
        let deleted = self.delete_replaced_files(now).await?;
        if deleted > 0 {
            info!(deleted, "deleted replaced files");
        }
        Ok(())
    }
}
