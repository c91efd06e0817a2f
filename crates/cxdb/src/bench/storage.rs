//! `cxdb bench storage`: durable ingest throughput and ack latency per
//! batch size × writers, then load, bytes on disk and query time over N
//! events, all through the `cxdb-storage` / `cxdb-query` APIs.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use arrow::array::{Array, Int64Array};
use cxdb_model::Event;
use cxdb_query::{QueryEngine, QueryLimits};
use cxdb_storage::{Storage, StorageConfig, WriteOptions};
use datafusion::prelude::SessionContext;
use hdrhistogram::Histogram;

use super::events::Generator;
use super::{
    DataDir, StorageArgs, fmt_bytes, fmt_int, load_average, machine_header, ms, new_histogram,
    peak_rss_bytes, process_cpu_secs, yes_no,
};

const BATCH_SIZES: [usize; 3] = [1, 100, 10_000];
const WRITERS: [usize; 2] = [1, 8];
/// The fast path used to load the query data set.
const LOAD_BATCH: usize = 10_000;
const LOAD_WRITERS: usize = 8;
const QUERY: &str = "SELECT channel, count(*) FROM events GROUP BY 1";
const QUERY_RUNS: usize = 5;
/// Events of the buffer-versus-Parquet query comparison.
const BUFFER_EVENTS: u64 = 1_000_000;
const TARGET_EVENTS_PER_SEC: f64 = 500_000.0;
const TARGET_BATCH: usize = 10_000;
const TARGET_P99_MS: f64 = 10.0;
const TARGET_P99_CELL: (usize, usize) = (100, 8);
/// Most events one cell pre-generates (about 1 KiB of memory each).
const MAX_CELL_EVENTS: u64 = 6_000_000;

pub(super) async fn run(args: &StorageArgs) -> anyhow::Result<String> {
    let cell_time = Duration::try_from_secs_f64(args.cell_secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow!("--cell-secs must be a positive number of seconds"))?;
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    let data = DataDir::new("storage", args.dir.clone(), args.keep)?;
    let mut r = machine_header("cxdb storage benchmark");
    let (p50, p99) = fsync_probe(&data.path).await?;
    let _ = writeln!(
        r,
        "- disk: `{}`; a 4 KiB append + fdatasync takes p50 {p50:.2} ms, p99 {p99:.2} ms \
         (the floor of one durable ack)",
        data.path.display()
    );

    // The N-event phase runs first, so its peak RSS is its own.
    eprintln!("loading {} events…", fmt_int(args.events));
    let dir = data.fresh_subdir("query")?;
    let big = big_load(&dir, args.events, args.seed).await?;
    let rss_big = peak_rss_bytes();
    data.remove_subdir(&dir);

    let buffer_events = BUFFER_EVENTS.min(args.events);
    eprintln!(
        "buffer vs Parquet query on {} events…",
        fmt_int(buffer_events)
    );
    let dir = data.fresh_subdir("buffer")?;
    let buffered = buffer_vs_lake(&dir, buffer_events, args.seed).await?;
    data.remove_subdir(&dir);

    let mut cells = Vec::new();
    let mut generated = (0u64, 0f64);
    for batch in BATCH_SIZES {
        for writers in WRITERS {
            eprintln!("ingest: batch {batch}, {writers} writer(s)…");
            let dir = data.fresh_subdir(&format!("ingest-b{batch}-w{writers}"))?;
            let cell = ingest_cell(&dir, batch, writers, cell_time, args.seed).await?;
            generated.0 += cell.generated;
            generated.1 += cell.generate_secs;
            data.remove_subdir(&dir);
            cells.push(cell);
        }
    }
    let gen_us = generated.1 * 1e6 / generated.0.max(1) as f64;
    let _ = writeln!(
        r,
        "- event generator: {gen_us:.2} µs of one core per event; ingest cells generate \
         before the clock starts, the {}-event loads on a separate thread while writing \
         (on a 2-core machine that thread competes with the engine)",
        fmt_int(args.events)
    );

    write_targets(&mut r, &cells);
    write_ingest(&mut r, &cells, cell_time);
    write_big(&mut r, &big, args.events);
    write_buffered(&mut r, &buffered);
    let rss = |b: Option<u64>| b.map_or("unknown".to_string(), fmt_bytes);
    let _ = writeln!(r, "\n## Memory and machine load\n");
    let _ = writeln!(
        r,
        "- peak RSS during the {}-event load, persist, compaction and queries (run first): {}",
        fmt_int(args.events),
        rss(rss_big)
    );
    let _ = writeln!(
        r,
        "- peak RSS of the whole run (the ingest cells hold their pre-generated events): {}",
        rss(peak_rss_bytes())
    );
    let _ = writeln!(r, "- load average at the end: {}", load_average());
    Ok(r)
}

