//! The support SQL functions: business-hours math with hand-computed values
//! (DST, holidays, intervals across midnight), its algebra by proptest, SLA
//! policy matching, sentiment rules and accuracy, and all of them through SQL
//! on a real storage engine.

use std::sync::Arc;

use arrow::array::{Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::NaiveDate;
use cxdb_query::functions::{BusinessClock, CatalogSnapshot, SentimentScorer, register_all};
use cxdb_query::{QueryEngine, QueryLimits};
use cxdb_storage::catalog::{BusinessCalendar, Manifest, SlaPolicy, WeeklyHours};
use cxdb_storage::{Storage, StorageConfig};
use datafusion::prelude::SessionContext;
use proptest::prelude::*;

const HOUR: i64 = 3_600_000_000;

/// RFC 3339 → epoch microseconds.
fn ts(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_micros()
}

fn calendar(tenant: &str, id: &str, tz: &str, hours: &str, holidays: &[&str]) -> BusinessCalendar {
    BusinessCalendar {
        tenant_id: tenant.into(),
        calendar_id: id.into(),
        timezone: tz.into(),
        weekly_hours: WeeklyHours::parse_json(hours).unwrap_or_else(|e| panic!("{e}")),
        holidays: holidays
            .iter()
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap_or_else(|e| panic!("{d}: {e}"))
            })
            .collect(),
    }
}

const NINE_TO_FIVE: &str = r#"{"mon":[["09:00","17:00"]],"tue":[["09:00","17:00"]],"wed":[["09:00","17:00"]],"thu":[["09:00","17:00"]],"fri":[["09:00","17:00"]]}"#;
const ALWAYS: &str = r#"{"mon":[["00:00","24:00"]],"tue":[["00:00","24:00"]],"wed":[["00:00","24:00"]],"thu":[["00:00","24:00"]],"fri":[["00:00","24:00"]],"sat":[["00:00","24:00"]],"sun":[["00:00","24:00"]]}"#;
const NIGHTS: &str = r#"{"mon":[["22:00","02:00"]],"tue":[["22:00","02:00"]],"wed":[["22:00","02:00"]],"thu":[["22:00","02:00"]],"fri":[["22:00","02:00"]],"sat":[["22:00","02:00"]],"sun":[["22:00","02:00"]]}"#;

/// Mon–Fri 09:00–17:00 America/New_York, Tuesday 2026-03-10 a holiday.
/// DST starts Sunday 2026-03-08 02:00 EST → 03:00 EDT (UTC-5 → UTC-4).
fn new_york() -> BusinessClock {
    let c = calendar(
        "acme",
        "ny",
        "America/New_York",
        NINE_TO_FIVE,
        &["2026-03-10"],
    );
    BusinessClock::new(&c).unwrap_or_else(|e| panic!("{e}"))
}

