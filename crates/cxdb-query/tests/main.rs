//! The `events` table and configuration tables through DataFusion SQL, on
//! the real storage engine with the object_store file backend.

mod functions;
mod limits;
mod slt;

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use cxdb_model::Event;
use cxdb_query::{QueryEngine, QueryLimits};
use cxdb_storage::catalog::{BusinessCalendar, SlaPolicy, WeeklyHours};
use cxdb_storage::{Storage, StorageConfig, WriteOptions};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::{ExecutionPlan, collect};

/// 2026-01-01T00:00:00Z
const DAY0: i64 = 1_767_225_600_000_000;
const MINUTE: i64 = 60_000_000;
const DAY: i64 = 1440 * MINUTE;

fn event(tenant: &str, id: &str, time: i64, channel: &str) -> Event {
    Event {
        tenant_id: tenant.into(),
        event_id: id.into(),
        event_time: time,
        event_type: "conversation.created".into(),
        conversation_id: Some(format!("c-{id}")),
        channel: Some(channel.into()),
        ..Default::default()
    }
}

async fn storage(dir: &std::path::Path, row_group_rows: usize) -> Arc<Storage> {
    let mut c = StorageConfig::new(dir);
    c.background = false;
    c.row_group_rows = row_group_rows;
    Storage::open(c).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn query(engine: &QueryEngine, scope: Option<&str>, sql: &str) -> Vec<RecordBatch> {
    let ctx = engine.session(scope).unwrap_or_else(|e| panic!("{e}"));
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = arrow::compute::cast(b.column(col), &arrow::datatypes::DataType::Utf8)
                .unwrap_or_else(|e| panic!("column {col}: {e}"));
            let a = a.as_any().downcast_ref::<StringArray>().cloned();
            let a = a.unwrap_or_else(|| panic!("column {col} is not Utf8"));
            (0..a.len())
                .map(move |i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ints(batches: &[RecordBatch], col: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(col).as_any().downcast_ref::<Int64Array>().cloned();
            let a = a.unwrap_or_else(|| panic!("column {col} is not Int64"));
            (0..a.len()).map(move |i| a.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn buffer_and_parquet_are_one_table() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = storage(dir.path(), 1000).await;
    let w = WriteOptions::default();
    // 3 chat + 2 email persisted, then 1 chat + 1 sms only in the buffer.
    let first = vec![
        event("acme", "1", DAY0, "chat"),
        event("acme", "2", DAY0 + 1, "chat"),
        event("acme", "3", DAY0 + DAY, "chat"),
        event("acme", "4", DAY0, "email"),
        event("beta", "5", DAY0, "email"),
    ];
    s.write(first, w.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    s.write(
        vec![
            event("acme", "6", DAY0, "chat"),
            event("beta", "7", DAY0, "sms"),
        ],
        w,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let engine = QueryEngine::new(s, QueryLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    let b = query(
        &engine,
        None,
        "SELECT channel, count(*) AS n FROM events GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(strings(&b, 0), vec!["chat", "email", "sms"]);
    assert_eq!(ints(&b, 1), vec![4, 2, 1]);
    // A tenant-scoped session sees only its rows, whatever the SQL says.
    let b = query(
        &engine,
        Some("beta"),
        "SELECT count(*) FROM events WHERE tenant_id = 'acme' OR tenant_id = 'beta'",
    )
    .await;
    assert_eq!(ints(&b, 0), vec![2]);
}

/// Walks a plan and returns (files in scans, rows output by scans).
fn scan_metrics(plan: &Arc<dyn ExecutionPlan>) -> (usize, usize) {
    let mut files = 0;
    let mut rows = 0;
    if let Some(exec) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
    {
        files += config.file_groups.iter().map(|g| g.len()).sum::<usize>();
        rows += plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
    }
    for child in plan.children() {
        let (f, r) = scan_metrics(child);
        files += f;
        rows += r;
    }
    (files, rows)
}

#[tokio::test]
async fn tenant_and_time_predicates_prune_files_and_row_groups() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // 2 tenants × 3 days × 1440 events (one a minute), row groups of 100.
    let s = storage(dir.path(), 100).await;
    for tenant in ["acme", "beta"] {
        let events: Vec<Event> = (0..3 * 1440)
            .map(|m| event(tenant, &format!("{m}"), DAY0 + m * MINUTE, "chat"))
            .collect();
        s.write(events, WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.manifest().files.len(), 6);
    let engine = QueryEngine::new(s, QueryLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    let ctx = engine.session(None).unwrap_or_else(|e| panic!("{e}"));

    let run = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let df = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{e}"));
            let plan = df
                .create_physical_plan()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let batches = collect(Arc::clone(&plan), ctx.task_ctx())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let (files, rows) = scan_metrics(&plan);
            (ints(&batches, 0), files, rows)
        }
    };

    // No predicate: every file, every row.
    assert_eq!(
        run("SELECT count(event_id) FROM events").await,
        (vec![8640], 6, 8640)
    );
    // Tenant + one day: one file of six.
    let (n, files, _) = run(
        "SELECT count(event_id) FROM events WHERE tenant_id = 'acme' \
         AND event_time >= TIMESTAMP '2026-01-02T00:00:00Z' AND event_time < TIMESTAMP '2026-01-03T00:00:00Z'",
    )
    .await;
    assert_eq!((n, files), (vec![1440], 1));
    // One hour inside a day: one file, and only the row groups (of 100
    // rows, time-sorted) overlapping 10:00–10:59 are read: 60 rows match,
    // minutes 600..659 lie in row groups 6 (600–699): 100 rows read, not 1440.
    let (n, files, rows) = run(
        "SELECT count(event_id) FROM events WHERE tenant_id = 'beta' \
         AND event_time >= TIMESTAMP '2026-01-01T10:00:00Z' AND event_time < TIMESTAMP '2026-01-01T11:00:00Z'",
    )
    .await;
    assert_eq!((n, files), (vec![60], 1));
    assert!(
        (60..=100).contains(&rows),
        "scanned {rows} rows for a 60-row hour"
    );
}

#[tokio::test]
async fn configuration_tables_read_the_catalog() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = storage(dir.path(), 1000).await;
    let hours = WeeklyHours::parse_json(r#"{"mon":[["09:00","17:00"]],"fri":[["22:00","06:00"]]}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    s.commit_catalog(|m| {
        for tenant in ["acme", "beta"] {
            m.upsert_calendar(BusinessCalendar {
                tenant_id: tenant.into(),
                calendar_id: "support".into(),
                timezone: "America/New_York".into(),
                weekly_hours: hours.clone(),
                holidays: vec![chrono::NaiveDate::from_ymd_opt(2026, 12, 25).unwrap_or_default()],
            })?;
        }
        m.upsert_sla_policy(SlaPolicy {
            tenant_id: "acme".into(),
            policy_id: "urgent-chat".into(),
            priority: Some("urgent".into()),
            channel: Some("chat".into()),
            calendar_id: Some("support".into()),
            first_response_s: Some(300),
            next_response_s: None,
            resolution_s: Some(14_400),
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let engine = QueryEngine::new(s, QueryLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    let b = query(
        &engine,
        None,
        "SELECT tenant_id, timezone, weekly_hours, CAST(holidays[1] AS VARCHAR) FROM business_calendars ORDER BY 1",
    )
    .await;
    assert_eq!(strings(&b, 0), vec!["acme", "beta"]);
    assert_eq!(strings(&b, 1), vec!["America/New_York"; 2]);
    assert!(
        strings(&b, 2)[0].contains("\"22:00\""),
        "{:?}",
        strings(&b, 2)
    );
    assert_eq!(strings(&b, 3), vec!["2026-12-25"; 2]);
    let b = query(
        &engine,
        Some("beta"),
        "SELECT count(*) FROM business_calendars",
    )
    .await;
    assert_eq!(ints(&b, 0), vec![1]);
    let b = query(
        &engine,
        None,
        "SELECT policy_id, channel, first_response_s, resolution_s FROM sla_policies",
    )
    .await;
    assert_eq!(strings(&b, 0), vec!["urgent-chat"]);
    assert_eq!(ints(&b, 2), vec![300]);
    assert_eq!(ints(&b, 3), vec![14_400]);
}

/// `COPY … TO 'file'` into an object store prefix (`memory://`), prepared
/// with a parameter, run by a tenant-scoped analyst: its tenant's rows
/// only, one answer row, one audit record.
#[tokio::test]
async fn copy_to_an_object_store_prefix_with_a_parameter() {
    use cxdb_query::{Principal, QueryExecutor};
    use cxdb_storage::catalog::Role;

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = storage(dir.path(), 1000).await;
    s.write(
        vec![
            event("acme", "1", DAY0, "chat"),
            event("acme", "2", DAY0, "email"),
            event("beta", "3", DAY0, "chat"),
        ],
        WriteOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let engine = QueryEngine::new(s, QueryLimits::default())
        .and_then(|e| e.with_export_location("memory:///exports"))
        .unwrap_or_else(|e| panic!("{e}"));
    let analyst = Principal::new(Role::Analyst, Some("acme".into()), Some("t1".into())).via("test");
    let sql = "COPY (SELECT event_id FROM events WHERE channel = $1) TO 'q/chat.csv' (FORMAT csv)";
    let info = engine
        .prepare(&analyst, sql, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.parameters.len(), 1);
    assert_eq!(info.schema.field(0).name(), "rows");
    assert!(
        engine.audit_log().records(None).is_empty(),
        "prepare ran it"
    );

    let stream = engine
        .execute_with_params(&analyst, sql, vec!["chat".into()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = datafusion::physical_plan::common::collect(stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ints(&answer, 0), vec![1]);
    assert_eq!(strings(&answer, 1), vec!["memory:///exports/q/chat.csv"]);
    let records = engine.audit_log().records(Some("acme"));
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0].who.as_str(),
            records[0].protocol.as_str(),
            records[0].rows
        ),
        ("t1", "test", 1)
    );
    assert!(engine.audit_log().records(Some("beta")).is_empty());

    // A read token is refused before anything runs.
    let reader = Principal::new(Role::Read, None, None);
    let err = engine
        .execute_with_params(&reader, sql, vec!["chat".into()])
        .await
        .err()
        .unwrap_or_else(|| panic!("a read token exported"));
    assert!(
        matches!(err, cxdb_query::Error::PermissionDenied(_)),
        "{err}"
    );
}

/// A long-lived session (a pgwire connection) sees calendars and SLA
/// policies added after it was created, in the functions as in the tables.
#[tokio::test]
async fn functions_follow_catalog_changes_in_an_open_session() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = storage(dir.path(), 1000).await;
    let engine =
        QueryEngine::new(Arc::clone(&s), QueryLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    let ctx = engine.session(None).unwrap_or_else(|e| panic!("{e}"));
    let sql = "SELECT sla_policy_for('acme', 'urgent', 'chat'), \
        business_seconds(TIMESTAMP '2026-01-05T08:00:00Z', TIMESTAMP '2026-01-05T18:00:00Z', 'office', 'acme')";
    let run = |ctx: datafusion::prelude::SessionContext| async move {
        ctx.sql(sql).await?.collect().await
    };
    // Before: no such calendar.
    let err = run(ctx.clone()).await.err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("office")),
        "{err:?}"
    );
    s.commit_catalog(|m| {
        m.upsert_calendar(BusinessCalendar {
            tenant_id: "acme".into(),
            calendar_id: "office".into(),
            timezone: "UTC".into(),
            weekly_hours: WeeklyHours::parse_json(r#"{"mon":[["09:00","17:00"]]}"#)?,
            holidays: Vec::new(),
        })?;
        m.upsert_sla_policy(SlaPolicy {
            tenant_id: "acme".into(),
            policy_id: "urgent".into(),
            priority: Some("urgent".into()),
            channel: None,
            calendar_id: Some("office".into()),
            first_response_s: Some(300),
            next_response_s: None,
            resolution_s: None,
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // The same session: 2026-01-05 is a Monday, 08:00–18:00 holds 8 office hours.
    let b = run(ctx).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&b, 0), vec!["urgent"]);
    assert_eq!(strings(&b, 1), vec!["28800.0"]);
}
