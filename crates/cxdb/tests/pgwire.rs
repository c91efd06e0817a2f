//! The PostgreSQL wire protocol end to end: the real server, tokio-postgres
//! (simple and extended protocol), and the real `psql`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cxdb_proto::v1::{Event, WriteRequest};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::server::*;

async fn connect(s: &TestServer) -> Client {
    let (host, port) =
        s.pg.rsplit_once(':')
            .unwrap_or_else(|| panic!("bad pg address {}", s.pg));
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap_or_else(|e| panic!("{e}")))
        .user("analyst")
        .dbname("cxdb")
        .application_name("cxdb-tests")
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", s.pg));
    tokio::spawn(connection);
    client
}

/// The rows of every statement of a simple query, as text.
async fn simple(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The one value of a one-row, one-column simple query.
async fn value(c: &Client, sql: &str) -> String {
    let rows = simple(c, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone().unwrap_or_else(|| panic!("{sql}: NULL"))
}

/// The SQLSTATE of a failing simple query.
async fn sqlstate(c: &Client, sql: &str) -> SqlState {
    let e = c
        .simple_query(sql)
        .await
        .map(|_| ())
        .err()
        .unwrap_or_else(|| panic!("{sql} succeeded"));
    e.code()
        .cloned()
        .unwrap_or_else(|| panic!("{sql}: no SQLSTATE in {e:?}"))
}

/// The SQLSTATE of a failing extended-protocol query.
async fn sqlstate_extended(c: &Client, sql: &str) -> SqlState {
    let e = c
        .query(sql, &[])
        .await
        .map(|_| ())
        .err()
        .unwrap_or_else(|| panic!("{sql} succeeded"));
    e.code()
        .cloned()
        .unwrap_or_else(|| panic!("{sql}: no SQLSTATE in {e:?}"))
}

fn at(minute: i64, event_type: &str, id: &str, channel: &str) -> Event {
    Event {
        event_time_us: DAY0 + minute * 60_000_000,
        event_type: event_type.into(),
        ..event("acme", id, channel)
    }
}

/// acme: 3 conversations (chat at 00:01 and 01:10, email at 00:30) and one
/// message; globex: one chat conversation.
async fn ingest_sample(s: &TestServer) {
    let mut message = at(2, "message.created", "m1", "chat");
    message.conversation_id = Some("c-a1".into());
    message.actor_type = Some("customer".into());
    message.body = Some("hello, where is my order?".into());
    let events = vec![
        at(1, "conversation.created", "a1", "chat"),
        at(30, "conversation.created", "a2", "email"),
        at(70, "conversation.created", "a3", "chat"),
        message,
        Event {
            tenant_id: "globex".into(),
            ..at(5, "conversation.created", "g1", "chat")
        },
    ];
    let resp = s
        .ingest()
        .await
        .write(WriteRequest {
            events,
            atomic: true,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(resp.accepted, 5, "{resp:?}");
}

#[tokio::test]
async fn pgwire_simple_query_protocol() {
    let s = TestServer::start().await;
    let c = connect(&s).await;
    assert_eq!(
        simple(&c, "SELECT 1 AS one, 'cx' AS name, NULL::text AS nothing").await,
        vec![vec![Some("1".into()), Some("cx".into()), None]]
    );
    // Two statements in one Query message: two results, in order.
    assert_eq!(
        simple(&c, "SELECT 1; SELECT 'two'").await,
        vec![vec![Some("1".into())], vec![Some("two".into())]]
    );
    let messages = c
        .simple_query("SELECT 7 AS seven")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let columns: Vec<&str> = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::RowDescription(cols) => {
                Some(cols.iter().map(|c| c.name()).collect())
            }
            _ => None,
        })
        .unwrap_or_default();
    assert_eq!(columns, vec!["seven"]);
    // An empty query is answered, not an error.
    assert!(simple(&c, "").await.is_empty());
}

#[tokio::test]
async fn pgwire_extended_protocol_typed_parameters() {
    let s = TestServer::start().await;
    ingest_sample(&s).await;
    let c = connect(&s).await;

    // Types given in Parse: text, int4, timestamptz, all sent in binary.
    let stmt = c
        .prepare_typed(
            "SELECT $1 || '!' AS t, $2 + 1 AS i, $3 AS ts",
            &[Type::TEXT, Type::INT4, Type::TIMESTAMPTZ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ts = UNIX_EPOCH + Duration::from_micros(1_767_258_000_123_456); // 2026-01-01T09:00:00.123456Z
    let row = c
        .query_one(&stmt, &[&"hi", &41i32, &ts])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row.get::<_, String>("t"), "hi!");
    assert_eq!(row.get::<_, i64>("i"), 42);
    assert_eq!(row.get::<_, SystemTime>("ts"), ts);

    // No types in Parse: the server infers them from the columns compared
    // with and describes them (ParameterDescription).
    let stmt = c
        .prepare(
            "SELECT count(*) AS n FROM events \
             WHERE tenant_id = $1 AND event_time >= $2 AND event_time < $3",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stmt.params(),
        &[Type::TEXT, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ]
    );
    let from = UNIX_EPOCH + Duration::from_micros(DAY0 as u64);
    let to = from + Duration::from_secs(3600);
    let n: i64 = c
        .query_one(&stmt, &[&"acme", &from, &to])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get("n");
    assert_eq!(
        n, 3,
        "acme: two conversations and a message in the first hour"
    );
    let n: i64 = c
        .query_one(&stmt, &[&"globex", &from, &to])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get("n");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn pgwire_timestamptz_round_trip() {
    let s = TestServer::start().await;
    let c = connect(&s).await;
    // Binary both ways, microsecond precision kept.
    let stmt = c
        .prepare_typed("SELECT $1 AS ts", &[Type::TIMESTAMPTZ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stmt.columns()[0].type_(), &Type::TIMESTAMPTZ);
    for micros in [0u64, 1_767_225_600_000_001, 1_767_258_000_123_456] {
        let ts = UNIX_EPOCH + Duration::from_micros(micros);
        let back: SystemTime = c
            .query_one(&stmt, &[&ts])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .get("ts");
        assert_eq!(back, ts);
    }
    // Text, as the simple protocol sends it.
    assert_eq!(
        value(
            &c,
            "SELECT CAST('2026-01-01T09:00:00.123456Z' AS TIMESTAMP WITH TIME ZONE)"
        )
        .await,
        "2026-01-01 09:00:00.123456+00"
    );
}

#[tokio::test]
async fn pgwire_queries_see_ingested_events() {
    let s = TestServer::start().await;
    ingest_sample(&s).await;
    let c = connect(&s).await;
    assert_eq!(
        simple(
            &c,
            "SELECT tenant_id, channel, count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2"
        )
        .await,
        vec![
            vec![Some("acme".into()), Some("chat".into()), Some("3".into())],
            vec![Some("acme".into()), Some("email".into()), Some("1".into())],
            vec![Some("globex".into()), Some("chat".into()), Some("1".into())],
        ]
    );
    // Grafana's time series shape: date_trunc, $__timeFilter expanded.
    let rows = c
        .query(
            "SELECT date_trunc('hour', event_time) AS time, count(*) AS conversations \
             FROM events \
             WHERE event_time BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T02:00:00Z' \
               AND event_type = 'conversation.created' AND tenant_id = 'acme' \
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let series: Vec<(SystemTime, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let hour =
        |h: u64| UNIX_EPOCH + Duration::from_micros(DAY0 as u64) + Duration::from_secs(h * 3600);
    assert_eq!(series, vec![(hour(0), 2), (hour(1), 1)]);
    // Text columns and NULLs come through.
    let row = c
        .query_one(
            "SELECT body, agent_id FROM events WHERE event_id = $1",
            &[&"m1"],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("hello, where is my order?")
    );
    assert_eq!(row.get::<_, Option<String>>(1), None);
}

/// Startup and browsing queries of BI tools, verbatim (BI-COMPAT.md); each
/// must run over the simple and the extended protocol.
const CLIENT_QUERIES: &[(&str, &str)] = &[
    ("psql", "SELECT pg_catalog.version()"),
    (
        "psql \\dt",
        "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\",\n  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as \"Type\",\n  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\nWHERE c.relkind IN ('r','p','')\n      AND n.nspname <> 'pg_catalog'\n      AND n.nspname !~ '^pg_toast'\n      AND n.nspname <> 'information_schema'\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 1,2;",
    ),
    (
        "psql \\d events",
        "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relname OPERATOR(pg_catalog.~) '^(events)$' COLLATE pg_catalog.default\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 2, 3;",
    ),
    ("DBeaver", "SET extra_float_digits = 3"),
    (
        "DBeaver",
        "SET application_name = 'DBeaver 25.1.5 - Main <cxdb>'",
    ),
    ("DBeaver", "SELECT current_schema(),session_user"),
    (
        "DBeaver",
        "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass ORDER BY nspname",
    ),
    ("DBeaver", "SHOW search_path"),
    (
        "DBeaver",
        "SELECT * FROM pg_catalog.pg_settings where name='standard_conforming_strings'",
    ),
    ("DBeaver", "SELECT version()"),
    ("pgjdbc", "SELECT n.oid, n.* FROM pg_namespace n"),
    ("Metabase", "SET extra_float_digits = 2"),
    ("Metabase", "SHOW TRANSACTION ISOLATION LEVEL"),
    (
        "Metabase",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
    ),
    (
        "Metabase",
        r#"SELECT nspname AS "TABLE_SCHEM", current_database() AS "TABLE_CATALOG" FROM pg_catalog.pg_namespace  WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_'  OR nspname = (pg_catalog.current_schemas(true))[1]) AND (nspname !~ '^pg_toast_temp_'  OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_'))  ORDER BY "TABLE_SCHEM""#,
    ),
    (
        "Metabase",
        r#"SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = '0') AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ '^pg_') AND ("n"."nspname" <> 'information_schema') AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ('public')) ORDER BY "type" ASC, "schema" ASC, "name" ASC"#,
    ),
    ("Metabase", "show timezone"),
    (
        "Grafana",
        "SELECT current_setting('server_version_num')::int / 100 AS version",
    ),
    (
        "Grafana",
        r#"SELECT quote_ident(column_name) AS "column", data_type AS "type" FROM information_schema.columns WHERE quote_ident(table_name) = 'events'"#,
    ),
    ("SQLAlchemy", "select pg_catalog.version()"),
    ("SQLAlchemy", "select current_schema()"),
    (
        "SQLAlchemy",
        "SELECT pg_catalog.pg_attribute.attname AS name, pg_catalog.format_type(pg_catalog.pg_attribute.atttypid, pg_catalog.pg_attribute.atttypmod) AS format_type, pg_catalog.pg_attribute.attnotnull AS not_null FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace JOIN pg_catalog.pg_attribute ON pg_catalog.pg_class.oid = pg_catalog.pg_attribute.attrelid WHERE pg_catalog.pg_class.relname = 'events' AND pg_catalog.pg_namespace.nspname = 'public' AND pg_catalog.pg_attribute.attnum > 0 AND NOT pg_catalog.pg_attribute.attisdropped ORDER BY pg_catalog.pg_attribute.attnum",
    ),
    ("Npgsql", "DISCARD ALL"),
    ("any", "BEGIN"),
    ("any", "COMMIT"),
    ("any", "ROLLBACK"),
    ("any", "RESET extra_float_digits"),
    (
        "information_schema",
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'events' ORDER BY ordinal_position",
    ),
];

#[tokio::test]
async fn pgwire_bi_client_queries_over_both_protocols() {
    let s = TestServer::start().await;
    ingest_sample(&s).await;
    let c = connect(&s).await;
    for (client, sql) in CLIENT_QUERIES {
        c.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{client}, simple protocol: {sql}\n{e:?}"));
        c.query(*sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{client}, extended protocol: {sql}\n{e:?}"));
    }

    // What the answers say.
    let version = value(&c, "SELECT version()").await;
    assert!(
        version.starts_with(&format!(
            "PostgreSQL 16.0 (cxdb {}) on ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    assert_eq!(value(&c, "select pg_catalog.version()").await, version);
    let extended: String = c
        .query_one("SELECT version()", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get("version");
    assert_eq!(extended, version);
    assert_eq!(
        value(&c, "SHOW server_version").await,
        format!("16.0 (cxdb {})", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(value(&c, "SHOW server_version_num").await, "160000");
    assert_eq!(
        value(
            &c,
            "SELECT current_setting('server_version_num')::int / 100"
        )
        .await,
        "1600"
    );
    assert_eq!(value(&c, "SELECT current_schema()").await, "public");
    assert_eq!(value(&c, "SELECT current_database()").await, "cxdb");
    assert_eq!(value(&c, "SHOW search_path").await, "public");
    c.simple_query("SET extra_float_digits = 3")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&c, "SHOW extra_float_digits").await, "3");
    assert_eq!(
        value(
            &c,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'public'"
        )
        .await,
        "1"
    );
    // User tables in pg_class, their columns in pg_attribute with pg_type
    // names, consistent oids, and the same columns in information_schema.
    let tables: Vec<String> = simple(
        &c,
        "SELECT c.relname FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
    )
    .await
    .into_iter()
    .filter_map(|r| r[0].clone())
    .collect();
    assert_eq!(
        tables,
        ["audit_log", "business_calendars", "events", "sla_policies"]
    );
    let columns = simple(
        &c,
        "SELECT a.attname, t.typname FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         WHERE c.relname = 'events' AND a.attnum > 0 ORDER BY a.attnum",
    )
    .await;
    assert_eq!(columns.len(), 31, "{columns:?}");
    assert_eq!(
        columns[0],
        vec![Some("tenant_id".into()), Some("text".into())]
    );
    assert_eq!(
        columns[2],
        vec![Some("event_time".into()), Some("timestamptz".into())]
    );
    assert_eq!(
        columns[19],
        vec![Some("csat_score".into()), Some("int4".into())]
    );
    let info = simple(
        &c,
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = 'events' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(info.len(), 31);
    assert_eq!(info[2][0].as_deref(), Some("event_time"));
    // Transactions are accepted (and mean nothing: SQL is read-only).
    assert_eq!(
        simple(&c, "BEGIN; SELECT 'in' AS t; COMMIT").await,
        vec![vec![Some("in".to_string())]]
    );
    let status = c
        .simple_query("BEGIN; SELECT 1 AS one; ROLLBACK")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let completions: Vec<u64> = status
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(completions, [0, 1, 0], "BEGIN, SELECT (1 row), ROLLBACK");
}

#[tokio::test]
async fn pgwire_errors_carry_sqlstates() {
    let s = TestServer::start().await;
    let c = connect(&s).await;
    let cases: &[(&str, SqlState)] = &[
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT * FROM no_such_table", SqlState::UNDEFINED_TABLE),
        (
            "SELECT no_such_column FROM events",
            SqlState::UNDEFINED_COLUMN,
        ),
        ("SELECT no_such_function(1)", SqlState::UNDEFINED_FUNCTION),
        (
            "SELECT current_setting('no_such_setting')",
            SqlState::UNDEFINED_OBJECT,
        ),
        ("SELECT 1 / 0", SqlState::DIVISION_BY_ZERO),
        // Read-only: writes are refused before anything runs.
        (
            "CREATE TABLE t AS SELECT 1 AS x",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
        // Views are allowed (tests `views::*`); schemas are not.
        ("CREATE SCHEMA extra", SqlState::INSUFFICIENT_PRIVILEGE),
        (
            "INSERT INTO events (tenant_id) VALUES ('x')",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
        ("DROP TABLE events", SqlState::INSUFFICIENT_PRIVILEGE),
        (
            "SELECT 1 AS x INTO copied",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
        ("COPY events FROM STDIN", SqlState::INSUFFICIENT_PRIVILEGE),
        (
            "COPY (SELECT 1) TO '/tmp/cxdb-copy.csv'",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(&sqlstate(&c, sql).await, expected, "simple protocol: {sql}");
        if !sql.starts_with("COPY") {
            assert_eq!(
                &sqlstate_extended(&c, sql).await,
                expected,
                "extended protocol: {sql}"
            );
        }
    }
    // The refused DROP changed nothing, and the connection still works.
    assert_eq!(value(&c, "SELECT count(*) FROM events").await, "0");
    assert!(!std::path::Path::new("/tmp/cxdb-copy.csv").exists());

    // Inside a failed transaction block only its end is accepted.
    c.simple_query("BEGIN")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sqlstate(&c, "SELECT * FROM nope").await,
        SqlState::UNDEFINED_TABLE
    );
    assert_eq!(
        sqlstate(&c, "SELECT 1").await,
        SqlState::IN_FAILED_SQL_TRANSACTION
    );
    c.simple_query("ROLLBACK")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&c, "SELECT 1").await, "1");
}

/// Long enough that it is still running when interrupted: a sum over ten
/// billion generated rows.
const LONG_QUERY: &str = "SELECT sum(value) FROM generate_series(1, 10000000000)";

#[tokio::test]
async fn pgwire_cancel_request_stops_a_running_query() {
    let s = TestServer::start().await;
    let c = connect(&s).await;
    let cancel = c.cancel_token();
    let started = Instant::now();
    let query = c.simple_query(LONG_QUERY);
    tokio::pin!(query);
    // A cancel before the query starts is ignored (as in PostgreSQL), so
    // send one every 50 ms until the query ends.
    let result = loop {
        tokio::select! {
            r = &mut query => break r,
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                assert!(started.elapsed() < Duration::from_secs(30), "the cancel was not honoured");
                cancel.cancel_query(NoTls).await.unwrap_or_else(|e| panic!("{e}"));
            }
        }
    };
    let e = result.err().unwrap_or_else(|| panic!("the query finished"));
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    // The connection goes on.
    assert_eq!(value(&c, "SELECT 2").await, "2");
}

#[tokio::test]
async fn pgwire_statement_timeout_stops_a_running_query() {
    let s = TestServer::start().await;
    let c = connect(&s).await;
    c.simple_query("SET statement_timeout = '300ms'")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let e = c
        .simple_query(LONG_QUERY)
        .await
        .err()
        .unwrap_or_else(|| panic!("the query finished"));
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
    let e = c
        .query(LONG_QUERY, &[])
        .await
        .err()
        .unwrap_or_else(|| panic!("the query finished"));
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    c.simple_query("SET statement_timeout = 0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&c, "SELECT 3").await, "3");
}

#[tokio::test]
async fn pgwire_sigterm_closes_sessions_and_exits() {
    let mut s = TestServer::start().await;
    let c = connect(&s).await;
    assert_eq!(value(&c, "SELECT 1").await, "1");
    let status = s
        .terminate()
        .await
        .unwrap_or_else(|| panic!("no exit status"));
    assert!(status.success(), "exit status {status:?}");
    assert!(c.simple_query("SELECT 1").await.is_err());
}

/// Runs `psql` with `args`; `None` (with a note) when psql is not installed.
fn psql(s: &TestServer, args: &[&str]) -> Option<String> {
    let (host, port) = s.pg.rsplit_once(':')?;
    let out = match std::process::Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-p",
            port,
            "-U",
            "analyst",
            "-d",
            "cxdb",
        ])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("psql is not installed: skipping the psql test");
            return None;
        }
        Err(e) => panic!("cannot run psql: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "psql {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

#[tokio::test]
async fn pgwire_psql_meta_commands() {
    let s = TestServer::start().await;
    ingest_sample(&s).await;
    let Some(tables) = psql(&s, &["-c", "\\dt"]) else {
        return;
    };
    assert!(
        tables.contains("public | events             | table"),
        "{tables}"
    );
    assert!(
        tables.contains("public | sla_policies       | table"),
        "{tables}"
    );

    let events = psql(&s, &["-c", "\\d events"]).unwrap_or_default();
    assert!(events.contains("Table \"public.events\""), "{events}");
    assert!(
        events.contains(" event_time      | timestamp with time zone |           | not null |"),
        "{events}"
    );
    assert!(events.contains(" tags            | text[]"), "{events}");

    let databases = psql(&s, &["-c", "\\l"]).unwrap_or_default();
    assert!(databases.contains("cxdb"), "{databases}");

    let expanded = psql(
        &s,
        &[
            "-c",
            "\\x",
            "-c",
            "SELECT event_id, channel FROM events WHERE event_id = 'a2'",
        ],
    )
    .unwrap_or_default();
    assert!(expanded.contains("-[ RECORD 1 ]"), "{expanded}");
    assert!(expanded.contains("event_id | a2"), "{expanded}");
    assert!(expanded.contains("channel  | email"), "{expanded}");

    let csv = psql(
        &s,
        &[
            "-c",
            "\\copy (SELECT event_id, channel, body FROM events WHERE tenant_id = 'acme' ORDER BY event_id) to stdout csv header",
        ],
    )
    .unwrap_or_default();
    assert_eq!(
        csv,
        "event_id,channel,body\na1,chat,\na2,email,\na3,chat,\nm1,chat,\"hello, where is my order?\"\n"
    );
    let text =
        psql(&s, &["-c", "\\copy events (event_id, agent_id) to stdout"]).unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["a1\t\\N", "a2\t\\N", "a3\t\\N", "g1\t\\N", "m1\t\\N"]
    );
}

#[tokio::test]
async fn pgwire_copy_to_stdout_text_csv_binary() {
    use futures::{StreamExt, TryStreamExt};
    use tokio_postgres::binary_copy::BinaryCopyOutStream;

    let s = TestServer::start().await;
    ingest_sample(&s).await;
    let c = connect(&s).await;
    let copy = |sql: &'static str| {
        let c = &c;
        async move {
            let chunks: Vec<bytes::Bytes> = c
                .copy_out(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .try_collect()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            chunks.concat()
        }
    };
    let csv = copy(
        "COPY (SELECT event_id, event_time, csat_score FROM events \
         WHERE tenant_id = 'acme' AND event_type = 'conversation.created' ORDER BY 1) \
         TO STDOUT (FORMAT csv, HEADER true)",
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&csv),
        "event_id,event_time,csat_score\n\
         a1,2026-01-01 00:01:00.000000+00,\n\
         a2,2026-01-01 00:30:00.000000+00,\n\
         a3,2026-01-01 01:10:00.000000+00,\n"
    );
    let text = copy("COPY (SELECT 'tab\there' AS t, NULL::int AS n) TO STDOUT").await;
    assert_eq!(String::from_utf8_lossy(&text), "tab\\there\t\\N\n");

    // Binary, decoded by tokio-postgres' PGCOPY reader.
    let stream = c
        .copy_out(
            "COPY (SELECT event_id, count(*) OVER () AS n FROM events \
             WHERE tenant_id = 'globex') TO STDOUT (FORMAT binary)",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<_> = BinaryCopyOutStream::new(stream, &[Type::TEXT, Type::INT8])
        .collect()
        .await;
    assert_eq!(rows.len(), 1);
    let row = rows[0].as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((row.get::<&str>(0), row.get::<i64>(1)), ("g1", 1));
    // No rows: still a valid PGCOPY stream (header and trailer).
    let stream = c
        .copy_out("COPY (SELECT event_id FROM events WHERE false) TO STDOUT (FORMAT binary)")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<_> = BinaryCopyOutStream::new(stream, &[Type::TEXT])
        .collect()
        .await;
    let errors: Vec<String> = rows
        .iter()
        .map(|r| {
            r.as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(rows.len(), 0, "rows from an empty result: {errors:?}");
}

#[tokio::test]
async fn pgwire_catalog_oids_are_the_same_on_every_connection() {
    let s = TestServer::start().await;
    let a = connect(&s).await;
    let b = connect(&s).await;
    // Different first catalog queries on each connection.
    let namespaces = simple(
        &a,
        "SELECT oid, nspname FROM pg_catalog.pg_namespace ORDER BY 2",
    )
    .await;
    let tables =
        "SELECT c.oid, c.relnamespace FROM pg_catalog.pg_class c WHERE c.relname = 'events'";
    let on_b = simple(&b, tables).await;
    let on_a = simple(&a, tables).await;
    assert_eq!(on_a, on_b);
    let public = namespaces
        .iter()
        .find(|r| r[1].as_deref() == Some("public"))
        .and_then(|r| r[0].clone());
    assert_eq!(
        on_a[0][1], public,
        "pg_class.relnamespace = pg_namespace.oid"
    );
    // psql's `\d events` resolves the oid on one query and reads columns
    // with it on the next.
    let oid = on_a[0][0].clone().unwrap_or_default();
    let columns = simple(
        &b,
        &format!(
            "SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = {oid} AND attnum > 0"
        ),
    )
    .await;
    assert_eq!(columns, vec![vec![Some("31".to_string())]]);
}

/// What psycopg (and so SQLAlchemy) sends around a user's statements:
/// savepoints inside a transaction, `to_regtype` to look a type up, and
/// named cursors declared with parameters, then fetched in parts.
#[tokio::test]
async fn pgwire_savepoints_to_regtype_and_cursors_with_parameters() {
    let s = TestServer::start().await;
    ingest_sample(&s).await;
    let c = connect(&s).await;
    let run = |sql: &'static str| {
        let c = &c;
        async move {
            c.simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    };

    // ROLLBACK TO a savepoint leaves the failed state; the session goes on.
    run("BEGIN; SAVEPOINT probe").await;
    assert_eq!(
        sqlstate(&c, "SELECT * FROM nope").await,
        SqlState::UNDEFINED_TABLE
    );
    assert_eq!(
        sqlstate(&c, "SELECT 1").await,
        SqlState::IN_FAILED_SQL_TRANSACTION
    );
    run("ROLLBACK TO probe").await;
    run("RELEASE probe").await;
    assert_eq!(value(&c, "SELECT 2").await, "2");
    run("BEGIN; SAVEPOINT again; SELECT 3; RELEASE SAVEPOINT again; ROLLBACK TO SAVEPOINT again; COMMIT").await;

    assert_eq!(
        simple(
            &c,
            "SELECT to_regtype('int4'), to_regtype('integer[]'), \
             to_regtype('pg_catalog.timestamp with time zone'), to_regtype('hstore')"
        )
        .await,
        vec![vec![
            Some("23".to_string()),
            Some("1007".to_string()),
            Some("1184".to_string()),
            None
        ]]
    );

    // A cursor declared with a parameter (extended protocol: its type is
    // described), then fetched in parts.
    run("BEGIN").await;
    let declare = c
        .prepare(
            "DECLARE acme_events CURSOR FOR \
             SELECT event_id FROM events WHERE tenant_id = $1 ORDER BY event_id",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(declare.params(), &[Type::TEXT]);
    c.execute(&declare, &[&"acme"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids = |rows: Vec<Vec<Option<String>>>| -> Vec<String> {
        rows.into_iter().filter_map(|r| r[0].clone()).collect()
    };
    assert_eq!(
        ids(simple(&c, "FETCH 3 FROM acme_events").await),
        ["a1", "a2", "a3"]
    );
    assert_eq!(ids(simple(&c, "FETCH ALL FROM acme_events").await), ["m1"]);
    run("CLOSE acme_events; COMMIT").await;
    // And over the simple protocol.
    run("BEGIN; DECLARE g CURSOR FOR SELECT event_id FROM events WHERE tenant_id = 'globex'").await;
    assert_eq!(ids(simple(&c, "FETCH ALL FROM g").await), ["g1"]);
    run("COMMIT").await;
}

/// SQLAlchemy 2.1's `get_columns` reflection query, as psycopg sends it
/// (`inspect(engine).get_columns('events')`, captured from the wire). Its
/// correlated scalar subqueries (over pg_attrdef, pg_sequence, pg_type,
/// pg_collation) and `json_build_object`, `pg_get_serial_sequence`,
/// `pg_collation_is_visible` calls are what the catalog rewrite
/// (pgwire/catalog.rs) and functions exist for.
const SQLALCHEMY_GET_COLUMNS: &str = r#"SELECT pg_catalog.pg_attribute.attname AS name, pg_catalog.format_type(pg_catalog.pg_attribute.atttypid, pg_catalog.pg_attribute.atttypmod) AS format_type, CASE WHEN pg_catalog.pg_attribute.atthasdef THEN (SELECT pg_catalog.pg_get_expr(pg_catalog.pg_attrdef.adbin, pg_catalog.pg_attrdef.adrelid) AS pg_get_expr_1 
FROM pg_catalog.pg_attrdef 
WHERE pg_catalog.pg_attribute.atthasdef AND pg_catalog.pg_attrdef.adrelid = pg_catalog.pg_attribute.attrelid AND pg_catalog.pg_attrdef.adnum = pg_catalog.pg_attribute.attnum) ELSE NULL END AS "default", pg_catalog.pg_attribute.attnotnull AS not_null, pg_catalog.pg_class.relname AS table_name, pg_catalog.pg_description.description AS comment, pg_catalog.pg_attribute.attgenerated AS generated, CASE WHEN (pg_catalog.pg_attribute.attidentity != $1::VARCHAR) THEN (SELECT json_build_object($2::VARCHAR, pg_catalog.pg_attribute.attidentity = $3::VARCHAR, $4::VARCHAR, pg_catalog.pg_sequence.seqstart, $5::VARCHAR, pg_catalog.pg_sequence.seqincrement, $6::VARCHAR, pg_catalog.pg_sequence.seqmin, $7::VARCHAR, pg_catalog.pg_sequence.seqmax, $8::VARCHAR, pg_catalog.pg_sequence.seqcache, $9::VARCHAR, pg_catalog.pg_sequence.seqcycle) AS json_build_object_1 
FROM pg_catalog.pg_sequence 
WHERE pg_catalog.pg_attribute.attidentity != $10::VARCHAR AND pg_catalog.pg_sequence.seqrelid = CAST(CAST(pg_catalog.pg_get_serial_sequence(CAST(CAST(pg_catalog.pg_attribute.attrelid AS REGCLASS) AS TEXT), pg_catalog.pg_attribute.attname) AS REGCLASS) AS OID)) ELSE NULL END AS identity_options, CASE WHEN (pg_catalog.pg_attribute.attcollation != $11::INTEGER AND (SELECT pg_catalog.pg_type.typcollation 
FROM pg_catalog.pg_type 
WHERE pg_catalog.pg_type.oid = pg_catalog.pg_attribute.atttypid) != pg_catalog.pg_attribute.attcollation) THEN (SELECT json_build_object($12::VARCHAR, pg_catalog.pg_collation.collname, $13::VARCHAR, CASE WHEN pg_catalog.pg_collation_is_visible(pg_catalog.pg_collation.oid) THEN NULL ELSE pg_catalog.pg_namespace.nspname END) AS json_build_object_9 
FROM pg_catalog.pg_collation JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_collation.collnamespace 
WHERE pg_catalog.pg_collation.oid = pg_catalog.pg_attribute.attcollation) ELSE NULL END AS collation 
FROM pg_catalog.pg_class LEFT OUTER JOIN pg_catalog.pg_attribute ON pg_catalog.pg_class.oid = pg_catalog.pg_attribute.attrelid AND pg_catalog.pg_attribute.attnum > $14::SMALLINT AND NOT pg_catalog.pg_attribute.attisdropped LEFT OUTER JOIN pg_catalog.pg_description ON pg_catalog.pg_description.objoid = pg_catalog.pg_attribute.attrelid AND pg_catalog.pg_description.objsubid = pg_catalog.pg_attribute.attnum JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$15::VARCHAR, $16::VARCHAR, $17::VARCHAR, $18::VARCHAR, $19::VARCHAR]) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != $20::VARCHAR AND pg_catalog.pg_class.relname IN ($21::VARCHAR) ORDER BY pg_catalog.pg_class.relname, pg_catalog.pg_attribute.attnum"#;

#[tokio::test]
async fn pgwire_sqlalchemy_get_columns_reflection_query() {
    let s = TestServer::start().await;
    let c = connect(&s).await;
    let text = Type::TEXT;
    let params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = vec![
        (&"", text.clone()),
        (&"always", text.clone()),
        (&"a", text.clone()),
        (&"start", text.clone()),
        (&"increment", text.clone()),
        (&"minvalue", text.clone()),
        (&"maxvalue", text.clone()),
        (&"cache", text.clone()),
        (&"cycle", text.clone()),
        (&"", text.clone()),
        (&0_i16, Type::INT2),
        (&"name", text.clone()),
        (&"schema", text.clone()),
        (&0_i16, Type::INT2),
        (&"r", text.clone()),
        (&"p", text.clone()),
        (&"f", text.clone()),
        (&"v", text.clone()),
        (&"m", text.clone()),
        (&"pg_catalog", text.clone()),
        (&"events", text.clone()),
    ];
    let rows = c
        .query_typed(SQLALCHEMY_GET_COLUMNS, &params)
        .await
        .unwrap_or_else(|e| panic!("get_columns query: {e:?}"));
    let columns: Vec<(String, String, bool)> = rows
        .iter()
        .map(|r| (r.get("name"), r.get("format_type"), r.get("not_null")))
        .collect();
    let spec = [
        ("tenant_id", "text", true),
        ("event_id", "text", true),
        ("event_time", "timestamp with time zone", true),
        ("ingested_at", "timestamp with time zone", true),
        ("event_type", "text", true),
        ("channel", "text", false),
        ("conversation_id", "text", false),
        ("ticket_id", "text", false),
        ("customer_id", "text", false),
        ("customer_email", "text", false),
        ("customer_phone", "text", false),
        ("actor_type", "text", false),
        ("agent_id", "text", false),
        ("team_id", "text", false),
        ("status", "text", false),
        ("priority", "text", false),
        ("message_id", "text", false),
        ("body", "text", false),
        ("is_public", "boolean", false),
        ("csat_score", "integer", false),
        ("bot_id", "text", false),
        ("intent", "text", false),
        ("confidence", "double precision", false),
        ("workflow_id", "text", false),
        ("store", "text", false),
        ("order_id", "text", false),
        ("order_total", "double precision", false),
        ("currency", "text", false),
        ("duration_ms", "bigint", false),
        ("tags", "text[]", false),
        ("attributes", "text", false),
    ]
    .map(|(name, ty, not_null)| (name.to_string(), ty.to_string(), not_null));
    assert_eq!(columns, spec);
    // No defaults, identities or collations to report.
    for row in &rows {
        let default: Option<String> = row.get("default");
        let identity: Option<String> = row.get("identity_options");
        let collation: Option<String> = row.get("collation");
        assert_eq!((default, identity, collation), (None, None, None));
    }
    // The same rewrite turns SQLAlchemy's `LIKE … ESCAPE '/'` into
    // DataFusion's backslash escapes (get_schema_names), in catalog
    // queries only: a query reading no pg_catalog table is left as written.
    let schemas = c
        .query(
            "SELECT nspname FROM pg_catalog.pg_namespace \
             WHERE (nspname NOT LIKE $1::VARCHAR || '%' ESCAPE '/') ORDER BY nspname",
            &[&"pg/_"],
        )
        .await
        .unwrap_or_else(|e| panic!("get_schema_names query: {e:?}"));
    let schemas: Vec<String> = schemas.iter().map(|r| r.get(0)).collect();
    assert!(schemas.contains(&"public".to_string()), "{schemas:?}");
    assert!(!schemas.iter().any(|s| s.starts_with("pg_")), "{schemas:?}");
    let user = c.simple_query("SELECT 'a_b' LIKE 'a/_b' ESCAPE '/'").await;
    assert!(user.is_err(), "{user:?}");
}
