//! Custom views end to end (issue 7 point 8, issue 6 point 2): `CREATE
//! [OR REPLACE] VIEW` / `DROP VIEW` over gRPC, PostgreSQL and Flight SQL by
//! analyst and admin tokens only, kept in the catalog across a restart,
//! `--views-dir` files (a broken one reported, the rest installed), and
//! tenant isolation through every view: a scoped token never sees another
//! tenant's view, and reads only its own rows through a global one.

use arrow_flight::sql::client::FlightSqlServiceClient;
use cxdb_proto::v1::WriteRequest;
use cxdb_proto::v1::ingest_service_client::IngestServiceClient;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tonic::Code;

use crate::flightsql::strings;
use crate::server::{TestServer, event, with_token};

const ADMIN: &str = "bootstrap-admin-token-for-views";

async fn token(s: &TestServer, name: &str, role: &str, tenant: Option<&str>) -> String {
    s.create_token(ADMIN, name, role, tenant).await.token
}

/// The first value of the first row of `sql` over gRPC, as text ("" for
/// no rows).
async fn sql(s: &TestServer, token: &str, sql: &str) -> Result<String, tonic::Status> {
    let batches = s.sql_as(Some(token), sql).await?;
    if batches.iter().all(|b| b.num_columns() == 0) {
        return Ok(String::new());
    }
    Ok(strings(&batches, 0).into_iter().next().unwrap_or_default())
}

