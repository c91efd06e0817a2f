//! Demo traffic: `cxdb serve --demo` feeds the storage in process;
//! `cxdb demo --addr …` streams the same traffic to a server over gRPC.
//! History is written first (`--backfill-days`), then live events every
//! second, as they "happen".

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use cxdb_demo::{DemoConfig, DemoGenerator};
use cxdb_model::Event;
use cxdb_model::time::{MICROS_PER_DAY, now_micros};
use cxdb_proto::v1::WriteRequest;
use cxdb_proto::v1::ingest_service_client::IngestServiceClient;
use cxdb_storage::{Storage, WriteOptions};
use tracing::{info, warn};

/// Events per write while backfilling.
const BACKFILL_BATCH: usize = 10_000;
/// Backfill window per generator call (bounds memory).
const BACKFILL_STEP_US: i64 = 3_600_000_000;
/// Where `--events` history starts: 2026-01-01T00:00:00Z, a fixed instant so
/// that the data set does not depend on the day it is generated.
const FIXED_START_US: i64 = 1_767_225_600_000_000;

#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Server gRPC address.
    #[arg(long, env = "CXDB_ADDR", default_value = "http://127.0.0.1:50051")]
    pub(crate) addr: String,

    /// Bearer token (servers running with --auth token; an ingest token will do).
    #[arg(long, env = "CXDB_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// Random seed: the same seed gives the same traffic.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,

    /// Days of history written before live traffic starts (from UTC midnight
    /// N days ago; the same seed on the same day gives the same events).
    #[arg(long, default_value_t = 7)]
    pub(crate) backfill_days: u32,

    /// Stop after the backfill instead of streaming live traffic.
    #[arg(long)]
    pub(crate) no_live: bool,

    /// Instead of a backfill up to now: exactly N events, the first N of the
    /// simulation started at 2026-01-01T00:00:00Z, then stop (no live
    /// traffic). The same seed and N give the same events on any day
    /// (benchmarks load this).
    #[arg(long, env = "CXDB_DEMO_EVENTS", conflicts_with = "backfill_days")]
    pub(crate) events: Option<u64>,
}

/// The in-process feeder of `serve --demo`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DemoFeed {
    pub(crate) seed: u64,
    pub(crate) backfill_days: u32,
}

/// Where a demo's events go.
trait Sink {
    async fn send(&mut self, events: Vec<Event>) -> anyhow::Result<()>;
}

struct StorageSink(Arc<Storage>);

impl Sink for StorageSink {
    async fn send(&mut self, events: Vec<Event>) -> anyhow::Result<()> {
        let out = self.0.write(events, WriteOptions::default()).await?;
        if let Some(r) = out.rejected.first() {
            warn!(rejected = out.rejected.len(), first = %r, "demo events rejected");
        }
        Ok(())
    }
}

struct GrpcSink(IngestServiceClient<crate::client::AuthChannel>);

impl Sink for GrpcSink {
    async fn send(&mut self, events: Vec<Event>) -> anyhow::Result<()> {
        let req = WriteRequest {
            events: events.iter().map(cxdb_server::event_to_proto).collect(),
            atomic: false,
        };
        let out = self
            .0
            .write(req)
            .await
            .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        if let Some(r) = out.rejected.first() {
            warn!(rejected = out.rejected.len(), first = ?r, "demo events rejected");
        }
        Ok(())
    }
}

async fn feed(
    sink: &mut impl Sink,
    seed: u64,
    backfill_days: u32,
    live: bool,
) -> anyhow::Result<()> {
    let config = DemoConfig {
        seed,
        ..DemoConfig::default()
    };
    // History starts at a UTC midnight, so that the same seed on the same day
    // produces the same events (re-running is idempotent: all duplicates).
    let now = now_micros();
    let start = now - now.rem_euclid(MICROS_PER_DAY) - i64::from(backfill_days) * MICROS_PER_DAY;
    let mut generator = DemoGenerator::new(config, start);
    let mut at = start;
    let mut total = 0usize;
    let until = now_micros();
    while at < until {
        at = (at + BACKFILL_STEP_US).min(until);
        let events = generator.advance_to(at);
        total += events.len();
        for chunk in events.chunks(BACKFILL_BATCH) {
            sink.send(chunk.to_vec()).await?;
        }
    }
    info!(
        events = total,
        days = backfill_days,
        "demo backfill written"
    );
    if !live {
        return Ok(());
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let events = generator.advance_to(now_micros());
        if !events.is_empty() {
            sink.send(events).await?;
        }
    }
}

impl DemoFeed {
    pub(crate) async fn run_in_process(self, storage: Arc<Storage>) {
        let mut sink = StorageSink(storage);
        if let Err(e) = feed(&mut sink, self.seed, self.backfill_days, true).await {
            // Ends when the server shuts down (writes are refused then).
            info!(reason = %e, "demo traffic stopped");
        }
    }
}

/// The first `n` events (in event_time order) of the simulation started at
/// [`FIXED_START_US`], sent in batches of [`BACKFILL_BATCH`].
async fn feed_exact(sink: &mut impl Sink, seed: u64, n: u64) -> anyhow::Result<()> {
    let config = DemoConfig {
        seed,
        ..DemoConfig::default()
    };
    let mut generator = DemoGenerator::new(config, FIXED_START_US);
    let mut at = FIXED_START_US;
    let mut pending: Vec<Event> = Vec::new();
    let mut sent = 0u64;
    let mut quiet_steps = 0u32;
    while sent < n {
        at += BACKFILL_STEP_US;
        let events = generator.advance_to(at);
        // A simulation that stays silent for a year will not reach n.
        quiet_steps = if events.is_empty() {
            quiet_steps + 1
        } else {
            0
        };
        anyhow::ensure!(
            quiet_steps < 24 * 366,
            "the demo generator stopped after {sent} of {n} events"
        );
        let wanted = usize::try_from(n - sent - pending.len() as u64).unwrap_or(usize::MAX);
        pending.extend(events.into_iter().take(wanted));
        while pending.len() >= BACKFILL_BATCH
            || (!pending.is_empty() && sent + pending.len() as u64 == n)
        {
            let rest = pending.split_off(pending.len().min(BACKFILL_BATCH));
            let batch = std::mem::replace(&mut pending, rest);
            sent += batch.len() as u64;
            sink.send(batch).await?;
        }
    }
    info!(events = sent, seed, "demo events written");
    Ok(())
}

pub(crate) async fn run_remote(args: DemoArgs) -> anyhow::Result<()> {
    let channel = crate::client::connect(&args.addr, args.token.as_deref()).await?;
    let mut sink =
        GrpcSink(IngestServiceClient::new(channel).max_encoding_message_size(usize::MAX));
    if let Some(n) = args.events {
        return feed_exact(&mut sink, args.seed, n).await;
    }
    feed(&mut sink, args.seed, args.backfill_days, !args.no_live).await
}
