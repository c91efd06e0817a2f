//! The sqllogictest scripts of `tests/slt/` (one per view or function; the
//! fixture format is in `tests/slt/README.md`). Each script runs twice on a
//! fresh storage engine loaded from its fixtures: once with every event in the
//! write buffer, and once after `persist()` and re-sending every event (all
//! duplicates), so answers must not depend on where rows live nor on re-sent
//! ids.
//!
//! `CXDB_SLT_COMPLETE=1 cargo test -p cxdb-query --test main slt::<name>`
//! rewrites a script's expected rows with the actual ones (DataFusion's
//! `--complete`); expected values are still to be worked out by hand and the
//! rewrite only used to check them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use cxdb_model::Event;
use cxdb_query::{Principal, QueryEngine, QueryExecutor, QueryLimits};
use cxdb_storage::catalog::Role;
use cxdb_storage::catalog::{BusinessCalendar, SlaPolicy};
use cxdb_storage::{Storage, StorageConfig, WriteOptions};
use futures::TryStreamExt;
use serde_json::Value;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slt");

/// A connection: every statement runs through [`QueryExecutor`] as an
/// unscoped principal, exactly as a protocol would run it.
struct Cxdb {
    engine: QueryEngine,
}

#[async_trait]
impl AsyncDB for Cxdb {
    type Error = cxdb_query::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, cxdb_query::Error> {
        let stream = self.engine.execute(&Principal::unscoped(), sql).await?;
        let schema = stream.schema();
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let mut rows = Vec::new();
        for batch in &batches {
            let columns: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| cells(c.as_ref()))
                .collect::<Result<_, _>>()?;
            for i in 0..batch.num_rows() {
                rows.push(columns.iter().map(|c| c[i].clone()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "cxdb"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// Cells as text: `NULL`, `(empty)` for an empty string, floats rounded to
/// 6 decimals without trailing zeros (`120`, `0.5`), everything else as
/// arrow displays it (timestamps `2026-01-05T09:00:00Z`, lists `[a, b]`).
fn cells(array: &dyn Array) -> Result<Vec<String>, cxdb_query::Error> {
    let err = |e: arrow::error::ArrowError| cxdb_query::Error::Internal(e.to_string());
    let options = FormatOptions::default().with_null("NULL");
    let formatter = ArrayFormatter::try_new(array, &options).map_err(err)?;
    let float = match array.data_type() {
        DataType::Float64 | DataType::Float32 | DataType::Float16 => {
            Some(arrow::compute::cast(array, &DataType::Float64).map_err(err)?)
        }
        _ => None,
    };
    let float = float
        .as_ref()
        .and_then(|f| f.as_any().downcast_ref::<arrow::array::Float64Array>());
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return Ok("NULL".to_string());
            }
            if let Some(f) = float {
                return Ok(format_float(f.value(i)));
            }
            let s = formatter.value(i).try_to_string().map_err(err)?;
            Ok(if s.is_empty() { "(empty)".into() } else { s })
        })
        .collect()
}

fn format_float(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// The events of `<name>.ndjson`: one JSON object a line (SPEC §2 columns),
/// `#` lines are comments; an `event_time` of the form `now-<n><s|m|h|d>`
/// is that long before `now` (so scripts can test windows evaluated with
/// `now()`).
fn load_events(path: &Path, now: i64) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let mut value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", at()));
        let Some(map) = value.as_object_mut() else {
            panic!("{}: not a JSON object", at());
        };
        if let Some(t) = map.get("event_time").and_then(Value::as_str)
            && let Some(ago) = t.strip_prefix("now-")
        {
            let micros = now - relative_micros(ago).unwrap_or_else(|| panic!("{}: {t}", at()));
            map.insert("event_time".into(), Value::from(micros));
        }
        let event = cxdb_model::event_from_json(i, map).unwrap_or_else(|e| panic!("{}: {e}", at()));
        events.push(event);
    }
    events
}

fn relative_micros(s: &str) -> Option<i64> {
    let unit = match s.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: i64 = s[..s.len() - 1].parse().ok()?;
    Some(n * unit * 1_000_000)
}

/// `<name>.config.json`: `{"calendars": [...], "sla_policies": [...]}` in
/// the catalog's JSON form.
fn load_config(storage: &Storage, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let list = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let calendars: Vec<BusinessCalendar> = list("calendars")
        .into_iter()
        .map(|c| serde_json::from_value(c).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect();
    let policies: Vec<SlaPolicy> = list("sla_policies")
        .into_iter()
        .map(|p| serde_json::from_value(p).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect();
    storage
        .commit_catalog(|m| {
            for c in calendars {
                m.upsert_calendar(c)?;
            }
            for p in policies {
                m.upsert_sla_policy(p)?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

async fn run_script(
    runner: &mut Runner<Cxdb, impl sqllogictest::MakeConnection<Conn = Cxdb>>,
    script: &Path,
    phase: &str,
) {
    if std::env::var_os("CXDB_SLT_COMPLETE").is_some() && phase == "buffer" {
        runner
            .update_test_file(
                script,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        return;
    }
    if let Err(e) = runner.run_file_async(script).await {
        panic!("{} ({phase}):\n{}", script.display(), e.display(true));
    }
}

/// A `# fixture: <name>` line makes a script use `<name>.ndjson` and
/// `<name>.config.json` instead of its own.
fn fixture_of(script: &Path) -> Option<String> {
    let text =
        std::fs::read_to_string(script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("# fixture:"))
        .map(|f| f.trim().to_string())
}

/// A fresh storage engine (no background tasks) in a temporary directory,
/// with the configuration of `<fixture>.config.json` when there is one, and
/// the events of `<fixture>.ndjson` (none without the file), not written.
async fn fixture_storage(fixture: &str) -> (tempfile::TempDir, Arc<Storage>, Vec<Event>) {
    let dir = PathBuf::from(DIR);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = StorageConfig::new(tmp.path());
    config.background = false;
    let storage = Storage::open(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config_file = dir.join(format!("{fixture}.config.json"));
    if config_file.exists() {
        load_config(&storage, &config_file);
    }
    let events_file = dir.join(format!("{fixture}.ndjson"));
    let now = cxdb_model::time::now_micros() / 1_000_000 * 1_000_000;
    let events = if events_file.exists() {
        load_events(&events_file, now)
    } else {
        Vec::new()
    };
    (tmp, storage, events)
}

async fn run(name: &str) {
    let dir = PathBuf::from(DIR);
    let script = dir.join(format!("{name}.slt"));
    let fixture = fixture_of(&script).unwrap_or_else(|| name.to_string());
    let (_tmp, storage, events) = fixture_storage(&fixture).await;
    let first = storage
        .write(events.clone(), WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        first.rejected.is_empty(),
        "{fixture}.ndjson: rejected {:?}",
        first.rejected
    );

    let engine = QueryEngine::new(Arc::clone(&storage), QueryLimits::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let connect = move || {
        let engine = engine.clone();
        async move { Ok::<_, cxdb_query::Error>(Cxdb { engine }) }
    };
    let mut runner = Runner::new(connect.clone());
    run_script(&mut runner, &script, "buffer").await;

    storage.persist().await.unwrap_or_else(|e| panic!("{e}"));
    let again = storage
        .write(events, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.accepted, 0, "re-sent events were accepted again");
    let mut runner = Runner::new(connect);
    run_script(&mut runner, &script, "persisted").await;
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                run(stringify!($name)).await;
            }
        )*

        /// Every `.slt` file has a test above.
        #[test]
        fn every_script_runs() {
            let listed = [$(stringify!($name)),*];
            let mut missing = Vec::new();
            for entry in std::fs::read_dir(DIR).unwrap_or_else(|e| panic!("{DIR}: {e}")) {
                let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
                if path.extension().is_some_and(|e| e == "slt") {
                    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                    if !listed.contains(&stem.as_str()) {
                        missing.push(stem);
                    }
                }
            }
            assert!(missing.is_empty(), "add to scripts!: {missing:?}");
        }
    };
}

scripts!(
    abandoned_conversations,
    agent_activity,
    agent_concurrency,
    agent_status_time,
    automation_runs,
    bot_performance,
    bot_sessions,
    bottlenecks,
    channel_load,
    collisions,
    commerce_tickets,
    conversations,
    csat,
    handoffs,
    journey_id,
    journey_steps,
    journeys,
    message_sentiment,
    queue_status,
    replies,
    sla_status,
    traffic,
);

/// What the views cost a session. Creating a session registers nothing per
/// view (they are planned on first use), so it must stay cheap however many
/// views there are; planning a view is paid by the queries that read it.
/// Prints the figures (`--nocapture`) quoted in the README.
#[tokio::test]
async fn views_cost_nothing_until_used() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = StorageConfig::new(tmp.path());
    config.background = false;
    let storage = Storage::open(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let engine =
        QueryEngine::new(storage, QueryLimits::default()).unwrap_or_else(|e| panic!("{e}"));

    let rounds = 200;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        let ctx = engine.session(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(ctx.table_exist("conversations").unwrap_or(false));
    }
    let per_session = start.elapsed() / rounds;

    // Planning each view alone in a fresh session: what registering them all
    // eagerly would cost every query.
    let mut total = std::time::Duration::ZERO;
    for view in cxdb_query::PREDEFINED_VIEWS {
        let ctx = engine.session(None).unwrap_or_else(|e| panic!("{e}"));
        let start = std::time::Instant::now();
        let plan = ctx
            .state()
            .create_logical_plan(&format!("SELECT * FROM {}", view.name))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", view.name));
        let took = start.elapsed();
        // Every instant is Timestamp(µs, "UTC") like events.event_time, whatever
        // now() or range() (nanoseconds) produced inside the view.
        for field in plan.schema().fields() {
            if let DataType::Timestamp(unit, tz) = field.data_type() {
                assert!(
                    *unit == arrow::datatypes::TimeUnit::Microsecond
                        && tz.as_deref() == Some("UTC"),
                    "{}.{} is {}",
                    view.name,
                    field.name(),
                    field.data_type()
                );
            }
        }
        eprintln!(
            "plan {:<24} {:>8.2} ms",
            view.name,
            took.as_secs_f64() * 1e3
        );
        total += took;
    }
    eprintln!(
        "session creation {:.1} µs; planning all {} views {:.1} ms",
        per_session.as_secs_f64() * 1e6,
        cxdb_query::PREDEFINED_VIEWS.len(),
        total.as_secs_f64() * 1e3
    );
    // Generous (debug build, shared machine): a per-view cost at session
    // creation would show as milliseconds.
    assert!(
        per_session < std::time::Duration::from_millis(5),
        "{per_session:?} per session"
    );
}

/// Views read `events` through the session's tenant scope, so a scoped
/// principal sees only its tenant's rows in every view, whatever the SQL.
#[tokio::test]
async fn views_inherit_the_tenant_scope() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = StorageConfig::new(tmp.path());
    config.background = false;
    let storage = Storage::open(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = cxdb_model::time::now_micros();
    let events = load_events(&PathBuf::from(DIR).join("conversations.ndjson"), now);
    storage
        .write(events, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let engine =
        QueryEngine::new(storage, QueryLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    let sql = "SELECT count(*), count(DISTINCT tenant_id) FROM conversations \
               WHERE tenant_id IN ('acme', 'beta')";
    // conversations.ndjson: acme has 10 conversations, beta 1.
    for (tenant, expected) in [
        (None, "11 2"),
        (Some("beta"), "1 1"),
        (Some("acme"), "10 1"),
    ] {
        let principal = Principal::new(Role::Read, tenant.map(str::to_string), None);
        let stream = engine
            .execute(&principal, sql)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let batches: Vec<RecordBatch> =
            stream.try_collect().await.unwrap_or_else(|e| panic!("{e}"));
        let row: Vec<String> = batches[0]
            .columns()
            .iter()
            .map(|c| cells(c.as_ref()).unwrap_or_else(|e| panic!("{e}"))[0].clone())
            .collect();
        assert_eq!(row.join(" "), expected, "scope {tenant:?}");
    }
}

/// The rows of `sql` through [`Cxdb`], as the scripts see them.
async fn rows_of(engine: &QueryEngine, sql: &str) -> Vec<Vec<String>> {
    let mut db = Cxdb {
        engine: engine.clone(),
    };
    match db.run(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) {
        DBOutput::Rows { rows, .. } => rows,
        _ => panic!("{sql}: not a query"),
    }
}

/// The rows of `view` (sorted) read through `engine`, after checking that
/// `fresh` reads the same.
async fn same_rows(
    engine: &QueryEngine,
    fresh: &QueryEngine,
    view: &str,
    context: &str,
) -> Vec<Vec<String>> {
    let sql = format!("SELECT * FROM {view}");
    let mut maintained = rows_of(engine, &sql).await;
    let mut computed = rows_of(fresh, &sql).await;
    maintained.sort();
    computed.sort();
    assert_eq!(maintained, computed, "{context}");
    maintained
}

/// The maintained views (`conversation_state`, `replies`;
/// src/materialized.rs) are kept up to date incrementally: after every
/// write, the rows an engine that has seen each write reads equal those of
/// a fresh engine that computes everything from the events. The fixtures'
/// events arrive in chunks of four, last chunk first, so conversations gain
/// earlier events later (late arrivals move created_at, first replies,
/// reply numbers and the status timeline), part of them in Parquet (a
/// persist after the third chunk), part in the buffer; `replies` is read
/// first, so its update has to bring `conversation_state` up to date first.
/// Then an SLA policy is added, which must re-assign policies everywhere.
#[tokio::test]
async fn maintained_views_equal_a_full_computation() {
    const VIEWS: [&str; 2] = ["replies", "conversation_state"];
    let mut applied = false;
    for fixture in [
        "conversations",
        "sla_status",
        "replies",
        "handoffs",
        "bot_sessions",
        "csat",
        "journeys",
    ] {
        let (_tmp, storage, events) = fixture_storage(fixture).await;
        assert!(!events.is_empty(), "{fixture}: no events");
        let engine = QueryEngine::new(Arc::clone(&storage), QueryLimits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let fresh = || {
            QueryEngine::new(Arc::clone(&storage), QueryLimits::default())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let mut chunks: Vec<Vec<Event>> = events.chunks(4).map(<[Event]>::to_vec).collect();
        chunks.reverse();
        let mut seen = 0;
        let chunks_written = chunks.len() as u64;
        for (i, chunk) in chunks.into_iter().enumerate() {
            storage
                .write(chunk, WriteOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if i == 2 {
                storage.persist().await.unwrap_or_else(|e| panic!("{e}"));
            }
            for view in VIEWS {
                let context = format!("{fixture}: {view} after chunk {i}");
                let maintained = same_rows(&engine, &fresh(), view, &context).await;
                if view == "conversation_state" {
                    seen = maintained.len();
                }
            }
        }
        assert!(seen > 0, "{fixture}: no conversations");
        // One full computation (the first read), then only updates.
        for view in VIEWS {
            let stats = engine.maintenance_stats(view).unwrap_or_default();
            assert_eq!(
                (stats.rebuilds, stats.updates),
                (1, chunks_written - 1),
                "{fixture}: {view}"
            );
            assert!(
                stats.recomputed >= stats.updates,
                "{fixture}: {view}: {stats:?}"
            );
        }

        let tenant = events[0].tenant_id.clone();
        storage
            .commit_catalog(|m| {
                m.upsert_sla_policy(SlaPolicy {
                    tenant_id: tenant.clone(),
                    policy_id: "zz-catch-all".into(),
                    priority: None,
                    channel: None,
                    calendar_id: None,
                    first_response_s: Some(60),
                    next_response_s: None,
                    resolution_s: Some(3600),
                })
            })
            .unwrap_or_else(|e| panic!("{e}"));
        for view in VIEWS {
            let context = format!("{fixture}: {view} with a new policy");
            let maintained = same_rows(&engine, &fresh(), view, &context).await;
            assert_eq!(
                engine.maintenance_stats(view).unwrap_or_default().rebuilds,
                2,
                "{fixture}: {view}: a new policy rebuilds"
            );
            // (Where every conversation has a more specific policy, it
            // applies nowhere, and nothing may change.)
            applied |= maintained
                .iter()
                .any(|r| r.contains(&"zz-catch-all".to_string()));
        }
    }
    assert!(applied, "the new policy applied in no fixture");
}