async fn ok(s: &TestServer, token: &str, text: &str) -> String {
    sql(s, token, text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[tokio::test]
async fn custom_views_over_every_protocol_scoped_and_persisted() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let views_dir = tmp.path().join("views");
    std::fs::create_dir_all(&views_dir).unwrap_or_else(|e| panic!("{e}"));
    // Files in name order: b_ reads a_'s view; c_ is broken.
    std::fs::write(
        views_dir.join("b_chat_share.sql"),
        "CREATE VIEW chat_share AS SELECT count(*) AS chats FROM by_channel WHERE channel = 'chat'",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        views_dir.join("a_by_channel.sql"),
        "-- events per tenant and channel\n\
         CREATE VIEW by_channel AS SELECT tenant_id, channel FROM events",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        views_dir.join("c_broken.sql"),
        "CREATE VIEW broken AS SELECT no_such_column FROM events",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let dir_arg = views_dir.display().to_string();
    let args = [
        "--auth",
        "token",
        "--admin-token",
        ADMIN,
        "--views-dir",
        &dir_arg,
    ];
    let mut s = TestServer::start_in(tmp.path(), &args).await;

    let analyst_acme = token(&s, "acme-analyst", "analyst", Some("acme")).await;
    let analyst_beta = token(&s, "beta-analyst", "analyst", Some("beta")).await;
    let read_acme = token(&s, "acme-reader", "read", Some("acme")).await;
    IngestServiceClient::new(s.channel().await)
        .write(with_token(
            WriteRequest {
                events: vec![
                    event("acme", "a1", "chat"),
                    event("acme", "a2", "email"),
                    event("acme", "a3", "chat"),
                    event("beta", "b1", "chat"),
                    event("beta", "b2", "whatsapp"),
                ],
                atomic: true,
            },
            Some(ADMIN),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // --views-dir: a_ and b_ installed (b_ despite its order), c_ left out.
    // Global views, each caller sees its own rows: acme 2 chats, beta 1,
    // unscoped 3.
    assert_eq!(
        ok(&s, &read_acme, "SELECT chats FROM chat_share").await,
        "2"
    );
    assert_eq!(
        ok(&s, &analyst_beta, "SELECT chats FROM chat_share").await,
        "1"
    );
    assert_eq!(ok(&s, ADMIN, "SELECT chats FROM chat_share").await, "3");
    let err = sql(&s, ADMIN, "SELECT * FROM broken").await.err();
    assert!(err.is_some_and(|e| e.message().contains("broken")));

    // Roles: a read token cannot create views.
    let err = sql(&s, &read_acme, "CREATE VIEW mine AS SELECT * FROM events")
        .await
        .err()
        .unwrap_or_else(|| panic!("a read token created a view"));
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        "a read token cannot create or drop views (needs an analyst or admin token)"
    );

    // An analyst's view is its tenant's: acme's `chats` has acme's 2 chat
    // events; beta does not see it and may use the name for its own.
    assert_eq!(
        ok(
            &s,
            &analyst_acme,
            "CREATE VIEW chats AS SELECT * FROM events WHERE channel = 'chat'"
        )
        .await,
        ""
    );
    assert_eq!(ok(&s, &read_acme, "SELECT count(*) FROM chats").await, "2");
    let err = sql(&s, &analyst_beta, "SELECT count(*) FROM chats")
        .await
        .err();
    let err = err.unwrap_or_else(|| panic!("beta sees acme's view"));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("chats"), "{}", err.message());
    ok(
        &s,
        &analyst_beta,
        "CREATE VIEW chats AS SELECT * FROM events",
    )
    .await;
    assert_eq!(
        ok(&s, &analyst_beta, "SELECT count(*) FROM chats").await,
        "2"
    );
    // Unscoped sessions see global views only.
    assert!(sql(&s, ADMIN, "SELECT count(*) FROM chats").await.is_err());

    // Bad definitions and names are refused and change nothing.
    for (bad, needle) in [
        ("CREATE VIEW chats AS SELECT 1", "already exists"),
        ("CREATE VIEW events AS SELECT 1", "is a table"),
        ("CREATE VIEW conversations AS SELECT 1", "predefined view"),
        ("CREATE VIEW nope AS SELECT missing FROM events", "missing"),
        (
            "CREATE VIEW chat_share AS SELECT 1",
            "global view chat_share exists",
        ),
        ("DROP VIEW conversations", "cannot be dropped"),
        ("DROP VIEW not_there", "does not exist"),
    ] {
        let err = sql(&s, &analyst_acme, bad).await.err();
        let err = err.unwrap_or_else(|| panic!("{bad}: accepted"));
        assert!(err.message().contains(needle), "{bad}: {}", err.message());
    }
    assert_eq!(ok(&s, &read_acme, "SELECT count(*) FROM chats").await, "2");

    // PostgreSQL: replace and drop in one connection, which sees each change.
    let (host, port) = s.pg.rsplit_once(':').unwrap_or_else(|| panic!("pg addr"));
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port.parse().unwrap_or_else(|e| panic!("{e}")))
        .user("analyst")
        .password(&analyst_acme)
        .dbname("cxdb");
    let (pg, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(connection);
    let count = |n: i64| n;
    let row = pg
        .query_one("SELECT count(*) FROM chats", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(row.get(0)), 2);
    // A view reading a view: planned in this connection and in the scope's
    // session the other protocols share, both before the view it reads is
    // replaced; neither may keep the old plan.
    pg.batch_execute("CREATE VIEW chat_count AS SELECT count(*) AS n FROM chats")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chat_count = async |pg: &tokio_postgres::Client| -> (i64, String) {
        let row = pg
            .query_one("SELECT n FROM chat_count", &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (
            row.get(0),
            ok(&s, &read_acme, "SELECT n FROM chat_count").await,
        )
    };
    assert_eq!(chat_count(&pg).await, (2, "2".to_string()));
    pg.batch_execute(
        "CREATE OR REPLACE VIEW chats AS SELECT * FROM events WHERE channel = 'email'",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let row = pg
        .query_one("SELECT count(*) FROM chats", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(row.get(0)), 1);
    assert_eq!(chat_count(&pg).await, (1, "1".to_string()));
    pg.batch_execute("DROP VIEW chat_count")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pg.batch_execute("DROP VIEW chats")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = pg
        .query_one("SELECT count(*) FROM chats", &[])
        .await
        .err()
        .unwrap_or_else(|| panic!("dropped view still answers"));
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err}");
    // pgwire: a read token gets 42501.
    let mut config = config.clone();
    config.password(&read_acme);
    let (reader, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(connection);
    let err = reader
        .batch_execute("CREATE VIEW x AS SELECT 1")
        .await
        .err()
        .unwrap_or_else(|| panic!("a read token created a view"));
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    // Flight SQL: an update.
    let mut flight = FlightSqlServiceClient::new(s.channel().await);
    flight.set_token(analyst_acme.clone());
    let affected = flight
        .execute_update(
            "CREATE VIEW emails AS SELECT * FROM events WHERE channel = 'email'".into(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(affected, 0);
    assert_eq!(ok(&s, &read_acme, "SELECT count(*) FROM emails").await, "1");

    // Back after a restart, files removed from --views-dir are dropped.
    std::fs::remove_file(views_dir.join("b_chat_share.sql")).unwrap_or_else(|e| panic!("{e}"));
    let status = s.terminate().await;
    assert!(status.is_some_and(|st| st.success()));
    let s = TestServer::start_in(tmp.path(), &args).await;
    assert_eq!(ok(&s, &read_acme, "SELECT count(*) FROM emails").await, "1");
    assert_eq!(
        ok(&s, &analyst_beta, "SELECT count(*) FROM chats").await,
        "2"
    );
    assert_eq!(ok(&s, ADMIN, "SELECT count(*) FROM by_channel").await, "5");
    assert!(sql(&s, ADMIN, "SELECT * FROM chat_share").await.is_err());
}
