//! Query limits (SPEC §8), enforced where every protocol's queries pass:
//! the physical planner of every session [`QueryEngine`](crate::QueryEngine)
//! builds. gRPC `QueryService`, Flight SQL and pgwire (whose
//! `datafusion-postgres` runs plans itself, cursors and `COPY` included)
//! all get the same limits, with no code of their own.
//!
//! - **Memory**: one DataFusion memory pool for every session of the engine
//!   ([`GreedyMemoryPool`] inside [`TrackConsumersPool`], so the error names
//!   the biggest consumers). Spilling is off: `/tmp` is often RAM (tmpfs),
//!   and spill files on the data disk would compete with the WAL, where a
//!   full disk stops ingest. A query that needs more fails with
//!   `ResourcesExhausted`; others go on.
//! - **Time, result rows, concurrency**: [`LimitedPlanner`] plans with
//!   DataFusion's planner (within the time limit) and puts a [`LimitsExec`]
//!   on top. Its stream takes a slot of the engine's semaphore when first
//!   polled (waiting at most [`QueryLimits::queue_timeout`]), then starts
//!   the clock, counts rows, and gives the slot back when it ends or is
//!   dropped.
//!   A watchdog task ends a query at its deadline even if nobody polls it
//!   (an idle cursor), dropping its operators, their memory and its slot.
//!
//! The slot is taken when the stream is first polled, not when it is
//! planned: pgwire plans every statement of a simple query before reading
//! the first result, and must not hold several slots at once.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::Stream;
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// The limits of every query an engine runs; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// Bytes all running queries may hold together (sorts, hash tables,
    /// buffered batches). Default: [`default_query_memory`].
    pub memory: Option<usize>,
    /// Wall-clock time of one query, from when it gets its slot to its last
    /// batch (a client reading slowly uses it too); planning has the same
    /// limit. Default 300 s.
    pub timeout: Option<Duration>,
    /// Rows one query may return. Default 10,000,000.
    pub max_result_rows: Option<u64>,
    /// Queries running at once. Default: twice the number of cores, at
    /// least 8 (a dashboard's panels run together even on a small machine,
    /// and a client holding a cursor open holds a slot).
    pub max_concurrent: Option<usize>,
    /// How long a query waits for a slot when `max_concurrent` are running.
    /// Default 10 s.
    pub queue_timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            memory: Some(default_query_memory()),
            timeout: Some(Duration::from_secs(300)),
            max_result_rows: Some(10_000_000),
            max_concurrent: Some((2 * cores).max(8)),
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// Half the memory this process may use: the machine's, or its cgroup's
/// limit when lower (containers); 4 GiB where neither can be read.
pub fn default_query_memory() -> usize {
    const FALLBACK: u64 = 4 << 30;
    let total = available_memory().unwrap_or(2 * FALLBACK);
    usize::try_from(total / 2).unwrap_or(usize::MAX)
}

/// Physical memory (`MemTotal` of /proc/meminfo), capped by a cgroup v2 or
/// v1 memory limit. `None` off Linux.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())?
        .checked_mul(1024)?;
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    .filter_map(|v| v.trim().parse::<u64>().ok())
    .min();
    Some(cgroup.map_or(total, |limit| limit.min(total)))
}

/// A query stopped by a limit. It reaches clients inside
/// `DataFusionError::External` (the type of every stream error);
/// [`LimitExceeded::of`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("query exceeded the {} time limit (--query-timeout)", Seconds(*.0))]
    Timeout(Duration),

    #[error("the result exceeds {0} rows (--max-result-rows); add a LIMIT or aggregate")]
    ResultRows(u64),

    #[error("too many concurrent queries ({0}); retry later")]
    Concurrency(usize),
}

impl LimitExceeded {
    /// The limit behind `e`, if a limit stopped the query.
    pub fn of(e: &DataFusionError) -> Option<&Self> {
        match e.find_root() {
            DataFusionError::External(source) => source.downcast_ref(),
            _ => None,
        }
    }
}

impl From<LimitExceeded> for DataFusionError {
    fn from(e: LimitExceeded) -> Self {
        Self::External(Box::new(e))
    }
}

/// `300 s`, `0.05 s`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{} s", self.0.as_secs())
        } else {
            write!(f, "{} s", self.0.as_secs_f64())
        }
    }
}

/// `1.5 GiB`.
pub(crate) fn format_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The limits and the state they share across every session of an engine.
#[derive(Debug)]
pub(crate) struct Guard {
    limits: QueryLimits,
    slots: Option<Arc<Semaphore>>,
}