/// One cell of the ingest matrix.
struct Cell {
    batch: usize,
    writers: usize,
    events: u64,
    writes: u64,
    secs: f64,
    acks: Histogram<u64>,
    syncs: u64,
    cpu_secs: f64,
    /// Rows the background persister had committed to Parquet when the
    /// cell ended.
    persisted_rows: u64,
    /// The pre-generated events ran out before the cell's time.
    exhausted: bool,
    generated: u64,
    generate_secs: f64,
}

impl Cell {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.secs.max(1e-9)
    }

    fn p99_ms(&self) -> f64 {
        ms(self.acks.value_at_quantile(0.99))
    }
}

/// Per-writer tally; merged after the run.
struct Tally {
    acks: Histogram<u64>,
    events: u64,
    writes: u64,
    last_ack: Option<Instant>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            acks: new_histogram()?,
            events: 0,
            writes: 0,
            last_ack: None,
        })
    }

    /// One durable write, timed from the call to the ack.
    async fn write(&mut self, storage: &Arc<Storage>, batch: Vec<Event>) -> anyhow::Result<()> {
        let n = batch.len();
        let start = Instant::now();
        let out = storage.write(batch, WriteOptions::default()).await?;
        let now = Instant::now();
        self.acks
            .saturating_record((now - start).as_micros().max(1) as u64);
        if out.accepted != n {
            bail!(
                "a write of {n} events accepted {}: {} duplicates, {} rejected (first: {})",
                out.accepted,
                out.duplicates.len(),
                out.rejected.len(),
                out.rejected
                    .first()
                    .map_or(String::new(), |e| e.to_string())
            );
        }
        self.events += n as u64;
        self.writes += 1;
        self.last_ack = Some(now);
        Ok(())
    }

    fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.acks
            .add(&other.acks)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        self.events += other.events;
        self.writes += other.writes;
        self.last_ack = self.last_ack.max(other.last_ack);
        Ok(())
    }
}