fn clock(tz: &str, hours: &str, holidays: &[&str]) -> BusinessClock {
    BusinessClock::new(&calendar("acme", "c", tz, hours, holidays))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn secs(clock: &BusinessClock, a: &str, b: &str) -> f64 {
    clock
        .seconds(ts(a), ts(b))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn add(clock: &BusinessClock, a: &str, seconds: f64) -> i64 {
    clock
        .add_seconds(ts(a), seconds)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn nine_to_five_across_the_dst_change_and_a_holiday() {
    let ny = new_york();
    // Fri 03-06 16:00 EST (21:00Z) → Mon 03-09 10:00 EDT (14:00Z):
    // Fri 16–17 (1 h) + Mon 09–10 (1 h) = 7200 s, though 65 h pass.
    assert_eq!(
        secs(&ny, "2026-03-06T21:00:00Z", "2026-03-09T14:00:00Z"),
        7200.0
    );
    // Mon 03-09 16:00 EDT → Wed 03-11 10:00 EDT: Mon 1 h + Tue holiday 0 + Wed 1 h.
    assert_eq!(
        secs(&ny, "2026-03-09T20:00:00Z", "2026-03-11T14:00:00Z"),
        7200.0
    );
    // Mon 03-02 00:00 EST → Mon 03-09 00:00 EDT: 5 days × 8 h = 144000 s.
    assert_eq!(
        secs(&ny, "2026-03-02T05:00:00Z", "2026-03-09T04:00:00Z"),
        144_000.0
    );
    // 2026-03-02 → 2026-03-16 00:00 local: 10 working days − the holiday = 9 × 8 h.
    assert_eq!(
        secs(&ny, "2026-03-02T05:00:00Z", "2026-03-16T04:00:00Z"),
        259_200.0
    );
    // end < start: the negated duration.
    assert_eq!(
        secs(&ny, "2026-03-09T14:00:00Z", "2026-03-06T21:00:00Z"),
        -7200.0
    );
    // Entirely outside opening hours (Saturday).
    assert_eq!(
        secs(&ny, "2026-03-07T12:00:00Z", "2026-03-07T20:00:00Z"),
        0.0
    );
    // 2 h from Fri 16:00 EST is Mon 10:00 EDT = 14:00Z (15:00Z if the offset
    // change were ignored).
    assert_eq!(
        add(&ny, "2026-03-06T21:00:00Z", 7200.0),
        ts("2026-03-09T14:00:00Z")
    );
    // Landing exactly on closing time gives closing time (Fri 17:00 EST = 22:00Z).
    assert_eq!(
        add(&ny, "2026-03-06T21:00:00Z", 3600.0),
        ts("2026-03-06T22:00:00Z")
    );
    // From Saturday, 1 s is Mon 09:00:01 EDT = 13:00:01Z.
    assert_eq!(
        add(&ny, "2026-03-07T15:00:00Z", 1.0),
        ts("2026-03-09T13:00:01Z")
    );
    // Mon 16:00 EDT + 2 h skips the Tuesday holiday: Wed 10:00 EDT.
    assert_eq!(
        add(&ny, "2026-03-09T20:00:00Z", 7200.0),
        ts("2026-03-11T14:00:00Z")
    );
    // Backwards: 2 h before Mon 10:00 EDT is Fri 16:00 EST.
    assert_eq!(
        add(&ny, "2026-03-09T14:00:00Z", -7200.0),
        ts("2026-03-06T21:00:00Z")
    );
    // Zero seconds from a closed instant is that instant.
    assert_eq!(
        add(&ny, "2026-03-07T15:00:00Z", 0.0),
        ts("2026-03-07T15:00:00Z")
    );
}

#[test]
fn dst_days_have_their_real_length() {
    let always = clock("America/New_York", ALWAYS, &[]);
    // Sun 03-08 00:00 EST (05:00Z) → Mon 00:00 EDT (04:00Z): a 23-hour day.
    assert_eq!(
        secs(&always, "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"),
        82_800.0
    );
    // Sun 11-01 00:00 EDT (04:00Z) → Mon 00:00 EST (05:00Z): a 25-hour day.
    assert_eq!(
        secs(&always, "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"),
        90_000.0
    );
    // Sunday 01:00–04:00: 01:00 EST (06:00Z) → 04:00 EDT (08:00Z) = 2 h on
    // the spring-forward night; 01:00 EDT (05:00Z) → 04:00 EST (09:00Z) = 4 h
    // on the fall-back night.
    let early = clock("America/New_York", r#"{"sun":[["01:00","04:00"]]}"#, &[]);
    assert_eq!(
        secs(&early, "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"),
        7200.0
    );
    assert_eq!(
        secs(&early, "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
        14_400.0
    );
    // An opening time inside the gap (02:30 does not exist on 03-08) starts
    // at the transition, 03:00 EDT = 07:00Z; 05:00 EDT = 09:00Z: 2 h.
    let gap = clock("America/New_York", r#"{"sun":[["02:30","05:00"]]}"#, &[]);
    assert_eq!(
        secs(&gap, "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"),
        7200.0
    );
    assert_eq!(
        add(&gap, "2026-03-08T00:00:00Z", 1.0),
        ts("2026-03-08T07:00:01Z")
    );
}

#[test]
fn opening_hours_crossing_midnight() {
    // Fridays 22:00–02:00 UTC.
    let friday_night = clock("UTC", r#"{"fri":[["22:00","02:00"]]}"#, &[]);
    // Fri 2026-01-02 21:00 → Sat 03:00: the whole shift, 4 h.
    assert_eq!(
        secs(
            &friday_night,
            "2026-01-02T21:00:00Z",
            "2026-01-03T03:00:00Z"
        ),
        14_400.0
    );
    // Only Saturday: the 2 h after midnight.
    assert_eq!(
        secs(
            &friday_night,
            "2026-01-03T00:00:00Z",
            "2026-01-03T12:00:00Z"
        ),
        7200.0
    );
    // Fri 23:00 + 2 h = Sat 01:00; + 3 h = Sat 02:00 (closing); + 3 h 1 s =
    // next Friday 22:00:01.
    assert_eq!(
        add(&friday_night, "2026-01-02T23:00:00Z", 7200.0),
        ts("2026-01-03T01:00:00Z")
    );
    assert_eq!(
        add(&friday_night, "2026-01-02T23:00:00Z", 10_800.0),
        ts("2026-01-03T02:00:00Z")
    );
    assert_eq!(
        add(&friday_night, "2026-01-02T23:00:00Z", 10_801.0),
        ts("2026-01-09T22:00:01Z")
    );
    // A holiday closes its whole date, including Friday's shift after midnight.
    let with_holiday = clock("UTC", r#"{"fri":[["22:00","02:00"]]}"#, &["2026-01-03"]);
    assert_eq!(
        secs(
            &with_holiday,
            "2026-01-02T21:00:00Z",
            "2026-01-03T03:00:00Z"
        ),
        7200.0
    );
    // Equal start and end: 24 hours, Monday 09:00 → Tuesday 09:00.
    let day = clock("UTC", r#"{"mon":[["09:00","09:00"]]}"#, &[]);
    assert_eq!(
        secs(&day, "2026-01-05T00:00:00Z", "2026-01-07T00:00:00Z"),
        86_400.0
    );
    // Nightly 22:00–02:00 New York. Sat 03-07 22:00 EST (03:00Z) until
    // "02:00" on Sun 03-08, which does not exist: the clock jumps at 07:00Z,
    // so the shift lasts 4 real hours.
    let nights = clock("America/New_York", NIGHTS, &[]);
    assert_eq!(
        secs(&nights, "2026-03-07T12:00:00Z", "2026-03-08T12:00:00Z"),
        14_400.0
    );
    // Sat 10-31 22:00 EDT (02:00Z) → Sun 02:00 EST (07:00Z): 5 real hours.
    assert_eq!(
        secs(&nights, "2026-10-31T12:00:00Z", "2026-11-01T12:00:00Z"),
        18_000.0
    );
}

#[test]
fn a_calendar_without_opening_hours_is_an_error() {
    let empty = calendar("acme", "empty", "UTC", "{}", &[]);
    let e = BusinessClock::new(&empty).err();
    assert_eq!(
        e.as_deref(),
        Some("calendar \"empty\" of tenant \"acme\" has no opening hours")
    );
}

/// Three calendars for the properties: weekdays with holidays in New York,
/// nightly shifts across midnight in New York, split shifts in Sydney
/// (southern-hemisphere DST).
fn property_clocks() -> Vec<BusinessClock> {
    vec![
        clock(
            "America/New_York",
            NINE_TO_FIVE,
            &["2026-03-10", "2026-07-03", "2026-12-25", "2027-01-01"],
        ),
        clock("America/New_York", NIGHTS, &["2026-11-01"]),
        clock(
            "Australia/Sydney",
            r#"{"mon":[["08:00","12:00"],["13:00","17:30"]],"wed":[["20:00","03:00"]],"sat":[["10:00","14:00"]]}"#,
            &["2026-04-04"],
        ),
    ]
}

/// 2025-06-01T00:00:00Z and 2027-06-01T00:00:00Z.
const FROM: i64 = 1_748_736_000_000_000;
const TO: i64 = 1_811_808_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn business_add_inverts_business_seconds(
        which in 0usize..3,
        a in FROM..TO,
        s in 0.0f64..5_000_000.0,
    ) {
        let clock = &property_clocks()[which];
        let t = clock.add_seconds(a, s).map_err(TestCaseError::fail)?;
        prop_assert!(t >= a);
        let back = clock.seconds(a, t).map_err(TestCaseError::fail)?;
        prop_assert!((back - s).abs() <= 1e-6, "s = {s}, back = {back}");
        // Backwards too.
        let t = clock.add_seconds(a, -s).map_err(TestCaseError::fail)?;
        prop_assert!(t <= a);
        let back = clock.seconds(t, a).map_err(TestCaseError::fail)?;
        prop_assert!((back - s).abs() <= 1e-6, "s = {s}, back = {back}");
    }

    #[test]
    fn business_seconds_is_additive(
        which in 0usize..3,
        a in FROM..TO,
        d1 in 0i64..(60 * 24 * HOUR),
        d2 in 0i64..(60 * 24 * HOUR),
    ) {
        let clock = &property_clocks()[which];
        let (b, c) = (a + d1, a + d1 + d2);
        let m = |x, y| clock.micros(x, y).map_err(TestCaseError::fail);
        prop_assert_eq!(m(a, c)?, m(a, b)? + m(b, c)?);
        prop_assert_eq!(m(c, a)?, -m(a, c)?);
        prop_assert!(m(a, c)? <= c - a);
    }
}

// ---------------------------------------------------------------- SQL

async fn storage(dir: &std::path::Path) -> Arc<Storage> {
    let mut c = StorageConfig::new(dir);
    c.background = false;
    Storage::open(c).await.unwrap_or_else(|e| panic!("{e}"))
}

fn policy(tenant: &str, id: &str, priority: Option<&str>, channel: Option<&str>) -> SlaPolicy {
    SlaPolicy {
        tenant_id: tenant.into(),
        policy_id: id.into(),
        priority: priority.map(Into::into),
        channel: channel.map(Into::into),
        calendar_id: None,
        first_response_s: Some(3600),
        next_response_s: None,
        resolution_s: None,
    }
}

/// Tenants acme and beta each have a calendar "support" (New York 9–5 with
/// the 2026-03-10 holiday for acme, 24×7 UTC for beta); acme also "nights".
async fn engine_with_catalog(dir: &std::path::Path) -> QueryEngine {
    let s = storage(dir).await;
    s.commit_catalog(|m| {
        m.upsert_calendar(calendar(
            "acme",
            "support",
            "America/New_York",
            NINE_TO_FIVE,
            &["2026-03-10"],
        ))?;
        m.upsert_calendar(calendar("acme", "nights", "UTC", NIGHTS, &[]))?;
        m.upsert_calendar(calendar("beta", "support", "UTC", ALWAYS, &[]))?;
        for p in [
            policy("acme", "default", None, None),
            policy("acme", "p-urgent", Some("urgent"), None),
            policy("acme", "c-chat", None, Some("chat")),
            policy("acme", "x-urgent-email", Some("urgent"), Some("email")),
            policy("acme", "b-high-email", Some("high"), Some("email")),
            policy("acme", "a-high-email", Some("high"), Some("email")),
            policy("beta", "beta-chat", None, Some("chat")),
        ] {
            m.upsert_sla_policy(p)?;
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    QueryEngine::new(s, QueryLimits::default()).unwrap_or_else(|e| panic!("{e}"))
}

async fn run(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

async fn rows(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    run(ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn error(ctx: &SessionContext, sql: &str) -> String {
    match run(ctx, sql).await {
        Ok(b) => panic!("{sql}: expected an error, got {b:?}"),
        Err(e) => e.to_string(),
    }
}

fn floats(batches: &[RecordBatch], col: usize) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(col)
                .as_any()
                .downcast_ref::<Float64Array>()
                .cloned();
            let a = a.unwrap_or_else(|| panic!("column {col} is {}", b.column(col).data_type()));
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn texts(batches: &[RecordBatch], col: usize) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(col)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned();
            let a = a.unwrap_or_else(|| panic!("column {col} is {}", b.column(col).data_type()));
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn timestamps(batches: &[RecordBatch], col: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(col);
            assert_eq!(
                c.data_type().to_string(),
                "Timestamp(µs, \"UTC\")",
                "column {col}"
            );
            let a = c
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .cloned();
            let a = a.unwrap_or_else(|| panic!("column {col} is {}", c.data_type()));
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn business_functions_through_sql() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let engine = engine_with_catalog(dir.path()).await;
    let all = engine.session(None).unwrap_or_else(|e| panic!("{e}"));

    // Per row: acme's New York 9–5 (the DST weekend, 7200 s), the same with
    // a non-UTC literal zone, NULL calendar = calendar seconds (65 h), NULL
    // end = NULL, beta's 24×7 UTC (65 h), acme's nights: Fri 22:00 → Sat
    // 02:00 and Sat 22:00 → Sun 02:00 fall in Fri 21:00Z → Mon 14:00Z, plus
    // Sun 22:00 → Mon 02:00 = 12 h.
    let b = rows(
        &all,
        "SELECT business_seconds(s, e, c, t) FROM (VALUES \
           (TIMESTAMP '2026-03-06T21:00:00Z', TIMESTAMP '2026-03-09T14:00:00Z', 'support', 'acme'), \
           (TIMESTAMP '2026-03-06T16:00:00-05:00', TIMESTAMP '2026-03-09T10:00:00-04:00', 'support', 'acme'), \
           (TIMESTAMP '2026-03-06T21:00:00Z', TIMESTAMP '2026-03-09T14:00:00Z', NULL, 'acme'), \
           (TIMESTAMP '2026-03-06T21:00:00Z', NULL, 'support', 'acme'), \
           (TIMESTAMP '2026-03-06T21:00:00Z', TIMESTAMP '2026-03-09T14:00:00Z', 'support', 'beta'), \
           (TIMESTAMP '2026-03-06T21:00:00Z', TIMESTAMP '2026-03-09T14:00:00Z', 'nights', NULL) \
         ) AS v(s, e, c, t)",
    )
    .await;
    assert_eq!(
        floats(&b, 0),
        vec![
            Some(7200.0),
            Some(7200.0),
            Some(234_000.0),
            None,
            Some(234_000.0),
            Some(43_200.0)
        ]
    );

    // 3 arguments: "nights" exists only in acme, so it is found.
    let b = rows(
        &all,
        "SELECT business_seconds('2026-03-06T21:00:00Z', '2026-03-07T03:00:00Z', 'nights')",
    )
    .await;
    assert_eq!(floats(&b, 0), vec![Some(14_400.0)]);

    // business_add returns Timestamp(µs, UTC): Fri 16:00 EST + 2 h = Mon 10:00 EDT.
    let b = rows(
        &all,
        "SELECT business_add(TIMESTAMP '2026-03-06T21:00:00Z', 7200, 'support', 'acme'), \
                business_add(TIMESTAMP '2026-03-06T21:00:00Z', 7200.5, NULL), \
                business_add(NULL, 7200, 'support', 'acme'), \
                business_seconds(TIMESTAMP '2026-03-06T21:00:00Z', \
                    business_add(TIMESTAMP '2026-03-06T21:00:00Z', 12345.678901, 'support', 'acme'), \
                    'support', 'acme')",
    )
    .await;
    assert_eq!(timestamps(&b, 0), vec![Some(ts("2026-03-09T14:00:00Z"))]);
    assert_eq!(timestamps(&b, 1), vec![Some(ts("2026-03-06T23:00:00.5Z"))]);
    assert_eq!(timestamps(&b, 2), vec![None]);
    assert_eq!(floats(&b, 3), vec![Some(12_345.678_901)]);

    // Errors name the calendar and tenant.
    let e = error(
        &all,
        "SELECT business_seconds(now(), now(), 'nope', 'acme')",
    )
    .await;
    assert!(
        e.contains("business_seconds: unknown calendar \"nope\" for tenant \"acme\""),
        "{e}"
    );
    let e = error(&all, "SELECT business_add(now(), 1, 'nope')").await;
    assert!(
        e.contains(
            "business_add: unknown calendar \"nope\" (no tenant has a calendar with this id)"
        ),
        "{e}"
    );
    let e = error(&all, "SELECT business_seconds(now(), now(), 'support')").await;
    assert!(
        e.contains("calendar \"support\" exists in several tenants (acme, beta): pass the tenant_id as the 4th argument"),
        "{e}"
    );
    let e = error(&all, "SELECT business_seconds(now(), 'support')").await;
    assert!(e.contains("business_seconds takes 3 or 4 arguments"), "{e}");
    let e = error(&all, "SELECT business_seconds(1.5, now(), 'support')").await;
    assert!(e.contains("start must be a timestamp"), "{e}");

    // A scoped session sees only its tenant's calendars: 3 arguments use
    // beta's, asking for acme's is an unknown calendar.
    let beta = engine
        .session(Some("beta"))
        .unwrap_or_else(|e| panic!("{e}"));
    let b = rows(
        &beta,
        "SELECT business_seconds('2026-03-06T21:00:00Z', '2026-03-09T14:00:00Z', 'support')",
    )
    .await;
    assert_eq!(floats(&b, 0), vec![Some(234_000.0)]);
    let e = error(
        &beta,
        "SELECT business_seconds(now(), now(), 'support', 'acme')",
    )
    .await;
    assert!(
        e.contains("unknown calendar \"support\" for tenant \"acme\""),
        "{e}"
    );
    let e = error(&beta, "SELECT business_seconds(now(), now(), 'nights')").await;
    assert!(
        e.contains("unknown calendar \"nights\" for tenant \"beta\""),
        "{e}"
    );
}

#[tokio::test]
async fn empty_calendar_through_sql() {
    // The catalog refuses such a calendar, so build the snapshot by hand.
    let manifest = Manifest {
        calendars: vec![calendar("acme", "empty", "UTC", "{}", &[])],
        ..Manifest::default()
    };
    let ctx = SessionContext::new();
    register_all(&ctx, Arc::new(CatalogSnapshot::new(&manifest, None)));
    let e = error(
        &ctx,
        "SELECT business_seconds(now(), now() + INTERVAL '1 hour', 'empty')",
    )
    .await;
    assert!(
        e.contains("business_seconds: calendar \"empty\" of tenant \"acme\" has no opening hours"),
        "{e}"
    );
}

#[tokio::test]
async fn sla_policy_for_picks_the_most_specific() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let engine = engine_with_catalog(dir.path()).await;
    let all = engine.session(None).unwrap_or_else(|e| panic!("{e}"));
    let b = rows(
        &all,
        "SELECT sla_policy_for(t, p, c) FROM (VALUES \
           ('acme', 'urgent', 'email'), \
           ('acme', 'urgent', 'chat'), \
           ('acme', 'low', 'chat'), \
           ('acme', 'low', 'sms'), \
           ('acme', 'high', 'email'), \
           ('acme', NULL, 'chat'), \
           ('acme', NULL, NULL), \
           (NULL, 'urgent', 'chat'), \
           ('beta', 'urgent', 'email'), \
           ('gamma', 'urgent', 'chat') \
         ) AS v(t, p, c)",
    )
    .await;
    let expected = [
        Some("x-urgent-email"), // exact priority + channel
        Some("p-urgent"),       // priority-only beats channel-only
        Some("c-chat"),         // channel-only beats the catch-all
        Some("default"),        // only the catch-all matches
        Some("a-high-email"),   // tie: smallest policy_id
        Some("c-chat"),         // NULL priority matches only "any priority"
        Some("default"),
        None, // NULL tenant
        None, // beta has only a chat policy
        None, // unknown tenant
    ];
    assert_eq!(
        texts(&b, 0),
        expected.map(|s| s.map(str::to_string)).to_vec()
    );
    // A scoped session does not see other tenants' policies.
    let beta = engine
        .session(Some("beta"))
        .unwrap_or_else(|e| panic!("{e}"));
    let b = rows(
        &beta,
        "SELECT sla_policy_for('acme', 'urgent', 'chat'), sla_policy_for('beta', 'low', 'chat')",
    )
    .await;
    assert_eq!(texts(&b, 0), vec![None]);
    assert_eq!(texts(&b, 1), vec![Some("beta-chat".to_string())]);
}

// ---------------------------------------------------------------- sentiment

fn sentiment(text: &str) -> f64 {
    SentimentScorer::new().score(text)
}

#[test]
fn sentiment_rules() {
    assert_eq!(sentiment(""), 0.0);
    assert_eq!(sentiment("   "), 0.0);
    assert_eq!(sentiment("my order is here"), 0.0);
    // Negation.
    assert!(sentiment("good") > 0.0);
    assert!(sentiment("not good") < 0.0, "{}", sentiment("not good"));
    assert!(sentiment("this isn't good") < 0.0);
    assert!(sentiment("not bad at all") > 0.0);
    // Intensifiers and dampeners.
    assert!(sentiment("very good") > sentiment("good"));
    assert!(sentiment("slightly good") < sentiment("good"));
    assert!(sentiment("extremely bad") < sentiment("bad"));
    // "but": the clause after it dominates.
    assert!(sentiment("The food was good, but the service was terrible") < 0.0);
    assert!(sentiment("The service was terrible, but the food was good") > 0.0);
    // ALL CAPS among lower-case words, and exclamation marks, add emphasis.
    assert!(sentiment("This is GREAT") > sentiment("This is great"));
    assert!(sentiment("This is great!!!") > sentiment("This is great"));
    assert!(sentiment("This is awful!!!") < sentiment("This is awful"));
    // Emoji and emoticons.
    assert!(sentiment("😀") > 0.0);
    assert!(sentiment("😠") < 0.0);
    // (👍 "thumbs up" has no lexicon word, so it adds nothing, as in VADER.)
    assert!(sentiment("thanks 😊") > sentiment("thanks"));
    assert!(sentiment("ok 😠") < 0.0);
    assert!(sentiment("ok :(") < 0.0);
    // Bounded.
    let loud = "GREAT GREAT GREAT amazing wonderful love best!!!!!!";
    assert!(sentiment(loud) > 0.9 && sentiment(loud) <= 1.0);
}

/// Compound scores of the reference implementation (vaderSentiment 3.3.2,
/// `polarity_scores(text)["compound"]`, rounded by it to 4 decimals) on its
/// own demo sentences that the two bug fixes do not touch.
#[test]
fn sentiment_matches_the_reference_implementation() {
    let cases = [
        ("VADER is smart, handsome, and funny.", 0.8316),
        ("VADER is smart, handsome, and funny!", 0.8439),
        ("VADER is very smart, handsome, and funny.", 0.8545),
        ("VADER is VERY SMART, handsome, and FUNNY.", 0.9227),
        ("VADER is VERY SMART, handsome, and FUNNY!!!", 0.9342),
        ("VADER is not smart, handsome, nor funny.", -0.7424),
        ("The book was good.", 0.4404),
        ("At least it isn't a horrible book.", 0.431),
        ("The book was only kind of good.", 0.3832),
        ("Today SUX!", -0.5461),
        ("Make sure you :) or :D today!", 0.8633),
        ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
        ("Not bad at all", 0.431),
    ];
    for (text, expected) in cases {
        let got = sentiment(text);
        assert!(
            (got - expected).abs() < 0.000_05 + 1e-9,
            "{text}: {got} vs {expected}"
        );
    }
}

#[tokio::test]
async fn sentiment_through_sql() {
    let ctx = SessionContext::new();
    register_all(&ctx, Arc::default());
    let b = rows(
        &ctx,
        "SELECT sentiment(t) FROM (VALUES ('not good'), (''), (NULL), ('Thank you so much!')) AS v(t)",
    )
    .await;
    let got = floats(&b, 0);
    assert!(got[0].is_some_and(|v| v < 0.0), "{got:?}");
    assert_eq!(got[1..3], [Some(0.0), None]);
    // thank 1.5 + "so" on it → 1.793, "!" +0.292: 2.085 / sqrt(2.085² + 15) = 0.4199.
    assert!(got[3].is_some_and(|v| (v - 0.4199).abs() < 1e-4), "{got:?}");
    // Utf8View and LargeUtf8 arguments are accepted as they are.
    let b = rows(
        &ctx,
        "SELECT sentiment(arrow_cast('very good', 'Utf8View')), sentiment(arrow_cast('very good', 'LargeUtf8')), sentiment(NULL)",
    )
    .await;
    assert_eq!(floats(&b, 0), floats(&b, 1));
    assert_eq!(floats(&b, 2), vec![None]);
}

/// Accuracy and correlation on the labelled set in
/// `src/functions/sentiment_eval.tsv` (written and hand-labelled by the cxdb
/// authors). A score within ±0.05 counts as neutral. Figures go to the README.
#[test]
fn sentiment_accuracy_on_the_labelled_set() {
    let eval = include_str!("../src/functions/sentiment_eval.tsv");
    let mut scorer = SentimentScorer::new();
    let (mut n, mut right) = (0usize, 0usize);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let mut confusion = [[0usize; 3]; 3];
    for line in eval
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (label, text) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        let truth: i8 = match label {
            "pos" => 1,
            "neg" => -1,
            "neu" => 0,
            other => panic!("bad label {other}"),
        };
        let score = scorer.score(text);
        let predicted: i8 = if score >= 0.05 {
            1
        } else if score <= -0.05 {
            -1
        } else {
            0
        };
        n += 1;
        right += usize::from(predicted == truth);
        confusion[(truth + 1) as usize][(predicted + 1) as usize] += 1;
        xs.push(score);
        ys.push(f64::from(truth));
    }
    let accuracy = right as f64 / n as f64;
    let r = pearson(&xs, &ys);
    println!(
        "sentiment on {n} labelled messages: accuracy {accuracy:.3}, Pearson r {r:.3}; \
         confusion (rows truth neg/neu/pos, columns predicted) {confusion:?}"
    );
    assert_eq!(n, 200);
    assert!(accuracy >= 0.75, "accuracy {accuracy:.3}");
    assert!(r >= 0.7, "Pearson r {r:.3}");
}

fn pearson(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let vx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let vy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}
