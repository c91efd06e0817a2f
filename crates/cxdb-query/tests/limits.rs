//! Query limits (memory, time, result rows, concurrency) on the engine every
//! protocol uses: through `QueryExecutor` (gRPC, Flight SQL) and through a
//! session's own DataFrame API (what pgwire's datafusion-postgres calls).

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use cxdb_query::{LimitExceeded, Principal, QueryEngine, QueryExecutor, QueryLimits};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, TryStreamExt};

/// An engine over an empty store with `limits`; the temp dir lives as long
/// as the engine is used.
async fn engine(limits: QueryLimits) -> (QueryEngine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let storage = super::storage(dir.path(), 1000).await;
    let engine = QueryEngine::new(storage, limits).unwrap_or_else(|e| panic!("{e}"));
    (engine, dir)
}

fn unlimited() -> QueryLimits {
    QueryLimits {
        memory: None,
        timeout: None,
        max_result_rows: None,
        max_concurrent: None,
        queue_timeout: Duration::from_secs(5),
    }
}

async fn start(engine: &QueryEngine, sql: &str) -> SendableRecordBatchStream {
    engine
        .execute(&Principal::unscoped(), sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs `sql` to the end: its rows, or the error that ended it.
async fn run(engine: &QueryEngine, sql: &str) -> Result<usize, DataFusionError> {
    let batches: Vec<RecordBatch> = start(engine, sql).await.try_collect().await?;
    Ok(batches.iter().map(RecordBatch::num_rows).sum())
}

fn limit_of(e: &DataFusionError) -> LimitExceeded {
    LimitExceeded::of(e)
        .cloned()
        .unwrap_or_else(|| panic!("not a limit error: {e}"))
}

#[tokio::test]
async fn a_result_may_have_at_most_max_result_rows() {
    let (engine, _dir) = engine(QueryLimits {
        max_result_rows: Some(5),
        ..unlimited()
    })
    .await;
    assert_eq!(run(&engine, "SELECT * FROM range(5)").await.ok(), Some(5));
    let e = run(&engine, "SELECT * FROM range(10)")
        .await
        .err()
        .unwrap_or_else(|| panic!("10 rows passed a limit of 5"));
    assert_eq!(limit_of(&e), LimitExceeded::ResultRows(5));
    assert_eq!(
        LimitExceeded::of(&e).map(ToString::to_string).as_deref(),
        Some("the result exceeds 5 rows (--max-result-rows); add a LIMIT or aggregate")
    );
    // An aggregate over many rows returns one.
    assert_eq!(
        run(&engine, "SELECT count(*) FROM range(100)").await.ok(),
        Some(1)
    );
    // The same limit through a session's DataFrame API (pgwire's path).
    let ctx = engine.session(None).unwrap_or_else(|e| panic!("{e}"));
    let e = ctx
        .sql("SELECT * FROM range(6)")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .collect()
        .await
        .err()
        .unwrap_or_else(|| panic!("6 rows passed a limit of 5"));
    assert_eq!(limit_of(&e), LimitExceeded::ResultRows(5));
    // The limit is not part of the plan users see.
    let plan = engine
        .explain(&Principal::unscoped(), "SELECT * FROM range(10)")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!plan.physical.contains("LimitsExec"), "{}", plan.physical);
}

#[tokio::test]
async fn a_query_stops_at_its_time_limit() {
    let (engine, _dir) = engine(QueryLimits {
        timeout: Some(Duration::from_millis(200)),
        ..unlimited()
    })
    .await;
    // A trillion rows: hours of work.
    let started = Instant::now();
    let e = run(&engine, "SELECT sum(value % 7) FROM range(1000000000000)")
        .await
        .err()
        .unwrap_or_else(|| panic!("a trillion rows summed in 200 ms"));
    assert_eq!(
        limit_of(&e),
        LimitExceeded::Timeout(Duration::from_millis(200))
    );
    assert_eq!(
        LimitExceeded::of(&e).map(ToString::to_string).as_deref(),
        Some("query exceeded the 0.2 s time limit (--query-timeout)")
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The engine goes on serving.
    assert_eq!(run(&engine, "SELECT 1").await.ok(), Some(1));
}

#[tokio::test]
async fn a_query_that_stops_reading_frees_its_slot_at_its_deadline() {
    let (engine, _dir) = engine(QueryLimits {
        timeout: Some(Duration::from_millis(300)),
        max_concurrent: Some(1),
        queue_timeout: Duration::from_secs(60),
        ..unlimited()
    })
    .await;
    // The first batch: the query holds the only slot, then nobody reads on
    // (a client that leaves a cursor open).
    let mut idle = start(&engine, "SELECT * FROM range(100000)").await;
    let first = idle.next().await;
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    // This one waits for the slot, which the deadline frees: well before
    // the 60 s queue timeout.
    let started = Instant::now();
    assert_eq!(run(&engine, "SELECT 1").await.ok(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The idle reader learns why its query ended.
    let next = idle.next().await;
    match next {
        Some(Err(e)) => assert_eq!(
            limit_of(&e),
            LimitExceeded::Timeout(Duration::from_millis(300))
        ),
        other => panic!("expected the time limit, got {other:?}"),
    }
    assert!(idle.next().await.is_none());
}

#[tokio::test]
async fn a_query_needing_more_memory_than_the_pool_fails_and_others_run() {
    let pool = 1 << 20;
    let (engine, _dir) = engine(QueryLimits {
        memory: Some(pool),
        ..unlimited()
    })
    .await;
    // Sorting 2 M integers needs 16 MB and more.
    let e = run(
        &engine,
        "SELECT value FROM range(2000000) ORDER BY value DESC",
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("a 16 MB sort fitted in 1 MiB"));
    let root = e.find_root();
    assert!(
        matches!(root, DataFusionError::ResourcesExhausted(_)),
        "{e:?}"
    );
    let message = root.to_string();
    assert!(
        message.contains("1.0 MiB") && message.contains("--query-memory"),
        "{message}"
    );
    // Nothing is left reserved, and a query that fits runs.
    let ctx = engine.session(None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    assert_eq!(
        run(&engine, "SELECT value FROM range(1000) ORDER BY value DESC")
            .await
            .ok(),
        Some(1000)
    );
}

#[tokio::test]
async fn queries_beyond_max_concurrent_wait_then_fail() {
    let (engine, _dir) = engine(QueryLimits {
        max_concurrent: Some(1),
        queue_timeout: Duration::from_millis(100),
        ..unlimited()
    })
    .await;
    // A query reading its result holds the only slot, through a session's
    // DataFrame API (pgwire's path): the slots are the engine's.
    let ctx = engine.session(None).unwrap_or_else(|e| panic!("{e}"));
    let mut open = ctx
        .sql("SELECT * FROM range(100000)")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .execute_stream()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(open.next().await, Some(Ok(_))));
    let e = run(&engine, "SELECT 1")
        .await
        .err()
        .unwrap_or_else(|| panic!("a second query ran beside the first"));
    assert_eq!(limit_of(&e), LimitExceeded::Concurrency(1));
    assert_eq!(
        LimitExceeded::of(&e).map(ToString::to_string).as_deref(),
        Some("too many concurrent queries (1); retry later")
    );
    // Dropping the stream gives the slot back.
    drop(open);
    assert_eq!(run(&engine, "SELECT 1").await.ok(), Some(1));
    // So does reading a result to its end, before the stream is dropped.
    let mut finished = start(&engine, "SELECT * FROM range(3)").await;
    while let Some(batch) = finished.next().await {
        batch.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(run(&engine, "SELECT 1").await.ok(), Some(1));
    drop(finished);
    // A planned query that never ran holds no slot.
    let _planned = start(&engine, "SELECT * FROM range(3)").await;
    assert_eq!(run(&engine, "SELECT 1").await.ok(), Some(1));
}