async fn ingest_cell(
    dir: &Path,
    batch: usize,
    writers: usize,
    time: Duration,
    seed: u64,
) -> anyhow::Result<Cell> {
    // Enough events for rates well above what the machine reaches; the
    // cell stops at its time, or earlier if they run out (then marked).
    let per_5s: f64 = match batch {
        1 => 100_000.0,
        100 => 2_000_000.0,
        _ => 4_000_000.0,
    };
    let budget = ((per_5s * time.as_secs_f64() / 5.0) as u64).min(MAX_CELL_EVENTS);
    let round = (batch * writers) as u64;
    let rounds = budget.div_ceil(round).max(1) as usize;
    let total = rounds as u64 * round;
    let prefix = format!("b{batch}w{writers}");
    let gen_start = Instant::now();
    let pools = tokio::task::spawn_blocking(move || {
        let mut generator = Generator::new(seed, &prefix, total);
        let mut pools: Vec<Vec<Vec<Event>>> = vec![Vec::with_capacity(rounds); writers];
        for _ in 0..rounds {
            for pool in &mut pools {
                pool.push(generator.batch(batch));
            }
        }
        pools
    })
    .await?;
    let generate_secs = gen_start.elapsed().as_secs_f64();

    // Production settings: background persister and compactor on.
    let storage = Storage::open(StorageConfig::new(dir)).await?;
    eprintln!("  timed run: {} s", time.as_secs_f64());
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let deadline = start + time;
    let mut tasks = Vec::with_capacity(writers);
    for pool in pools {
        let storage = Arc::clone(&storage);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            let mut batches = pool.into_iter();
            let mut exhausted = true;
            for b in batches.by_ref() {
                if Instant::now() >= deadline {
                    exhausted = false;
                    break;
                }
                tally.write(&storage, b).await?;
            }
            // Unsent batches are dropped by the caller, after the clock.
            Ok::<_, anyhow::Error>((tally, exhausted, batches))
        }));
    }
    let mut tally = Tally::new()?;
    let mut exhausted = false;
    let mut leftovers = Vec::new();
    for t in tasks {
        let (w, ran_out, rest) = t.await??;
        tally.merge(&w)?;
        exhausted |= ran_out;
        leftovers.push(rest);
    }
    let secs = tally.last_ack.map_or(0.0, |t| (t - start).as_secs_f64());
    let cpu_secs = process_cpu_secs() - cpu0;
    let stats = storage.stats();
    drop(leftovers);
    storage.shutdown().await?;
    Ok(Cell {
        batch,
        writers,
        events: tally.events,
        writes: tally.writes,
        secs,
        acks: tally.acks,
        syncs: stats.wal_syncs,
        cpu_secs,
        persisted_rows: stats.persisted_rows,
        exhausted,
        generated: total,
        generate_secs,
    })
}

/// A load of `total` events by 8 writers in 10,000-event batches, fed by a
/// generator thread.
struct Load {
    events: u64,
    secs: f64,
    acks: Histogram<u64>,
    syncs: u64,
    cpu_secs: f64,
}

async fn load(storage: &Arc<Storage>, total: u64, seed: u64, prefix: &str) -> anyhow::Result<Load> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Event>>(2 * LOAD_WRITERS);
    let prefix = prefix.to_string();
    let generator = std::thread::Builder::new()
        .name("bench-generator".into())
        .spawn(move || {
            let mut generator = Generator::new(seed, &prefix, total);
            let mut left = total;
            while left > 0 {
                let n = left.min(LOAD_BATCH as u64);
                // The writers are gone only if one failed; it reports why.
                if tx.blocking_send(generator.batch(n as usize)).is_err() {
                    return;
                }
                left -= n;
            }
        })?;
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let syncs0 = storage.stats().wal_syncs;
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(LOAD_WRITERS);
    for _ in 0..LOAD_WRITERS {
        let (storage, rx) = (Arc::clone(storage), Arc::clone(&rx));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            loop {
                let next = rx.lock().await.recv().await;
                let Some(batch) = next else { break };
                tally.write(&storage, batch).await?;
            }
            Ok::<_, anyhow::Error>(tally)
        }));
    }
    drop(rx);
    let mut tally = Tally::new()?;
    for t in tasks {
        tally.merge(&t.await??)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = process_cpu_secs() - cpu0;
    generator
        .join()
        .map_err(|_| anyhow!("the event generator thread panicked"))?;
    if tally.events != total {
        bail!("loaded {} of {total} events", tally.events);
    }
    Ok(Load {
        events: tally.events,
        secs,
        acks: tally.acks,
        syncs: storage.stats().wal_syncs - syncs0,
        cpu_secs,
    })
}

/// Five timed runs of [`QUERY`] after one warm-up.
struct QueryTimes {
    ms: Vec<f64>,
    counted: u64,
    groups: usize,
}

