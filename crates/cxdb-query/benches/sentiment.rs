//! Throughput of `sentiment(text)`, single-threaded: messages per second on
//! short support messages (the labelled evaluation set, 200 messages of
//! 20–90 bytes), once through the scorer directly and once through the SQL
//! function over Arrow batches of 8,192 rows. Also the cost of one
//! `business_seconds` call, which grows with the days the interval spans.
//!
//! `cargo bench -p cxdb-query --bench sentiment`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cxdb_query::functions::{BusinessClock, SentimentScorer};
use cxdb_storage::catalog::{BusinessCalendar, WeeklyHours};
use datafusion::prelude::{SessionConfig, SessionContext};

const EVAL: &str = include_str!("../src/functions/sentiment_eval.tsv");
const MIN_TIME: Duration = Duration::from_secs(2);

fn messages() -> Vec<&'static str> {
    EVAL.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t').map(|(_, text)| text))
        .collect()
}

/// Runs `f` (which scores `per_call` messages) until `MIN_TIME` has passed;
/// returns messages per second.
fn rate(per_call: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0usize;
    while start.elapsed() < MIN_TIME {
        f();
        calls += 1;
    }
    (calls * per_call) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let texts = messages();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    println!(
        "{} messages, {:.0} bytes on average",
        texts.len(),
        bytes as f64 / texts.len() as f64
    );

    let mut scorer = SentimentScorer::new();
    let direct = rate(texts.len(), || {
        for t in &texts {
            black_box(scorer.score(black_box(t)));
        }
    });
    println!("scorer: {:.2} M messages/s (one core)", direct / 1e6);

    let rows = 8192;
    let column: StringArray = texts.iter().cycle().take(rows).map(Some).collect();
    let schema = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, true)]));
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    cxdb_query::functions::register_all(&ctx, Arc::default());
    ctx.register_batch("m", batch)
        .unwrap_or_else(|e| panic!("{e}"));
    let batches = 16;
    let sql = format!(
        "SELECT sum(sentiment(body)) FROM ({})",
        vec!["SELECT body FROM m"; batches].join(" UNION ALL ")
    );
    let df = runtime
        .block_on(ctx.sql(&sql))
        .unwrap_or_else(|e| panic!("{e}"));
    let via_sql = rate(rows * batches, || {
        let out = runtime
            .block_on(df.clone().collect())
            .unwrap_or_else(|e| panic!("{e}"));
        black_box(out);
    });
    println!(
        "SQL sentiment(body), {batches} batches of {rows} rows: {:.2} M messages/s",
        via_sql / 1e6
    );

    business_seconds_cost();
}

/// Calls per second of `business_seconds` on a Mon–Fri 09:00–17:00
/// America/New_York calendar, for intervals of 1 and 30 days.
fn business_seconds_cost() {
    let hours = WeeklyHours::parse_json(
        r#"{"mon":[["09:00","17:00"]],"tue":[["09:00","17:00"]],"wed":[["09:00","17:00"]],"thu":[["09:00","17:00"]],"fri":[["09:00","17:00"]]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let calendar = BusinessCalendar {
        tenant_id: "acme".into(),
        calendar_id: "support".into(),
        timezone: "America/New_York".into(),
        weekly_hours: hours,
        holidays: Vec::new(),
    };
    let clock = BusinessClock::new(&calendar).unwrap_or_else(|e| panic!("{e}"));
    // 2026-01-01T00:00:00Z, starts spread over a year in steps of 7h 13m.
    let day0: i64 = 1_767_225_600_000_000;
    let step: i64 = (7 * 60 + 13) * 60_000_000;
    for days in [1i64, 30] {
        let span = days * 86_400_000_000;
        let calls = 1000;
        let per_second = rate(calls, || {
            for k in 0..calls as i64 {
                let a = day0 + (k * step) % (365 * 86_400_000_000);
                black_box(clock.micros(black_box(a), a + span).unwrap_or_default());
            }
        });
        println!(
            "business_seconds over {days} day(s): {:.2} M calls/s",
            per_second / 1e6
        );
    }
}
