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
use cxdb_proto::v1 as proto;
use cxdb_proto::v1::ListRequest;
use cxdb_proto::v1::WriteRequest;
use cxdb_proto::v1::admin_service_client::AdminServiceClient;
use cxdb_proto::v1::ingest_service_client::IngestServiceClient;
use cxdb_storage::catalog::{BusinessCalendar, SlaPolicy, WeeklyHours};
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

/// The demo tenants' support hours: weekdays 08:00–18:00 in a zone per
/// tenant, New Year's Day and Christmas off.
const DEMO_CALENDAR: &str = "support-hours";
const DEMO_HOURS: &str = r#"{"mon":[["08:00","18:00"]],"tue":[["08:00","18:00"]],"wed":[["08:00","18:00"]],"thu":[["08:00","18:00"]],"fri":[["08:00","18:00"]]}"#;
const DEMO_ZONES: [&str; 3] = ["America/New_York", "Europe/Berlin", "Asia/Tokyo"];
const DEMO_HOLIDAYS: [&str; 2] = ["2026-01-01", "2026-12-25"];

/// One demo SLA policy: id, priority, channel, business calendar (else
/// 24×7), first response / next response / resolution targets in seconds.
type DemoPolicy = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    bool,
    i64,
    i64,
    i64,
);

/// The demo's SLA policies, so that `sla_status` has rows out of the box:
/// urgent conversations around the clock, chat in minutes, the rest in
/// business hours.
const DEMO_POLICIES: [DemoPolicy; 4] = [
    ("urgent", Some("urgent"), None, false, 900, 1800, 14_400),
    ("high", Some("high"), None, true, 1800, 3600, 28_800),
    ("chat", None, Some("chat"), true, 120, 300, 28_800),
    ("standard", None, None, true, 3600, 7200, 57_600),
];

/// The demo's calendars and SLA policies of `tenant` (the `i`-th demo tenant).
fn demo_sla(i: usize, tenant: &str) -> anyhow::Result<(BusinessCalendar, Vec<SlaPolicy>)> {
    let calendar = BusinessCalendar {
        tenant_id: tenant.to_string(),
        calendar_id: DEMO_CALENDAR.to_string(),
        timezone: DEMO_ZONES[i % DEMO_ZONES.len()].to_string(),
        weekly_hours: WeeklyHours::parse_json(DEMO_HOURS)?,
        holidays: DEMO_HOLIDAYS
            .iter()
            .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d"))
            .collect::<Result<_, _>>()?,
    };
    let policies = DEMO_POLICIES
        .iter()
        .map(
            |&(id, priority, channel, business, first, next, resolution)| SlaPolicy {
                tenant_id: tenant.to_string(),
                policy_id: id.to_string(),
                priority: priority.map(str::to_string),
                channel: channel.map(str::to_string),
                calendar_id: business.then(|| DEMO_CALENDAR.to_string()),
                first_response_s: Some(first),
                next_response_s: Some(next),
                resolution_s: Some(resolution),
            },
        )
        .collect();
    Ok((calendar, policies))
}

/// Installs the demo calendars and SLA policies of the tenants that have
/// no SLA policy yet (a tenant whose policies were changed keeps them).
fn install_demo_sla_in_process(storage: &Storage) -> anyhow::Result<()> {
    let tenants = DemoConfig::default().tenants;
    storage.commit_catalog(|m| {
        for (i, tenant) in tenants.iter().enumerate() {
            if m.sla_policies.iter().any(|p| &p.tenant_id == tenant) {
                continue;
            }
            let (calendar, policies) = demo_sla(i, tenant)
                .map_err(|e| cxdb_storage::catalog::Error::Invalid(e.to_string()))?;
            m.upsert_calendar(calendar)?;
            for p in policies {
                m.upsert_sla_policy(p)?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// The same over AdminService (an admin token is needed when the server
/// checks tokens; without one the demo runs without SLA policies).
async fn install_demo_sla_remote(channel: crate::client::AuthChannel) -> anyhow::Result<()> {
    let mut admin = AdminServiceClient::new(channel);
    let existing = admin
        .list_sla_policies(ListRequest::default())
        .await?
        .into_inner()
        .policies;
    for (i, tenant) in DemoConfig::default().tenants.iter().enumerate() {
        if existing.iter().any(|p| &p.tenant_id == tenant) {
            continue;
        }
        let (calendar, policies) = demo_sla(i, tenant)?;
        admin
            .upsert_calendar(proto::BusinessCalendar {
                tenant_id: calendar.tenant_id,
                calendar_id: calendar.calendar_id,
                timezone: calendar.timezone,
                weekly_hours_json: DEMO_HOURS.to_string(),
                holidays: DEMO_HOLIDAYS.iter().map(|d| d.to_string()).collect(),
            })
            .await?;
        for p in policies {
            admin
                .upsert_sla_policy(proto::SlaPolicy {
                    tenant_id: p.tenant_id,
                    policy_id: p.policy_id,
                    priority: p.priority,
                    channel: p.channel,
                    calendar_id: p.calendar_id,
                    first_response_s: p.first_response_s,
                    next_response_s: p.next_response_s,
                    resolution_s: p.resolution_s,
                })
                .await?;
        }
    }
    Ok(())
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
        if let Err(e) = install_demo_sla_in_process(&storage) {
            warn!(error = %e, "demo SLA policies not installed");
        }
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
    match install_demo_sla_remote(channel.clone()).await {
        Ok(()) => info!("demo calendars and SLA policies in place"),
        Err(e) => {
            warn!(error = %e, "demo SLA policies not installed (an admin token installs them)")
        }
    }
    let mut sink =
        GrpcSink(IngestServiceClient::new(channel).max_encoding_message_size(usize::MAX));
    if let Some(n) = args.events {
        return feed_exact(&mut sink, args.seed, n).await;
    }
    feed(&mut sink, args.seed, args.backfill_days, !args.no_live).await
}