impl Guard {
    pub(crate) fn new(limits: QueryLimits) -> Self {
        let slots = limits
            .max_concurrent
            .map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))));
        Self { limits, slots }
    }

    /// The memory pool for the engine's one `RuntimeEnv`.
    pub(crate) fn memory_pool(&self) -> Option<Arc<dyn MemoryPool>> {
        let bytes = self.limits.memory?;
        let top = std::num::NonZeroUsize::MIN.saturating_add(4);
        Some(Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(bytes),
            top,
        )))
    }

    /// A slot to run in, waiting at most the queue timeout.
    async fn admit(&self) -> DfResult<Option<OwnedSemaphorePermit>> {
        let (Some(slots), Some(max)) = (&self.slots, self.limits.max_concurrent) else {
            return Ok(None);
        };
        let waiting = Arc::clone(slots).acquire_owned();
        match tokio::time::timeout(self.limits.queue_timeout, waiting).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            // The semaphore is never closed; a closed one admits no one.
            Ok(Err(_)) | Err(_) => Err(LimitExceeded::Concurrency(max).into()),
        }
    }

    /// A memory error with the limit it hit named (DataFusion's own text
    /// suggests its config keys, which are not how cxdb is configured).
    fn explain_memory(&self, e: DataFusionError) -> DataFusionError {
        match (e.find_root(), self.limits.memory) {
            (DataFusionError::ResourcesExhausted(detail), Some(bytes)) => {
                DataFusionError::ResourcesExhausted(format!(
                    "the query needs more memory than is free of the {} all running \
                     queries share (--query-memory): {detail}",
                    format_bytes(bytes)
                ))
            }
            _ => e,
        }
    }
}

/// DataFusion's physical planner ([`crate::lag`] included), within the time limit, with a
/// [`LimitsExec`] on top of every plan.
#[derive(Debug)]
pub(crate) struct LimitedPlanner {
    pub(crate) guard: Arc<Guard>,
}

#[async_trait]
impl QueryPlanner for LimitedPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let planning = crate::lag::create_physical_plan(logical_plan, session);
        let plan = match self.guard.limits.timeout {
            Some(limit) => tokio::time::timeout(limit, planning)
                .await
                .map_err(|_| LimitExceeded::Timeout(limit))??,
            None => planning.await?,
        };
        Ok(Arc::new(LimitsExec::new(plan, Arc::clone(&self.guard))))
    }
}

/// The plan without the [`LimitsExec`] on top, for showing it.
pub(crate) fn unguarded(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    match plan.downcast_ref::<LimitsExec>() {
        Some(limits) => Arc::clone(&limits.shown),
        None => plan,
    }
}

/// The root of every query's plan: one output partition whose stream
/// enforces the time, row and concurrency limits.
#[derive(Debug)]
pub(crate) struct LimitsExec {
    /// What runs: the plan, its partitions merged into one.
    input: Arc<dyn ExecutionPlan>,
    /// The plan as DataFusion made it.
    shown: Arc<dyn ExecutionPlan>,
    guard: Arc<Guard>,
    properties: Arc<PlanProperties>,
}

impl LimitsExec {
    fn new(plan: Arc<dyn ExecutionPlan>, guard: Arc<Guard>) -> Self {
        // One stream to count and time, as DataFusion's `execute_stream`
        // would merge them anyway.
        let input: Arc<dyn ExecutionPlan> = if plan.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(Arc::clone(&plan)))
        } else {
            Arc::clone(&plan)
        };
        let properties = Arc::clone(input.properties());
        Self {
            input,
            shown: plan,
            guard,
            properties,
        }
    }
}

impl DisplayAs for LimitsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LimitsExec")
    }
}

impl ExecutionPlan for LimitsExec {
    fn name(&self) -> &str {
        "LimitsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let child = crate::only_input(children, "LimitsExec")?;
        Ok(Arc::new(Self::new(child, Arc::clone(&self.guard))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let guard = Arc::clone(&self.guard);
        let input = Arc::clone(&self.input);
        let start: BoxFuture<'static, _> = Box::pin(async move {
            let permit = guard.admit().await?;
            let stream = input.execute(partition, context)?;
            Ok((stream, permit))
        });
        Ok(Box::pin(LimitedStream {
            schema: self.schema(),
            guard: Arc::clone(&self.guard),
            shared: Arc::new(Mutex::new(Shared {
                phase: Phase::Starting(start),
                waker: None,
            })),
            watchdog: None,
            rows: 0,
        }))
    }
}

type Started = DfResult<(SendableRecordBatchStream, Option<OwnedSemaphorePermit>)>;

