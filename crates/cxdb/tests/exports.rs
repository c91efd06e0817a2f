//! Exports for audits (issue 5 point 4) end to end: `COPY (query) TO 'file'
//! (FORMAT parquet|csv|json)` over PostgreSQL, gRPC and Flight SQL into
//! `--export-dir`, refused outside it and to read tokens; a tenant-scoped
//! analyst exporting only its tenant; `cxdb export` writing files from a
//! Flight SQL DoGet; and `audit_log` showing every export, also after a
//! restart.

use std::path::Path;
use std::process::{Command, Output};

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_flight::sql::client::FlightSqlServiceClient;
use cxdb_proto::v1::ingest_service_client::IngestServiceClient;
use cxdb_proto::v1::query_service_client::QueryServiceClient;
use cxdb_proto::v1::{SqlRequest, WriteRequest};
use futures::StreamExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tonic::Code;

use crate::flightsql::{fetch, strings};
use crate::server::{TestServer, event, with_token};

const ADMIN: &str = "bootstrap-admin-token-for-exports";

/// A token of `role` (scoped to `tenant`), made by the bootstrap admin: the
/// token and its id.
async fn create(s: &TestServer, name: &str, role: &str, tenant: Option<&str>) -> (String, String) {
    let out = s.create_token(ADMIN, name, role, tenant).await;
    let id = out.info.map(|i| i.id).unwrap_or_default();
    (out.token, id)
}

