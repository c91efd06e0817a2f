//! Server counters, rendered in the Prometheus text format by `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cxdb_storage::{StorageStats, WriteOutcome};

/// Ingest protocols, a label on the ingest counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Flight,
    Http,
}

impl Protocol {
    const ALL: [Self; 3] = [Self::Grpc, Self::Flight, Self::Http];

    fn label(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Flight => "flight",
            Self::Http => "http",
        }
    }
}

/// Upper bounds (seconds) of the query latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Debug, Default)]
pub struct Metrics {
    /// [protocol][accepted, duplicate, rejected]
    ingest: [[AtomicU64; 3]; 3],
    queries: AtomicU64,
    query_errors: AtomicU64,
    query_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    query_seconds_micros: AtomicU64,
}

impl Metrics {
    pub fn record_write(&self, protocol: Protocol, out: &WriteOutcome) {
        let c = &self.ingest[protocol as usize];
        c[0].fetch_add(out.accepted as u64, Ordering::Relaxed);
        c[1].fetch_add(out.duplicates.len() as u64, Ordering::Relaxed);
        c[2].fetch_add(out.rejected.len() as u64, Ordering::Relaxed);
    }

    /// Counts events rejected before they reached the storage layer (bad
    /// NDJSON lines, undecodable batches).
    pub fn record_rejected(&self, protocol: Protocol, n: usize) {
        self.ingest[protocol as usize][2].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn record_query(&self, elapsed: Duration, ok: bool) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.query_errors.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.query_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.query_seconds_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self, s: &StorageStats) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP cxdb_events_total Events by ingest protocol and outcome."
        );
        let _ = writeln!(out, "# TYPE cxdb_events_total counter");
        for p in Protocol::ALL {
            for (i, outcome) in ["accepted", "duplicate", "rejected"].iter().enumerate() {
                let v = self.ingest[p as usize][i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "cxdb_events_total{{protocol=\"{}\",outcome=\"{outcome}\"}} {v}",
                    p.label()
                );
            }
        }
        let gauges: [(&str, &str, u64); 9] = [
            (
                "cxdb_buffer_rows",
                "Rows in the write buffer.",
                s.buffer_rows as u64,
            ),
            (
                "cxdb_buffer_bytes",
                "Bytes of the write buffer.",
                s.buffer_bytes as u64,
            ),
            (
                "cxdb_persisted_files",
                "Parquet files in the catalog.",
                s.files as u64,
            ),
            (
                "cxdb_persisted_rows",
                "Rows in Parquet files.",
                s.persisted_rows,
            ),
            (
                "cxdb_persisted_bytes",
                "Bytes of Parquet files.",
                s.persisted_bytes,
            ),
            (
                "cxdb_wal_segments",
                "WAL segment files.",
                s.wal_segments as u64,
            ),
            (
                "cxdb_dedup_hot_ids",
                "Exact ids held for buffered events.",
                s.dedup_hot_ids as u64,
            ),
            (
                "cxdb_dedup_bloom_bytes",
                "Bytes of dedup Bloom filters.",
                s.dedup_bloom_bytes as u64,
            ),
            (
                "cxdb_wal_appends",
                "WAL records appended since start.",
                s.wal_appends,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP cxdb_wal_syncs_total WAL fsyncs since start (group commit: fewer than appends).\n# TYPE cxdb_wal_syncs_total counter\ncxdb_wal_syncs_total {}",
            s.wal_syncs
        );
        let _ = writeln!(
            out,
            "# HELP cxdb_wal_fsync_duration_seconds Time of one WAL write+fdatasync (shared by a group commit).\n# TYPE cxdb_wal_fsync_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (le, n) in cxdb_storage::WAL_SYNC_BUCKETS_SECS
            .iter()
            .zip(s.wal_sync_buckets)
        {
            cumulative += n;
            let _ = writeln!(
                out,
                "cxdb_wal_fsync_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "cxdb_wal_fsync_duration_seconds_bucket{{le=\"+Inf\"}} {0}\ncxdb_wal_fsync_duration_seconds_sum {1}\ncxdb_wal_fsync_duration_seconds_count {0}",
            s.wal_syncs, s.wal_sync_seconds
        );
        let _ = writeln!(
            out,
            "# HELP cxdb_query_duration_seconds Time to plan and start a query."
        );
        let _ = writeln!(out, "# TYPE cxdb_query_duration_seconds histogram");
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "cxdb_query_duration_seconds_bucket{{le=\"{le}\"}} {}",
                self.query_buckets[i].load(Ordering::Relaxed)
            );
        }
        let n = self.queries.load(Ordering::Relaxed);
        let _ = writeln!(out, "cxdb_query_duration_seconds_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "cxdb_query_duration_seconds_sum {}",
            self.query_seconds_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "cxdb_query_duration_seconds_count {n}");
        let _ = writeln!(
            out,
            "# HELP cxdb_query_errors_total Queries that failed.\n# TYPE cxdb_query_errors_total counter\ncxdb_query_errors_total {}",
            self.query_errors.load(Ordering::Relaxed)
        );
        out
    }
}
