//! Security end to end (issue 6, SPEC §8): a server with `--auth token`,
//! tokens made through `AdminService` and `cxdb token`, and every protocol
//! (gRPC, HTTP, PostgreSQL, Flight SQL) refusing a missing, wrong, revoked
//! or under-privileged token with its exact code — and a tenant-scoped token
//! seeing and writing only its tenant, whatever the SQL.

use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_flight::FlightDescriptor;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use cxdb_proto::v1::admin_service_client::AdminServiceClient;
use cxdb_proto::v1::ingest_service_client::IngestServiceClient;
use cxdb_proto::v1::{
    BusinessCalendar, CreateTokenRequest, FlushRequest, ListRequest, RevokeTokenRequest,
    WriteRequest,
};
use futures::StreamExt;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tonic::Code;

use crate::flightsql::{fetch, status, strings};
use crate::server::{TestServer, event, with_token};

const ADMIN: &str = "bootstrap-admin-token-for-tests";

struct Secured {
    server: TestServer,
    _tmp: tempfile::TempDir,
}

impl Secured {
    async fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let server =
            TestServer::start_in(tmp.path(), &["--auth", "token", "--admin-token", ADMIN]).await;
        Self { server, _tmp: tmp }
    }

    async fn create(&self, name: &str, role: &str, tenant: Option<&str>) -> (String, String) {
        let out = self.server.create_token(ADMIN, name, role, tenant).await;
        let info = out.info.unwrap_or_else(|| panic!("no info"));
        assert_eq!(info.role, role);
        assert_eq!(info.tenant_id.as_deref(), tenant);
        (out.token, info.id)
    }

    /// Writes over gRPC; Ok(accepted, rejected fields) or the status.
    async fn write(
        &self,
        token: Option<&str>,
        events: Vec<cxdb_proto::v1::Event>,
    ) -> Result<(u64, Vec<String>), tonic::Status> {
        let mut ingest = IngestServiceClient::new(self.server.channel().await);
        let out = ingest
            .write(with_token(
                WriteRequest {
                    events,
                    atomic: false,
                },
                token,
            ))
            .await?
            .into_inner();
        Ok((
            out.accepted,
            out.rejected
                .iter()
                .map(|r| format!("{}: {}", r.field, r.error))
                .collect(),
        ))
    }

    /// The first column of the first row of `sql` over gRPC, as text.
    async fn scalar(&self, token: Option<&str>, sql: &str) -> Result<String, tonic::Status> {
        let batches = self.server.sql_as(token, sql).await?;
        Ok(strings(&batches, 0).into_iter().next().unwrap_or_default())
    }
}

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    match result {
        Ok(v) => panic!("expected {code:?} ({needle}), got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{}", s.message());
            assert!(
                s.message().contains(needle),
                "{:?} lacks {needle:?}",
                s.message()
            );
        }
    }
}