impl QueryTimes {
    fn cells(&self) -> String {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        let pick = |i: usize| v.get(i).copied().unwrap_or(f64::NAN);
        format!(
            "{:.1} | {:.1} | {:.1}",
            pick(0),
            pick(v.len() / 2),
            pick(v.len().saturating_sub(1))
        )
    }
}

async fn time_query(storage: &Arc<Storage>) -> anyhow::Result<QueryTimes> {
    let ctx = QueryEngine::new(Arc::clone(storage), QueryLimits::default())?.session(None)?;
    let (counted, groups) = run_query(&ctx).await?;
    let mut ms = Vec::with_capacity(QUERY_RUNS);
    for _ in 0..QUERY_RUNS {
        let start = Instant::now();
        run_query(&ctx).await?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(QueryTimes {
        ms,
        counted,
        groups,
    })
}

/// Runs [`QUERY`]; returns the total of the counts and the number of groups.
async fn run_query(ctx: &SessionContext) -> anyhow::Result<(u64, usize)> {
    let batches = ctx.sql(QUERY).await?.collect().await?;
    let (mut total, mut groups) = (0u64, 0usize);
    for b in &batches {
        let counts = b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| anyhow!("count(*) is not an Int64 column"))?;
        total += counts.iter().flatten().sum::<i64>() as u64;
        groups += b.num_rows();
    }
    Ok((total, groups))
}

/// The N-event data set: load, persist, query; compact, query again.
struct BigLoad {
    load: Load,
    files_after_load: usize,
    persist_secs: f64,
    files: usize,
    persisted_rows: u64,
    persisted_bytes: u64,
    lake: QueryTimes,
    compact_secs: f64,
    compacted_files: usize,
    compacted_bytes: u64,
    compacted: QueryTimes,
}

async fn big_load(dir: &Path, events: u64, seed: u64) -> anyhow::Result<BigLoad> {
    let storage = Storage::open(StorageConfig::new(dir)).await?;
    let load = load(&storage, events, seed, "q").await?;
    let files_after_load = storage.stats().files;
    let start = Instant::now();
    storage.persist().await?;
    let persist_secs = start.elapsed().as_secs_f64();
    let stats = storage.stats();
    eprintln!("querying {} Parquet files…", stats.files);
    let lake = time_query(&storage).await?;
    let start = Instant::now();
    storage.compact(Some(2)).await?;
    let compact_secs = start.elapsed().as_secs_f64();
    let after = storage.stats();
    let compacted = time_query(&storage).await?;
    storage.shutdown().await?;
    Ok(BigLoad {
        load,
        files_after_load,
        persist_secs,
        files: stats.files,
        persisted_rows: stats.persisted_rows,
        persisted_bytes: stats.persisted_bytes,
        lake,
        compact_secs,
        compacted_files: after.files,
        compacted_bytes: after.persisted_bytes,
        compacted,
    })
}

/// The same events queried from the write buffer, then from Parquet.
struct Buffered {
    events: u64,
    buffer: QueryTimes,
    persist_secs: f64,
    files: usize,
    lake: QueryTimes,
}

async fn buffer_vs_lake(dir: &Path, events: u64, seed: u64) -> anyhow::Result<Buffered> {
    let mut config = StorageConfig::new(dir);
    // No persister: everything stays in the buffer until persist() below.
    config.background = false;
    let storage = Storage::open(config).await?;
    load(&storage, events, seed, "m").await?;
    let buffer = time_query(&storage).await?;
    let start = Instant::now();
    storage.persist().await?;
    let persist_secs = start.elapsed().as_secs_f64();
    let lake = time_query(&storage).await?;
    let files = storage.stats().files;
    storage.shutdown().await?;
    Ok(Buffered {
        events,
        buffer,
        persist_secs,
        files,
        lake,
    })
}

