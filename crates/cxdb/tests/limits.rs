//! Query limits end to end: the real server with small limits, answered
//! over pgwire (SQLSTATE) and gRPC (status code), and still serving after.

use tokio_postgres::error::SqlState;
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
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", s.pg));
    tokio::spawn(connection);
    client
}

/// The SQLSTATE and message of a failing simple query.
async fn failure(c: &Client, sql: &str) -> (SqlState, String) {
    let e = c
        .simple_query(sql)
        .await
        .map(|_| ())
        .err()
        .unwrap_or_else(|| panic!("{sql} succeeded"));
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {e:?}"));
    (db.code().clone(), db.message().to_string())
}

#[tokio::test]
async fn limits_answer_with_their_sqlstate_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = TestServer::start_in(
        dir.path(),
        &["--max-result-rows", "5", "--query-memory", "1MiB"],
    )
    .await;
    let c = connect(&s).await;

    let (code, message) = failure(&c, "SELECT * FROM range(10)").await;
    assert_eq!(code, SqlState::PROGRAM_LIMIT_EXCEEDED, "{message}");
    assert_eq!(
        message,
        "the result exceeds 5 rows (--max-result-rows); add a LIMIT or aggregate"
    );

    // 2 M distinct values do not fit in 1 MiB (spilling is off).
    let (code, message) = failure(&c, "SELECT count(DISTINCT value) FROM range(2000000)").await;
    assert_eq!(code, SqlState::OUT_OF_MEMORY, "{message}");
    assert!(message.contains("--query-memory"), "{message}");

    // The same session, and the server, go on.
    let rows = c
        .simple_query("SELECT count(*) FROM range(100)")
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let counted: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(counted, vec!["100".to_string()]);

    // gRPC QueryService: the same limit, as RESOURCE_EXHAUSTED.
    let status = s
        .sql("SELECT * FROM range(10)")
        .await
        .err()
        .unwrap_or_else(|| panic!("10 rows passed a limit of 5 over gRPC"));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "the result exceeds 5 rows (--max-result-rows); add a LIMIT or aggregate"
    );
    assert_eq!(s.count("SELECT count(*) FROM range(5)").await, 5);
}
