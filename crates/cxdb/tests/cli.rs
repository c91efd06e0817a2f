//! The client subcommands against a real server: `cxdb import` (NDJSON, CSV,
//! Parquet; summaries; bad rows named), `cxdb sql -c`, `cxdb demo --addr`.

use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::server::TestServer;

fn cxdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cxdb"))
        .args(args)
        .args(["--log-filter", "warn"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run cxdb: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `cxdb import` in a blocking thread so the test runtime keeps serving.
async fn import(server: &TestServer, files: &[&std::path::Path]) -> Output {
    let mut args = vec![
        "import".to_string(),
        "--addr".into(),
        server.grpc.clone(),
        "--quiet".into(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cxdb(&args)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn import_ndjson_csv_and_parquet_with_summaries() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    // NDJSON: lines 1, 3 and 5 are good; line 2 is not JSON; line 4 lacks
    // the conversation_id a message needs (rejected by the server).
    let ndjson = dir.path().join("events.ndjson");
    std::fs::write(
        &ndjson,
        [
            r#"{"tenant_id":"acme","event_id":"n1","event_time":"2026-03-02T10:00:00Z","event_type":"conversation.created","conversation_id":"c1","channel":"chat"}"#,
            r#"{"tenant_id":"acme", oops"#,
            r#"{"tenant_id":"acme","event_id":"n2","event_time":"2026-03-02T10:01:00Z","event_type":"message.created","conversation_id":"c1","actor_type":"customer","body":"hi"}"#,
            r#"{"tenant_id":"acme","event_id":"n3","event_time":"2026-03-02T10:02:00Z","event_type":"message.created","actor_type":"agent"}"#,
            r#"{"tenant_id":"acme","event_id":"n4","event_time":1772445780000000,"event_type":"csat.submitted","conversation_id":"c1","csat_score":5}"#,
        ]
        .join("\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = import(&server, &[&ndjson]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("accepted 3, duplicate 0, rejected 2"),
        "{text}"
    );
    assert!(text.contains("events.ndjson:2: "), "{text}");
    assert!(
        text.contains("events.ndjson:4: event \"n3\" field conversation_id"),
        "{text}"
    );
    // Importing the same file again adds nothing.
    let out = import(&server, &[&ndjson]).await;
    assert!(
        stdout(&out).contains("accepted 0, duplicate 3, rejected 2"),
        "{}",
        stdout(&out)
    );

    // CSV: tags as a JSON array and as a ;-list; data row 2 has a bad score.
    let csv = dir.path().join("events.csv");
    std::fs::write(
        &csv,
        "tenant_id,event_id,event_time,event_type,conversation_id,csat_score,tags\n\
         acme,v1,2026-03-02T11:00:00Z,csat.submitted,c2,4,\"[\"\"vip\"\",\"\"refund\"\"]\"\n\
         acme,v2,2026-03-02T11:01:00Z,csat.submitted,c3,five,\n\
         acme,v3,2026-03-02T11:02:00Z,csat.submitted,c4,2,late;angry\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = import(&server, &[&csv]).await;
    let text = stdout(&out);
    assert!(
        text.contains("accepted 2, duplicate 0, rejected 1"),
        "{text}"
    );
    assert!(
        text.contains("events.csv:2: column \"csat_score\": value \"five\""),
        "{text}"
    );

    // Parquet with nanosecond timestamps without a zone (cast to µs UTC).
    let parquet = dir.path().join("events.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("agent_id", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, true),
    ]));
    // 2026-03-02T12:00:00Z = 1772452800 s.
    let t0 = 1_772_452_800_000_000_000i64;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["acme"; 4])),
            Arc::new(StringArray::from(vec!["p1", "p2", "p3", "p4"])),
            Arc::new(TimestampNanosecondArray::from(vec![
                t0,
                t0 + 60_000_000_000,
                t0 + 120_000_000_000,
                t0 + 180_000_000_000,
            ])),
            Arc::new(StringArray::from(vec!["agent.status_changed"; 4])),
            Arc::new(StringArray::from(vec!["a1", "a1", "a2", "a2"])),
            // p4 has an agent status SPEC §2 does not know.
            Arc::new(StringArray::from(vec![
                "online", "away", "online", "asleep",
            ])),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = std::fs::File::create(&parquet).unwrap_or_else(|e| panic!("{e}"));
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap_or_else(|e| panic!("{e}"));
    writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
    writer.close().unwrap_or_else(|e| panic!("{e}"));
    let out = import(&server, &[&parquet]).await;
    let text = stdout(&out);
    assert!(
        text.contains("accepted 3, duplicate 0, rejected 1"),
        "{text}"
    );
    assert!(
        text.contains("events.parquet:4: event \"p4\" field status"),
        "{text}"
    );

    // 3 (NDJSON) + 2 (CSV) + 3 (Parquet), each once.
    assert_eq!(server.count("SELECT count(*) FROM events").await, 8);
    assert_eq!(
        server
            .count(
                "SELECT count(*) FROM events WHERE event_id = 'p2' \
                 AND event_time = TIMESTAMP '2026-03-02T12:01:00Z'"
            )
            .await,
        1
    );
    assert_eq!(
        server
            .count("SELECT count(*) FROM events WHERE array_has(tags, 'refund') OR array_has(tags, 'angry')")
            .await,
        2
    );

    // A column SPEC §2 does not name fails the file before anything is sent.
    let extra = dir.path().join("extra.csv");
    std::fs::write(
        &extra,
        "tenant_id,event_id,event_time,event_type,conversation_id,mood\n\
         acme,x1,2026-03-02T11:00:00Z,conversation.created,c9,happy\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = import(&server, &[&extra]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("column \"mood\" is not an events column"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.count("SELECT count(*) FROM events").await, 8);
}

#[tokio::test]
async fn sql_one_shot_formats_and_errors() {
    let server = TestServer::start().await;
    let addr = server.grpc.clone();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cxdb(&args)
        })
    };
    let sql = |q: &str, format: &str| {
        vec![
            "sql".to_string(),
            "--addr".into(),
            addr.clone(),
            "--format".into(),
            format.into(),
            "-c".into(),
            q.into(),
        ]
    };
    let q = "SELECT 'chat' AS channel, 2 AS n UNION ALL SELECT 'email', 3 ORDER BY n";
    let out = run(sql(q, "csv")).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "channel,n\nchat,2\nemail,3\n");

    // Lists (`tags`, `make_array`) as text, as the table format shows them;
    // a NULL list is an empty field.
    let lists = "SELECT 'c1' AS id, make_array('vip', 'refund') AS tags \
                 UNION ALL SELECT 'c2', CAST(NULL AS VARCHAR[]) ORDER BY id";
    let out = run(sql(lists, "csv"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "id,tags\nc1,\"[vip, refund]\"\nc2,\n");

    let out = run(sql(q, "json")).await.unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(serde_json::Value::Array(a)) => a,
            Ok(v) => vec![v],
            Err(e) => panic!("not JSON: {l}: {e}"),
        })
        .collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&out));
    assert_eq!(rows[1]["channel"], "email");
    assert_eq!(rows[1]["n"], 3);

    let out = run(sql(q, "table")).await.unwrap_or_else(|e| panic!("{e}"));
    let table = stdout(&out);
    assert!(
        table.contains("| channel | n |") && table.contains("| email   | 3 |"),
        "{table}"
    );

    let out = run(sql("SELEC 1", "table"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("InvalidArgument") && err.contains("SELEC"),
        "{err}"
    );
}

#[tokio::test]
async fn demo_backfill_is_deterministic_and_covers_every_event_type() {
    let server = TestServer::start().await;
    let addr = server.grpc.clone();
    let demo = || {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            cxdb(&[
                "demo",
                "--addr",
                &addr,
                "--seed",
                "7",
                "--backfill-days",
                "1",
                "--no-live",
            ])
        })
    };
    // Events before `cutoff` are all generated by the first run.
    let cutoff = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let before = format!("SELECT count(*) FROM events WHERE event_time < TIMESTAMP '{cutoff}'");
    let out = demo().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    let n = server.count(&before).await;
    assert!(n > 1_000, "one day of demo traffic is only {n} events");
    // Every SPEC §2 type but `custom.*`: 6 conversation.*, message.created,
    // csat.submitted, 5 bot.*, 3 automation.*, agent.status_changed, 3 order.*.
    let types = server
        .count("SELECT count(DISTINCT event_type) FROM events WHERE event_type NOT LIKE 'custom.%'")
        .await;
    assert_eq!(types, 19);
    // Same seed again: the same history, all duplicates (only events after
    // the first run's end can be new).
    let out = demo().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.count(&before).await, n);
}