#[tokio::test]
async fn grpc_tokens_roles_scopes_and_revocation() {
    let s = Secured::start().await;
    let (ingest_acme, _) = s.create("acme-webhook", "ingest", Some("acme")).await;
    let (read_acme, read_acme_id) = s.create("acme-grafana", "read", Some("acme")).await;
    let (read_all, _) = s.create("ops-grafana", "read", None).await;

    // Seed as the bootstrap admin: 3 acme events, 2 beta.
    let seed = vec![
        event("acme", "a1", "chat"),
        event("acme", "a2", "email"),
        event("acme", "a3", "chat"),
        event("beta", "b1", "chat"),
        event("beta", "b2", "whatsapp"),
    ];
    let (accepted, rejected) = s
        .write(Some(ADMIN), seed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((accepted, rejected.len()), (5, 0));

    // One business calendar per tenant; configuration tables are scoped too.
    let mut admin = AdminServiceClient::new(s.server.channel().await);
    for tenant in ["acme", "beta"] {
        admin
            .upsert_calendar(with_token(
                BusinessCalendar {
                    tenant_id: tenant.into(),
                    calendar_id: "support".into(),
                    timezone: "UTC".into(),
                    weekly_hours_json: r#"{"mon":[["09:00","17:00"]]}"#.into(),
                    holidays: vec![],
                },
                Some(ADMIN),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // Missing, malformed and wrong tokens: UNAUTHENTICATED, nothing runs.
    let count = "SELECT count(*) FROM events";
    assert_status(
        s.scalar(None, count).await,
        Code::Unauthenticated,
        "missing token",
    );
    assert_status(
        s.scalar(Some("not-a-token"), count).await,
        Code::Unauthenticated,
        "invalid token",
    );
    let forged = format!("{}{}", &read_acme[..read_acme.len() - 4], "0000");
    assert_status(
        s.scalar(Some(&forged), count).await,
        Code::Unauthenticated,
        "invalid token",
    );
    assert_status(
        s.write(None, vec![event("acme", "x1", "chat")]).await,
        Code::Unauthenticated,
        "missing token",
    );

    // Wrong roles: PERMISSION_DENIED naming what the role cannot do.
    assert_status(
        s.scalar(Some(&ingest_acme), count).await,
        Code::PermissionDenied,
        "an ingest token cannot run queries",
    );
    assert_status(
        s.write(Some(&read_all), vec![event("acme", "x2", "chat")])
            .await,
        Code::PermissionDenied,
        "a read token cannot write events",
    );
    assert_status(
        admin
            .flush(with_token(FlushRequest {}, Some(&read_all)))
            .await,
        Code::PermissionDenied,
        "needs an admin token",
    );
    assert_status(
        admin
            .create_token(with_token(
                CreateTokenRequest {
                    name: "escalate".into(),
                    role: "admin".into(),
                    tenant_id: None,
                },
                Some(&read_acme),
            ))
            .await,
        Code::PermissionDenied,
        "needs an admin token",
    );
    assert_status(
        s.scalar(Some(&read_acme), "CREATE VIEW mine AS SELECT * FROM events")
            .await,
        Code::PermissionDenied,
        "a read token cannot create or drop views",
    );

    // A scoped token sees its tenant only, whatever the SQL says.
    // acme has 3 events; beta 2; unscoped readers see 5.
    let scoped = [
        (count, "3"),
        ("SELECT count(*) FROM events WHERE tenant_id = 'beta'", "0"),
        (
            "SELECT count(*) FROM (SELECT event_id FROM events WHERE tenant_id = 'beta' \
             UNION ALL SELECT event_id FROM events) t",
            "3",
        ),
        (
            "SELECT count(*) FROM events WHERE tenant_id IN \
             (SELECT tenant_id FROM events WHERE tenant_id <> 'acme')",
            "0",
        ),
        (
            "WITH b AS (SELECT * FROM events WHERE tenant_id = 'beta') SELECT count(*) FROM b",
            "0",
        ),
        (
            "SELECT count(*) FROM events a JOIN events b ON a.channel = b.channel \
             WHERE b.tenant_id = 'beta'",
            "0",
        ),
        ("SELECT count(DISTINCT tenant_id) FROM conversations", "1"),
        ("SELECT min(tenant_id) FROM conversations", "acme"),
        ("SELECT count(*) FROM business_calendars", "1"),
        ("SELECT min(tenant_id) FROM business_calendars", "acme"),
    ];
    for (sql, want) in scoped {
        let got = s
            .scalar(Some(&read_acme), sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got, want, "{sql}");
    }
    assert_eq!(
        s.scalar(Some(&read_all), count).await.ok().as_deref(),
        Some("5")
    );
    // information_schema lists the same tables, and no rows of any tenant.
    let tables = s
        .scalar(
            Some(&read_acme),
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tables, "1");

    // A scoped ingest token: its tenant's events are accepted, another
    // tenant's are rejected per event, on tenant_id, and never stored.
    let (accepted, rejected) = s
        .write(
            Some(&ingest_acme),
            vec![event("acme", "a4", "chat"), event("beta", "b3", "chat")],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(accepted, 1);
    assert_eq!(
        rejected,
        ["tenant_id: this token may only write tenant \"acme\", not \"beta\""]
    );
    assert_eq!(
        s.scalar(
            Some(ADMIN),
            "SELECT count(*) FROM events WHERE tenant_id = 'beta'"
        )
        .await
        .ok()
        .as_deref(),
        Some("2")
    );

    // Revocation: the next request fails.
    assert_eq!(
        s.scalar(Some(&read_acme), count).await.ok().as_deref(),
        Some("4")
    );
    let revoked = admin
        .revoke_token(with_token(
            RevokeTokenRequest {
                id: read_acme_id.clone(),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert!(revoked.revoked);
    assert_status(
        s.scalar(Some(&read_acme), count).await,
        Code::Unauthenticated,
        "was revoked",
    );

    // The catalog lists tokens without their secrets; revoked ones marked.
    let list = admin
        .list_tokens(with_token(ListRequest::default(), Some(ADMIN)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(list.tokens.len(), 3);
    let listed = list
        .tokens
        .iter()
        .find(|t| t.id == read_acme_id)
        .unwrap_or_else(|| panic!("revoked token not listed"));
    assert!(listed.revoked_at_us.is_some());
    assert!(!format!("{list:?}").contains(&read_acme[read_acme.len() - 64..]));
}

#[tokio::test]
async fn http_pgwire_and_flight_sql_enforce_tokens() {
    let s = Secured::start().await;
    let (ingest_acme, _) = s.create("acme-webhook", "ingest", Some("acme")).await;
    let (read_acme, read_acme_id) = s.create("acme-bi", "read", Some("acme")).await;
    s.write(
        Some(ADMIN),
        vec![
            event("acme", "a1", "chat"),
            event("acme", "a2", "email"),
            event("beta", "b1", "chat"),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // --- HTTP
    let http = reqwest::Client::new();
    let events_url = format!("{}/v1/events", s.server.http);
    let line = |tenant: &str, id: &str| {
        format!(
            r#"{{"tenant_id":"{tenant}","event_id":"{id}","event_time":"2026-01-01T00:00:01Z","event_type":"conversation.created","conversation_id":"c-{id}","channel":"chat"}}"#
        )
    };
    let post = |token: Option<&str>, body: String| {
        let mut r = http.post(&events_url).body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = post(None, line("acme", "h1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let body: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing token")),
        "{body}"
    );
    let r = post(Some("wrong"), line("acme", "h1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);
    let r = post(Some(&read_acme), line("acme", "h1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("a read token cannot write events")),
        "{body}"
    );
    // Another tenant's line is rejected on tenant_id; the own tenant's kept.
    let r = post(
        Some(&ingest_acme),
        format!("{}\n{}\n", line("acme", "h1"), line("beta", "h2")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["rejected"][0]["line"], 2, "{body}");
    assert_eq!(body["rejected"][0]["field"], "tenant_id", "{body}");
    let r = http
        .post(format!("{}/v1/flush", s.server.http))
        .bearer_auth(&ingest_acme)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{}/metrics", s.server.http))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/healthz", s.server.http))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200, "health checks need no token");

    // --- PostgreSQL: the password is the token.
    let (host, port) = s
        .server
        .pg
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("bad pg address"));
    let port: u16 = port.parse().unwrap_or_else(|e| panic!("{e}"));
    let pg = |password: &str| {
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .user("analyst")
            .password(password)
            .dbname("cxdb");
        async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            Ok::<_, tokio_postgres::Error>(client)
        }
    };
    let err = pg("wrong")
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    let acme = pg(&read_acme).await.unwrap_or_else(|e| panic!("{e}"));
    // acme: a1, a2 and h1 (HTTP above).
    let row = acme
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row.get::<_, i64>(0), 3);
    // A prepared statement asking for another tenant finds nothing.
    let stmt = acme
        .prepare("SELECT count(*) FROM events WHERE tenant_id = $1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let row = acme
        .query_one(&stmt, &[&"beta"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row.get::<_, i64>(0), 0);
    // COPY … TO STDOUT is scoped too: 3 rows.
    let copy = acme
        .copy_out("COPY (SELECT event_id FROM events) TO STDOUT")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let data: Vec<bytes::Bytes> = copy
        .map(|c| c.unwrap_or_else(|e| panic!("{e}")))
        .collect()
        .await;
    let text: String = data
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(!text.contains('b'), "{text}");

    let ingest = pg(&ingest_acme).await.unwrap_or_else(|e| panic!("{e}"));
    let err = ingest
        .query_one("SELECT 1", &[])
        .await
        .err()
        .unwrap_or_else(|| panic!("an ingest token ran a query"));
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    // --- Flight SQL: Basic handshake and bearer header.
    let mut flight = FlightSqlServiceClient::new(s.server.channel().await);
    // arrow-flight's client wraps a failed handshake in an Arrow error.
    let err = flight
        .handshake("analyst", "wrong")
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"))
        .to_string();
    assert!(err.contains("invalid token"), "{err}");
    flight
        .handshake("analyst", &read_acme)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let info = flight
        .execute("SELECT count(*) FROM events".into(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&fetch(&mut flight, info).await, 0), ["3"]);
    let mut flight_ingest = FlightSqlServiceClient::new(s.server.channel().await);
    flight_ingest.set_token(ingest_acme.clone());
    let err = status(
        flight_ingest
            .execute("SELECT 1".into(), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("an ingest token ran a query")),
    );
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());

    // A PostgreSQL client without a password cannot connect.
    let mut no_password = tokio_postgres::Config::new();
    no_password
        .host(host)
        .port(port)
        .user("analyst")
        .dbname("cxdb");
    assert!(no_password.connect(NoTls).await.is_err());

    // Flight SQL without any token, and Flight DoPut with a read token:
    // refused; DoPut with the scoped ingest token keeps acme's event and
    // rejects beta's on tenant_id.
    let mut anonymous = FlightSqlServiceClient::new(s.server.channel().await);
    let err = status(
        anonymous
            .execute("SELECT 1".into(), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("a query without a token ran")),
    );
    assert_eq!(err.code(), Code::Unauthenticated, "{}", err.message());
    let put = |token: &str| {
        let s_arr = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
        let t0 = crate::server::DAY0;
        let batch = RecordBatch::try_from_iter(vec![
            ("tenant_id", s_arr(vec!["acme", "beta"])),
            ("event_id", s_arr(vec!["fp1", "fp2"])),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![t0, t0]).with_timezone("UTC"))
                    as ArrayRef,
            ),
            (
                "event_type",
                s_arr(vec!["conversation.created", "conversation.created"]),
            ),
            ("conversation_id", s_arr(vec!["cfp1", "cfp2"])),
            ("channel", s_arr(vec!["sms", "sms"])),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["events".into()])))
            .build(futures::stream::iter(vec![Ok(batch)]))
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")));
        with_token(data, Some(token))
    };
    let mut flight_svc = FlightServiceClient::new(s.server.channel().await);
    let err = flight_svc
        .do_put(put(&read_acme))
        .await
        .err()
        .unwrap_or_else(|| panic!("a read token wrote over DoPut"));
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let mut results = flight_svc
        .do_put(put(&ingest_acme))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let first = results
        .next()
        .await
        .and_then(|r| r.ok())
        .unwrap_or_else(|| panic!("no PutResult"));
    let meta: serde_json::Value =
        serde_json::from_slice(&first.app_metadata).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meta["accepted"], 1, "{meta}");
    assert_eq!(meta["rejected"][0]["field"], "tenant_id", "{meta}");

    // Revoking the token closes it on the open PostgreSQL connection and
    // for Flight SQL at the next request.
    let mut admin = AdminServiceClient::new(s.server.channel().await);
    admin
        .revoke_token(with_token(
            RevokeTokenRequest { id: read_acme_id },
            Some(ADMIN),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = acme
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .err()
        .unwrap_or_else(|| panic!("a revoked token still queries"));
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err}"
    );
    let err = status(
        flight
            .execute("SELECT 1".into(), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("a revoked token still queries")),
    );
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn token_cli_creates_lists_and_revokes() {
    let s = Secured::start().await;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cxdb"))
            .arg("token")
            .args(["--addr", &s.server.grpc, "--token", ADMIN])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, token, err) = cli(&[
        "create", "--name", "looker", "--role", "read", "--tenant", "acme",
    ]);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("cxdb_"), "{token}");
    assert!(err.contains("read token") && err.contains("acme"), "{err}");
    let id = token[5..17].to_string();
    // The new token works.
    assert_eq!(
        s.scalar(Some(&token), "SELECT count(*) FROM events")
            .await
            .ok()
            .as_deref(),
        Some("0")
    );
    let (ok, list, err) = cli(&["list"]);
    assert!(ok, "{err}");
    assert!(
        list.contains(&id) && list.contains("looker") && list.contains("active"),
        "{list}"
    );
    let (ok, out, err) = cli(&["revoke", &id]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("revoked {id}"));
    let (_, list, _) = cli(&["list"]);
    assert!(list.contains("revoked"), "{list}");
    assert!(s.scalar(Some(&token), "SELECT 1").await.is_err());
    // An unknown id is refused by the server, naming it.
    let (ok, _, err) = cli(&["revoke", "000000000000"]);
    assert!(!ok);
    assert!(
        err.contains("NotFound") && err.contains("000000000000"),
        "{err}"
    );
}

#[tokio::test]
async fn auth_none_is_refused_off_loopback() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_cxdb"))
        .args([
            "serve",
            "--grpc-addr",
            "0.0.0.0:0",
            "--pg-addr",
            "127.0.0.1:0",
        ])
        .args(["--http-addr", "127.0.0.1:0", "--auth", "none"])
        .arg("--data-dir")
        .arg(tmp.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to start without authentication")
            && err.contains("--grpc-addr 0.0.0.0:0")
            && err.contains("--insecure-no-auth"),
        "{err}"
    );
}

#[tokio::test]
async fn events_per_second_are_limited_per_token() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = TestServer::start_in(
        tmp.path(),
        &[
            "--auth",
            "token",
            "--admin-token",
            ADMIN,
            "--max-events-per-second",
            "10",
        ],
    )
    .await;
    let s = Secured { server, _tmp: tmp };
    let (a, _) = s.create("writer-a", "ingest", None).await;
    let (b, _) = s.create("writer-b", "ingest", None).await;
    let batch = |prefix: &str| -> Vec<_> {
        (0..10)
            .map(|i| event("acme", &format!("{prefix}{i}"), "chat"))
            .collect()
    };
    // A full second's worth passes; the next one right after is refused
    // (it would pass only after the bucket refilled for a second).
    let (accepted, _) = s
        .write(Some(&a), batch("a"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(accepted, 10);
    assert_status(
        s.write(Some(&a), batch("x")).await,
        Code::ResourceExhausted,
        "retry in",
    );
    // HTTP says 429 with Retry-After; nothing of the refused body is stored.
    let line = r#"{"tenant_id":"acme","event_id":"h1","event_time":"2026-01-01T00:00:01Z","event_type":"conversation.created","conversation_id":"c-h1","channel":"chat"}"#;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", s.server.http))
        .bearer_auth(&a)
        .body(line)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // Another token has its own bucket.
    let (accepted, _) = s
        .write(Some(&b), batch("b"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(accepted, 10);
    assert_eq!(
        s.scalar(Some(ADMIN), "SELECT count(*) FROM events")
            .await
            .ok()
            .as_deref(),
        Some("20")
    );
}
