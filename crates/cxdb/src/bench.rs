//! `cxdb bench …`: reproducible performance figures as a markdown report.
//!
//! `bench storage` runs in-process through the library APIs (no network), so
//! its figures are those of the engine, not of a protocol; `bench ingest`
//! starts a real server and writes to it over gRPC, Flight and HTTP.

mod events;
mod ingest;
mod storage;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Durable ingest throughput and ack latency, query time, bytes on disk.
    Storage(StorageArgs),
    /// Ingest through a real server per protocol (gRPC Write, Flight DoPut,
    /// HTTP NDJSON): events/s, ack latency, server RSS; freshness.
    Ingest(IngestArgs),
}

#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// Seconds each cell runs (it stops earlier if its pre-generated events
    /// run out).
    #[arg(long, env = "CXDB_BENCH_CELL_SECS", default_value_t = 3.0)]
    cell_secs: f64,
    /// Seed of the generated event stream.
    #[arg(long, env = "CXDB_BENCH_SEED", default_value_t = 42)]
    seed: u64,
    /// Writes of the freshness measurement, per protocol.
    #[arg(long, default_value_t = 200)]
    freshness_samples: usize,
    /// Runs of each target cell (10,000-event batches, 8 clients), each on
    /// a fresh server; the report shows the median run and lists them all.
    #[arg(long, env = "CXDB_BENCH_REPEAT", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    repeat: u32,
    /// Only these protocols (comma-separated: grpc, flight, http).
    #[arg(long, value_delimiter = ',', value_parser = ingest::Protocol::parse)]
    protocols: Vec<ingest::Protocol>,
    /// The server binary; default: this one.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Work directory (one data directory per cell); default: a fresh one
    /// under ./target/bench-data, removed at the end unless --keep.
    #[arg(long, env = "CXDB_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// Keep the work directory (server logs and data).
    #[arg(long, env = "CXDB_BENCH_KEEP")]
    keep: bool,
    /// Also write the report to this file (parent directories are created).
    #[arg(long, env = "CXDB_BENCH_OUT")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct StorageArgs {
    /// Events loaded for the query measurements.
    #[arg(long, env = "CXDB_BENCH_EVENTS", default_value_t = 10_000_000)]
    events: u64,
    /// Data directory; default: a fresh one under ./target/bench-data,
    /// removed at the end unless --keep.
    #[arg(long, env = "CXDB_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// Keep the data directory.
    #[arg(long, env = "CXDB_BENCH_KEEP")]
    keep: bool,
    /// Seed of the generated event stream.
    #[arg(long, env = "CXDB_BENCH_SEED", default_value_t = 42)]
    seed: u64,
    /// Also write the report to this file (parent directories are created).
    #[arg(long, env = "CXDB_BENCH_OUT")]
    out: Option<PathBuf>,
    /// Seconds each ingest cell runs (it stops earlier if its pre-generated
    /// events run out).
    #[arg(long, env = "CXDB_BENCH_CELL_SECS", default_value_t = 5.0)]
    cell_secs: f64,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (report, out) = match args.target {
        BenchTarget::Storage(args) => (storage::run(&args).await?, args.out),
        BenchTarget::Ingest(args) => (ingest::run(&args).await?, args.out),
    };
    println!("{report}");
    if let Some(out) = &out {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("report written to {}", out.display());
    }
    Ok(())
}

/// The report's header: what ran, where, when.
fn machine_header(title: &str) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let ram_gib = meminfo_kib("MemTotal").map_or("unknown".to_string(), |kib| {
        format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0))
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let command: Vec<String> = std::env::args().collect();
    let mut s = String::new();
    let _ = writeln!(s, "# {title}\n");
    let _ = writeln!(
        s,
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(s, "- git commit: {}", git_commit());
    let _ = writeln!(s, "- command: `{}`", command.join(" "));
    let _ = writeln!(
        s,
        "- machine: {cpu}, {cores} cores, {ram_gib} RAM, Linux {}",
        kernel.trim()
    );
    let profile = if cfg!(debug_assertions) {
        "debug (figures are meaningless)"
    } else {
        "release"
    };
    let _ = writeln!(s, "- build: {profile}");
    let _ = writeln!(s, "- load average at start: {}", load_average());
    s
}

/// Other processes on the machine skew every figure; the report says so.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_string())
}

fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            // Reports of earlier runs under benches/results/ are not the build.
            let dirty = git(&["status", "--porcelain", "--", ".", ":!benches/results"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash} (with uncommitted changes)")
            } else {
                hash
            }
        }
        _ => "unknown".to_string(),
    }
}

fn meminfo_kib(key: &str) -> Option<u64> {
    proc_kib("/proc/meminfo", key)
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    proc_kib("/proc/self/status", "VmHWM").map(|k| k * 1024)
}

fn proc_kib(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds this process has used so far.
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the `(comm)`, which may hold spaces: state is field 3,
    // utime 14 and stime 15, in clock ticks (USER_HZ, 100 on Linux).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `1234567` → `1,234,567`.
fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The benchmark's data directory; a default one is removed on drop unless
/// kept. Subdirectories are per measurement.
pub(crate) struct DataDir {
    pub(crate) path: PathBuf,
    remove: bool,
    keep: bool,
}

impl DataDir {
    /// `kind` names the default directory: `target/bench-data/<kind>-<time>-<pid>`.
    pub(crate) fn new(kind: &str, dir: Option<PathBuf>, keep: bool) -> anyhow::Result<Self> {
        let (path, remove) = match dir {
            Some(d) => (d, false),
            None => {
                let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
                let name = format!("{kind}-{stamp}-{}", std::process::id());
                (PathBuf::from("target/bench-data").join(name), !keep)
            }
        };
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path, remove, keep })
    }

    /// A subdirectory that must not exist yet: old data would change the
    /// measurement (dedup would see the ids as duplicates).
    pub(crate) fn fresh_subdir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.path.join(name);
        if dir.exists() {
            bail!("{} already exists; use an empty --dir", dir.display());
        }
        Ok(dir)
    }

    /// Frees the disk between measurements unless --keep.
    pub(crate) fn remove_subdir(&self, dir: &Path) {
        if !self.keep
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            eprintln!("could not remove {}: {e}", dir.display());
        }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}

/// Microseconds, 1 µs to 1 hour, 3 significant digits.
pub(crate) fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| anyhow!("histogram: {e:?}"))
}

pub(crate) fn ms(micros: u64) -> f64 {
    micros as f64 / 1e3
}

pub(crate) fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_int(1_234_567), "1,234,567");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert!(process_cpu_secs() >= 0.0);
    }
}