fn write_targets(r: &mut String, cells: &[Cell]) {
    let _ = writeln!(r, "\n## Targets\n");
    let _ = writeln!(r, "| target | cell | measured | met |\n|---|---|---|---|");
    for c in cells.iter().filter(|c| c.batch == TARGET_BATCH) {
        let v = c.events_per_sec();
        let _ = writeln!(
            r,
            "| ≥ {} events/s, durable acks | batch {}, {} writer(s) | {} events/s | {} |",
            fmt_int(TARGET_EVENTS_PER_SEC as u64),
            fmt_int(c.batch as u64),
            c.writers,
            fmt_int(v as u64),
            yes_no(v >= TARGET_EVENTS_PER_SEC)
        );
    }
    for c in cells
        .iter()
        .filter(|c| (c.batch, c.writers) == TARGET_P99_CELL)
    {
        let _ = writeln!(
            r,
            "| ack p99 ≤ {TARGET_P99_MS} ms | batch {}, {} writers | {:.2} ms | {} |",
            c.batch,
            c.writers,
            c.p99_ms(),
            yes_no(c.p99_ms() <= TARGET_P99_MS)
        );
    }
}

fn write_ingest(r: &mut String, cells: &[Cell], time: Duration) {
    let _ = writeln!(
        r,
        "\n## 1. Durable ingest\n\nEach cell: a fresh `Storage` (defaults: background persister \
         at 1,000,000 rows or 60 s, compactor on), W tokio tasks each awaiting \
         `write(batch)` in a loop for {:.1} s; an ack means the WAL record is fdatasynced. \
         Latency is per write, call to ack. CPU is user+system time of the whole process \
         (persister included) per event.\n",
        time.as_secs_f64()
    );
    let _ = writeln!(
        r,
        "| batch | writers | events | s | events/s | writes/s | ack p50 ms | ack p99 ms | \
         ack p999 ms | ack max ms | fsyncs | events/fsync | CPU µs/event | rows in Parquet at end | target | met |"
    );
    let _ = writeln!(r, "|{}", "---|".repeat(16));
    for c in cells {
        let (target, met) = if c.batch == TARGET_BATCH {
            (
                format!("≥ {} events/s", fmt_int(TARGET_EVENTS_PER_SEC as u64)),
                yes_no(c.events_per_sec() >= TARGET_EVENTS_PER_SEC),
            )
        } else if (c.batch, c.writers) == TARGET_P99_CELL {
            (
                format!("p99 ≤ {TARGET_P99_MS} ms"),
                yes_no(c.p99_ms() <= TARGET_P99_MS),
            )
        } else {
            ("—".to_string(), "")
        };
        let _ = writeln!(
            r,
            "| {} | {} | {}{} | {:.2} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.2} | {} | {target} | {met} |",
            fmt_int(c.batch as u64),
            c.writers,
            fmt_int(c.events),
            if c.exhausted { "*" } else { "" },
            c.secs,
            fmt_int(c.events_per_sec() as u64),
            fmt_int((c.writes as f64 / c.secs.max(1e-9)) as u64),
            ms(c.acks.value_at_quantile(0.5)),
            c.p99_ms(),
            ms(c.acks.value_at_quantile(0.999)),
            ms(c.acks.max()),
            fmt_int(c.syncs),
            c.events as f64 / c.syncs.max(1) as f64,
            c.cpu_secs * 1e6 / c.events.max(1) as f64,
            fmt_int(c.persisted_rows),
        );
    }
    if cells.iter().any(|c| c.exhausted) {
        let _ = writeln!(
            r,
            "\n\\* the cell's pre-generated events ran out before its time; rates are over the time it ran."
        );
    }
}