enum Phase {
    /// Waiting for a slot, then starting the plan.
    Starting(BoxFuture<'static, Started>),
    Running {
        stream: SendableRecordBatchStream,
        _permit: Option<OwnedSemaphorePermit>,
    },
    /// The watchdog stopped it; the error is still to be reported.
    TimedOut(Duration),
    /// Finished or failed; nothing more to send.
    Done,
}

/// What the stream and its watchdog share.
struct Shared {
    phase: Phase,
    /// Woken when the watchdog ends the query.
    waker: Option<Waker>,
}

/// The result stream of a [`LimitsExec`].
struct LimitedStream {
    schema: SchemaRef,
    guard: Arc<Guard>,
    shared: Arc<Mutex<Shared>>,
    watchdog: Option<JoinHandle<()>>,
    rows: u64,
}

/// Starts the clock of a query that got its slot: at the deadline the query
/// is dropped (its memory and slot freed) and its next poll answers the
/// timeout, even if nobody was polling it.
fn watchdog(shared: &Arc<Mutex<Shared>>, limit: Duration) -> Option<JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let shared = Arc::downgrade(shared);
    Some(runtime.spawn(async move {
        tokio::time::sleep(limit).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (stopped, waker) = {
            let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
            let running = !matches!(shared.phase, Phase::Done);
            let stopped =
                running.then(|| std::mem::replace(&mut shared.phase, Phase::TimedOut(limit)));
            (stopped, shared.waker.take())
        };
        // Dropped outside the lock: DataFusion aborts its tasks here.
        drop(stopped);
        if let Some(waker) = waker {
            waker.wake();
        }
    }))
}

impl Drop for LimitedStream {
    fn drop(&mut self) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
    }
}

impl Stream for LimitedStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut shared = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &mut shared.phase {
                Phase::Starting(start) => match start.as_mut().poll(cx) {
                    Poll::Ready(Ok((stream, permit))) => {
                        shared.phase = Phase::Running {
                            stream,
                            _permit: permit,
                        };
                        if let Some(limit) = this.guard.limits.timeout {
                            this.watchdog = watchdog(&this.shared, limit);
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        shared.phase = Phase::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Pending => break,
                },
                Phase::Running { stream, .. } => match stream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(batch))) => {
                        this.rows += batch.num_rows() as u64;
                        if let Some(max) = this.guard.limits.max_result_rows
                            && this.rows > max
                        {
                            shared.phase = Phase::Done;
                            return Poll::Ready(Some(Err(LimitExceeded::ResultRows(max).into())));
                        }
                        return Poll::Ready(Some(Ok(batch)));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        shared.phase = Phase::Done;
                        return Poll::Ready(Some(Err(this.guard.explain_memory(e))));
                    }
                    Poll::Ready(None) => {
                        // Frees the slot now, not when the consumer drops us.
                        shared.phase = Phase::Done;
                        return Poll::Ready(None);
                    }
                    Poll::Pending => break,
                },
                Phase::TimedOut(limit) => {
                    let limit = *limit;
                    shared.phase = Phase::Done;
                    return Poll::Ready(Some(Err(LimitExceeded::Timeout(limit).into())));
                }
                Phase::Done => return Poll::Ready(None),
            }
        }
        shared.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl RecordBatchStream for LimitedStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limit_and_its_flag() {
        assert_eq!(
            LimitExceeded::Timeout(Duration::from_secs(300)).to_string(),
            "query exceeded the 300 s time limit (--query-timeout)"
        );
        assert_eq!(
            LimitExceeded::Timeout(Duration::from_millis(50)).to_string(),
            "query exceeded the 0.05 s time limit (--query-timeout)"
        );
        assert_eq!(
            LimitExceeded::ResultRows(5).to_string(),
            "the result exceeds 5 rows (--max-result-rows); add a LIMIT or aggregate"
        );
        assert_eq!(
            LimitExceeded::Concurrency(4).to_string(),
            "too many concurrent queries (4); retry later"
        );
    }

    #[test]
    fn a_limit_is_found_under_datafusion_context() {
        let e = DataFusionError::from(LimitExceeded::ResultRows(5)).context("while streaming");
        assert_eq!(LimitExceeded::of(&e), Some(&LimitExceeded::ResultRows(5)));
        let other = DataFusionError::Execution("boom".into());
        assert_eq!(LimitExceeded::of(&other), None);
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1 << 20), "1.0 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn default_memory_is_half_of_what_the_machine_has() {
        let bytes = default_query_memory();
        assert!(bytes >= 1 << 20, "{bytes}");
        if let Some(total) = available_memory() {
            assert_eq!(bytes as u64, total / 2);
        }
    }
}