/// acme a1, a2, a3 and beta b1, b2.
async fn seed(s: &TestServer, token: Option<&str>) {
    let events = ["a1", "a2", "a3"]
        .iter()
        .map(|id| event("acme", id, "chat"))
        .chain(["b1", "b2"].iter().map(|id| event("beta", id, "email")))
        .collect();
    let out = IngestServiceClient::new(s.channel().await)
        .write(with_token(
            WriteRequest {
                events,
                atomic: true,
            },
            token,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(out.accepted, 5);
}

/// `sql` over gRPC `QueryService.Sql`; Err is the status.
async fn grpc_sql(
    s: &TestServer,
    token: Option<&str>,
    sql: &str,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let mut client = QueryServiceClient::new(s.channel().await);
    let mut stream = client
        .sql(with_token(SqlRequest { sql: sql.into() }, token))
        .await?
        .into_inner();
    let mut ipc = Vec::new();
    while let Some(msg) = stream.next().await {
        ipc.extend_from_slice(&msg?.arrow_ipc);
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .unwrap_or_else(|e| panic!("bad IPC: {e}"));
    Ok(reader
        .map(|b| b.unwrap_or_else(|e| panic!("{e}")))
        .collect())
}

/// Every row of `batches` as its columns rendered as text, joined by `|`.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let columns: Vec<Vec<String>> = (0..first.num_columns())
        .map(|i| strings(batches, i))
        .collect();
    (0..columns[0].len())
        .map(|r| {
            columns
                .iter()
                .map(|c| c[r].as_str())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

async fn pg(s: &TestServer, password: &str) -> tokio_postgres::Client {
    let (host, port) = s.pg.rsplit_once(':').unwrap_or_else(|| panic!("bad pg"));
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap_or_else(|e| panic!("{e}")))
        .user("auditor")
        .password(password)
        .dbname("cxdb")
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"));
    tokio::spawn(connection);
    client
}

/// The SQLSTATE and message of a refused statement.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> (SqlState, String) {
    let err = client
        .execute(sql, &[])
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql}: accepted"));
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    (
        err.code()
            .cloned()
            .unwrap_or_else(|| panic!("{sql}: {err}")),
        message,
    )
}

/// The `event_id` column of a Parquet file.
fn parquet_ids(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap_or_else(|e| panic!("{e}"));
        let column = batch
            .column_by_name("event_id")
            .unwrap_or_else(|| panic!("no event_id in {}", path.display()));
        let column = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)
            .unwrap_or_else(|e| panic!("{e}"));
        let column = column
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap_or_else(|| panic!("not text"));
        ids.extend(column.iter().map(|v| v.unwrap_or_default().to_string()));
    }
    ids
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn copy_to_files_over_every_protocol_scoped_refused_and_audited() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let exports = tmp.path().join("exports");
    let exports_arg = exports.display().to_string();
    let flags = [
        "--auth",
        "token",
        "--admin-token",
        ADMIN,
        "--export-dir",
        &exports_arg,
    ];
    let mut s = TestServer::start_in(tmp.path(), &flags).await;
    let exports = exports.canonicalize().unwrap_or_else(|e| panic!("{e}"));
    seed(&s, Some(ADMIN)).await;
    let (analyst_acme, analyst_acme_id) = create(&s, "acme-auditor", "analyst", Some("acme")).await;
    let (analyst_all, analyst_all_id) = create(&s, "compliance", "analyst", None).await;
    let (reader, _) = create(&s, "grafana", "read", None).await;

    // --- PostgreSQL, the bootstrap admin: Parquet, CSV, JSON.
    let admin = pg(&s, ADMIN).await;
    let n = admin
        .execute(
            "COPY (SELECT tenant_id, event_id, event_time FROM events ORDER BY event_id) \
             TO 'all.parquet' (FORMAT parquet)",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(n, 5);
    assert_eq!(
        parquet_ids(&exports.join("all.parquet")),
        ["a1", "a2", "a3", "b1", "b2"]
    );
    // Simple protocol; COPY table (columns); a subdirectory is created.
    let messages = admin
        .simple_query("COPY events (event_id, channel) TO 'q1/all.csv' (FORMAT csv)")
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(5))),
        "no COPY 5"
    );
    let csv = read(&exports.join("q1/all.csv"));
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.first(), Some(&"event_id,channel"), "{csv}");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "a1,chat",
            "a2,chat",
            "a3,chat",
            "b1,email",
            "b2,email",
            "event_id,channel"
        ]
    );
    let n = admin
        .execute(
            "COPY (SELECT event_id, tenant_id FROM events WHERE tenant_id = 'beta' ORDER BY 1) \
             TO 'beta.json' (FORMAT json)",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(n, 2);
    let json: Vec<serde_json::Value> = read(&exports.join("beta.json"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(
        json,
        [
            serde_json::json!({"event_id": "b1", "tenant_id": "beta"}),
            serde_json::json!({"event_id": "b2", "tenant_id": "beta"}),
        ]
    );

    // Outside the export location: refused, nothing written.
    let outside = tmp.path().join("escape.csv");
    for target in [
        "../escape.csv".to_string(),
        "q1/../../escape.csv".to_string(),
        outside.display().to_string(),
        format!("file://{}", outside.display()),
        "s3://bucket/escape.csv".to_string(),
    ] {
        let sql = format!("COPY (SELECT 1 AS x) TO '{target}' (FORMAT csv)");
        let (code, message) = refused(&admin, &sql).await;
        assert_eq!(
            code,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{target}: {message}"
        );
        assert!(
            message.contains("refused") && message.contains("--export-dir"),
            "{target}: {message}"
        );
    }
    assert!(!outside.exists());

    // A read token may query but not export.
    let read_pg = pg(&s, &reader).await;
    let (code, message) =
        refused(&read_pg, "COPY (SELECT 1 AS x) TO 'read.csv' (FORMAT csv)").await;
    assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "{message}");
    assert!(message.contains("a read token cannot export"), "{message}");
    assert!(!exports.join("read.csv").exists());

    // A tenant-scoped analyst exports only its tenant, whatever the SQL.
    let acme = pg(&s, &analyst_acme).await;
    let n = acme
        .execute(
            "COPY (SELECT event_id FROM events UNION ALL \
             SELECT event_id FROM events WHERE tenant_id = 'beta') TO 'acme/ids.parquet'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(n, 3);
    let mut ids = parquet_ids(&exports.join("acme/ids.parquet"));
    ids.sort();
    assert_eq!(ids, ["a1", "a2", "a3"]);

    // --- gRPC: one row (rows, path).
    let answer = grpc_sql(
        &s,
        Some(&analyst_all),
        "COPY (SELECT event_id FROM events ORDER BY 1) TO 'grpc.parquet' (FORMAT parquet)",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let grpc_path = exports.join("grpc.parquet").display().to_string();
    assert_eq!(rows(&answer), [format!("5|{grpc_path}")]);
    assert_eq!(answer[0].schema().field(0).name(), "rows");
    assert_eq!(answer[0].schema().field(1).name(), "path");
    assert_eq!(parquet_ids(&exports.join("grpc.parquet")).len(), 5);
    let err = grpc_sql(&s, Some(&reader), "COPY (SELECT 1 AS x) TO 'r.csv'")
        .await
        .err()
        .unwrap_or_else(|| panic!("a read token exported"));
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let err = grpc_sql(
        &s,
        Some(&analyst_all),
        "COPY (SELECT 1 AS x) TO '/etc/x.csv'",
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("wrote outside the export location"));
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("--export-dir"), "{}", err.message());

    // --- Flight SQL: the statement query's DoGet runs the COPY.
    let mut flight = FlightSqlServiceClient::new(s.channel().await);
    flight.set_token(analyst_acme.clone());
    let info = flight
        .execute(
            "COPY (SELECT event_id, channel FROM events) TO 'flight.csv' (FORMAT csv, HEADER false)"
                .into(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = fetch(&mut flight, info).await;
    let flight_path = exports.join("flight.csv").display().to_string();
    assert_eq!(rows(&answer), [format!("3|{flight_path}")]);
    let mut lines: Vec<String> = read(&exports.join("flight.csv"))
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(lines, ["a1,chat", "a2,chat", "a3,chat"]);

    // --- audit_log: every export, who and how, in order.
    let expected = [
        format!(
            "admin|admin|NULL|pgwire|server|parquet|5|ok|{}",
            exports.join("all.parquet").display()
        ),
        format!(
            "admin|admin|NULL|pgwire|server|csv|5|ok|{}",
            exports.join("q1/all.csv").display()
        ),
        format!(
            "admin|admin|NULL|pgwire|server|json|2|ok|{}",
            exports.join("beta.json").display()
        ),
        format!(
            "{analyst_acme_id}|analyst|acme|pgwire|server|parquet|3|ok|{}",
            exports.join("acme/ids.parquet").display()
        ),
        format!("{analyst_all_id}|analyst|NULL|grpc|server|parquet|5|ok|{grpc_path}"),
        format!("{analyst_acme_id}|analyst|acme|flight-sql|server|csv|3|ok|{flight_path}"),
    ];
    let audit_sql = "SELECT who, role, tenant_scope, protocol, written_by, format, rows, status, \
                     destination FROM audit_log ORDER BY exported_at";
    let audit = grpc_sql(&s, Some(ADMIN), audit_sql)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows(&audit), expected);
    let queries = grpc_sql(
        &s,
        Some(ADMIN),
        "SELECT query FROM audit_log ORDER BY exported_at",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let queries = strings(&queries, 0);
    assert!(
        queries[0].starts_with("COPY (SELECT tenant_id, event_id, event_time FROM events"),
        "{queries:?}"
    );
    // A scoped principal sees only its tenant's exports; over pgwire too.
    let mine = acme
        .query(
            "SELECT destination FROM audit_log ORDER BY exported_at",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mine: Vec<String> = mine.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        mine,
        [
            exports.join("acme/ids.parquet").display().to_string(),
            flight_path.clone()
        ]
    );

    // --- The audit log survives a restart.
    drop((admin, read_pg, acme, flight));
    s.terminate().await;
    let s = TestServer::start_in(tmp.path(), &flags).await;
    let audit = grpc_sql(&s, Some(ADMIN), audit_sql)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows(&audit), expected);
    let files: Vec<_> = std::fs::read_dir(tmp.path().join("data/audit"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.is_empty() && files.iter().all(|f| f.ends_with(".ndjson")),
        "{files:?}"
    );
}

fn cxdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cxdb"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cxdb: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn cxdb_export_streams_a_query_to_files_and_is_audited() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = TestServer::start_in(tmp.path(), &["--auth", "token", "--admin-token", ADMIN]).await;
    seed(&s, Some(ADMIN)).await;
    let (analyst_acme, analyst_acme_id) = create(&s, "acme-auditor", "analyst", Some("acme")).await;
    let (reader, _) = create(&s, "grafana", "read", None).await;
    // A list column too: CSV writes it as text, as `cxdb sql` does.
    let query = "SELECT event_id, tenant_id, channel, make_array(channel, 'vip') AS tags \
                 FROM events ORDER BY event_id";

    let parquet_out = tmp.path().join("out/acme.parquet");
    std::fs::create_dir_all(tmp.path().join("out")).unwrap_or_else(|e| panic!("{e}"));
    let export = |token: &str, out: &Path, format: Option<&str>| {
        let out = out.display().to_string();
        let mut args = vec![
            "export", "--addr", &s.grpc, "--token", token, "--query", query, "--out", &out,
        ];
        if let Some(f) = format {
            args.extend(["--format", f]);
        }
        cxdb(&args)
    };
    let out = export(&analyst_acme, &parquet_out, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "exported 3 rows to {} (parquet)",
            parquet_out.display()
        )),
        "{}",
        text(&out.stdout)
    );
    // Scoped: acme only.
    assert_eq!(parquet_ids(&parquet_out), ["a1", "a2", "a3"]);

    let csv_out = tmp.path().join("out/acme.txt");
    let out = export(&analyst_acme, &csv_out, Some("csv"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        read(&csv_out),
        "event_id,tenant_id,channel,tags\n\
         a1,acme,chat,\"[chat, vip]\"\n\
         a2,acme,chat,\"[chat, vip]\"\n\
         a3,acme,chat,\"[chat, vip]\"\n"
    );
    let ndjson_out = tmp.path().join("out/acme.ndjson");
    let out = export(&analyst_acme, &ndjson_out, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = read(&ndjson_out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["event_id"], "a3");
    assert_eq!(lines[2]["tags"], serde_json::json!(["chat", "vip"]));

    // A read token may not export: refused before any file is made.
    let refused_out = tmp.path().join("out/read.csv");
    let out = export(&reader, &refused_out, None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("a read token cannot export"),
        "{err}"
    );
    assert!(!refused_out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("out"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Each export is in audit_log, written by the client, with the rows
    // the server sent.
    let audit = grpc_sql(
        &s,
        Some(ADMIN),
        "SELECT who, role, tenant_scope, protocol, written_by, format, rows, status, \
         destination, query FROM audit_log ORDER BY exported_at",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<String> = [
        ("parquet", &parquet_out),
        ("csv", &csv_out),
        ("ndjson", &ndjson_out),
    ]
    .iter()
    .map(|(format, path)| {
        format!(
            "{analyst_acme_id}|analyst|acme|flight-sql|client|{format}|3|ok|{}|{query}",
            path.display()
        )
    })
    .collect();
    assert_eq!(rows(&audit), expected);
}

#[tokio::test]
async fn copy_to_a_file_needs_an_export_dir() {
    let s = TestServer::start().await;
    seed(&s, None).await;
    let client = pg(&s, "").await;
    let (code, message) = refused(&client, "COPY (SELECT 1 AS x) TO 'x.csv' (FORMAT csv)").await;
    assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "{message}");
    assert!(message.contains("start it with --export-dir"), "{message}");
    let err = grpc_sql(&s, None, "COPY (SELECT 1 AS x) TO 'x.csv'")
        .await
        .err()
        .unwrap_or_else(|| panic!("exported without --export-dir"));
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("--export-dir"), "{}", err.message());

    // `cxdb export` writes on the client, so it needs no export dir; with
    // --auth none its caller is "anonymous".
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out_path = tmp.path().join("beta.csv");
    let out = cxdb(&[
        "export",
        "--addr",
        &s.grpc,
        "--query",
        "SELECT event_id FROM events WHERE tenant_id = 'beta' ORDER BY 1",
        "--out",
        &out_path.display().to_string(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(read(&out_path), "event_id\nb1\nb2\n");
    let audit = grpc_sql(
        &s,
        None,
        "SELECT who, role, tenant_scope, rows FROM audit_log",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows(&audit), ["anonymous|admin|NULL|2"]);
    let count = audit[0]
        .column(3)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(0));
    assert_eq!(count, Some(2));
}