fn write_big(r: &mut String, b: &BigLoad, events: u64) {
    let l = &b.load;
    let _ = writeln!(
        r,
        "\n## 2. Query over {} events\n\nLoad: {LOAD_WRITERS} writers × {}-event batches into one \
         `Storage` (defaults, background persister on), then `persist()`, then `{QUERY}` once \
         to warm up and {QUERY_RUNS} times timed (ms, planning included).\n",
        fmt_int(events),
        fmt_int(LOAD_BATCH as u64)
    );
    let _ = writeln!(
        r,
        "| load events | s | events/s | ack p50 ms | ack p99 ms | ack max ms | fsyncs | CPU µs/event | files after load |\n|{}",
        "---|".repeat(9)
    );
    let _ = writeln!(
        r,
        "| {} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {} |",
        fmt_int(l.events),
        l.secs,
        fmt_int((l.events as f64 / l.secs.max(1e-9)) as u64),
        ms(l.acks.value_at_quantile(0.5)),
        ms(l.acks.value_at_quantile(0.99)),
        ms(l.acks.max()),
        fmt_int(l.syncs),
        l.cpu_secs * 1e6 / l.events.max(1) as f64,
        b.files_after_load
    );
    let per_event = |bytes: u64| bytes as f64 / b.persisted_rows.max(1) as f64;
    let _ = writeln!(
        r,
        "\n| lake state | files | bytes on disk | bytes/event | query min ms | median ms | max ms | groups | rows counted |\n|{}",
        "---|".repeat(9)
    );
    let _ = writeln!(
        r,
        "| after load + `persist()` ({:.1} s) | {} | {} | {:.1} | {} | {} | {} |",
        b.persist_secs,
        b.files,
        fmt_bytes(b.persisted_bytes),
        per_event(b.persisted_bytes),
        b.lake.cells(),
        b.lake.groups,
        fmt_int(b.lake.counted)
    );
    let _ = writeln!(
        r,
        "| after `compact(Some(2))` ({:.1} s) | {} | {} | {:.1} | {} | {} | {} |",
        b.compact_secs,
        b.compacted_files,
        fmt_bytes(b.compacted_bytes),
        per_event(b.compacted_bytes),
        b.compacted.cells(),
        b.compacted.groups,
        fmt_int(b.compacted.counted)
    );
    for (what, q) in [("persist", &b.lake), ("compaction", &b.compacted)] {
        if q.counted != events || b.persisted_rows != events {
            let _ = writeln!(
                r,
                "\n**Warning:** after {what} the query counted {} rows and the catalog lists {}; {} were written.",
                fmt_int(q.counted),
                fmt_int(b.persisted_rows),
                fmt_int(events)
            );
        }
    }
}

fn write_buffered(r: &mut String, b: &Buffered) {
    let _ = writeln!(
        r,
        "\n## 3. Write buffer versus Parquet, {} events\n\nSame load with the background \
         persister off: the query runs over the in-memory Arrow buffer, then again after \
         `persist()` ({:.1} s, {} files).\n",
        fmt_int(b.events),
        b.persist_secs,
        b.files
    );
    let _ = writeln!(
        r,
        "| data in | query min ms | median ms | max ms | rows counted |\n|{}",
        "---|".repeat(5)
    );
    for (what, q) in [("write buffer", &b.buffer), ("Parquet", &b.lake)] {
        let _ = writeln!(r, "| {what} | {} | {} |", q.cells(), fmt_int(q.counted));
    }
}

/// p50 and p99 (ms) of 200 appends of 4 KiB, each followed by fdatasync.
async fn fsync_probe(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("fsync-probe");
    tokio::task::spawn_blocking(move || {
        let mut hist = new_histogram()?;
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let block = [0u8; 4096];
        for _ in 0..200 {
            let start = Instant::now();
            f.write_all(&block)?;
            f.sync_data()?;
            hist.saturating_record(start.elapsed().as_micros().max(1) as u64);
        }
        drop(f);
        std::fs::remove_file(&path)?;
        Ok((
            ms(hist.value_at_quantile(0.5)),
            ms(hist.value_at_quantile(0.99)),
        ))
    })
    .await?
}
