//! Arrow Flight SQL with arrow-flight's `FlightSqlServiceClient` against the
//! real server: statement queries streamed batch by batch, prepared
//! statements with bound parameters (stateless handles, across a restart),
//! the catalog commands JDBC/ADBC drivers send, handshake, and errors.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray, UInt32Array, UnionArray,
};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetDbSchemas, CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
};
use arrow_flight::{Action, FlightData, FlightDescriptor, FlightInfo, Ticket};
use cxdb_proto::v1::WriteRequest;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use crate::server::*;

/// acme: e1 chat at 00:00:01, e2 email at 02:00; globex: e3 chat a day later.
async fn seed(s: &TestServer) {
    let mut e2 = event("acme", "e2", "email");
    e2.event_time_us = DAY0 + 2 * 3_600_000_000;
    let mut e3 = event("globex", "e3", "chat");
    e3.event_time_us = DAY0 + 24 * 3_600_000_000;
    let resp = s
        .ingest()
        .await
        .write(WriteRequest {
            events: vec![event("acme", "e1", "chat"), e2, e3],
            atomic: true,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(resp.accepted, 3);
}

async fn client(s: &TestServer) -> FlightSqlServiceClient<Channel> {
    FlightSqlServiceClient::new(s.channel().await)
}

pub(crate) fn status(e: FlightError) -> tonic::Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => panic!("not a gRPC status: {other}"),
    }
}

/// Every batch of every endpoint of `info`.
pub(crate) async fn fetch(
    c: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.unwrap_or_else(|| panic!("no ticket"));
        let stream = c.do_get(ticket).await.unwrap_or_else(|e| panic!("{e}"));
        out.extend(
            stream
                .try_collect::<Vec<_>>()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    out
}

/// Column `i` of every batch as strings (`NULL` for null).
pub(crate) fn strings(batches: &[RecordBatch], i: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let col =
            arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap_or_else(|e| panic!("{e}"));
        let col = col.as_string::<i32>();
        out.extend((0..col.len()).map(|r| {
            if col.is_null(r) {
                "NULL".to_string()
            } else {
                col.value(r).to_string()
            }
        }));
    }
    out
}

async fn query(c: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = c
        .execute(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    fetch(c, info).await
}

fn utf8(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

#[tokio::test]
async fn statement_queries_stream_ingested_rows() {
    let s = TestServer::start().await;
    seed(&s).await;
    let mut c = client(&s).await;

    let info = c
        .execute(
            "SELECT tenant_id, event_id, channel, event_time FROM events ORDER BY event_id".into(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The FlightInfo carries the result schema before anything runs.
    let schema = info
        .clone()
        .try_decode_schema()
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["tenant_id", "event_id", "channel", "event_time"]);
    assert_eq!(
        schema.field(3).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    let ticket = info.endpoint[0]
        .ticket
        .clone()
        .unwrap_or_else(|| panic!("no ticket"));
    let batches = fetch(&mut c, info).await;
    assert_eq!(strings(&batches, 0), ["acme", "acme", "globex"]);
    assert_eq!(strings(&batches, 1), ["e1", "e2", "e3"]);
    assert_eq!(strings(&batches, 2), ["chat", "email", "chat"]);

    // The ticket is stateless: it serves again, from another connection.
    let mut other = client(&s).await;
    let again: Vec<RecordBatch> = other
        .do_get(ticket)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&again, 1), ["e1", "e2", "e3"]);

    // Quoted, dotted table names; aggregates.
    let batches = query(
        &mut c,
        r#"SELECT tenant_id, count(*) AS n FROM "cxdb"."public"."events" GROUP BY tenant_id ORDER BY tenant_id"#,
    )
    .await;
    assert_eq!(strings(&batches, 0), ["acme", "globex"]);
    assert_eq!(strings(&batches, 1), ["2", "1"]);

    // Results arrive batch by batch, not as one collected answer.
    let batches = query(&mut c, "SELECT value FROM generate_series(1, 100000)").await;
    assert!(batches.len() > 1, "{} batch(es)", batches.len());
    let total: i64 = batches
        .iter()
        .map(|b| {
            let col = b.column(0).as_primitive::<Int64Type>();
            col.iter().flatten().sum::<i64>()
        })
        .sum();
    assert_eq!(total, 100_000 * 100_001 / 2);
}

#[tokio::test]
async fn prepared_statements_bind_parameters() {
    let s = TestServer::start().await;
    seed(&s).await;
    let mut c = client(&s).await;

    let mut stmt = c
        .prepare(
            "SELECT event_id FROM events WHERE tenant_id = $1 AND channel = $2 ORDER BY event_id"
                .into(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dataset = stmt
        .dataset_schema()
        .unwrap_or_else(|e| panic!("{e}"))
        .clone();
    assert_eq!(dataset.fields().len(), 1);
    assert_eq!(dataset.field(0).name(), "event_id");
    assert_eq!(dataset.field(0).data_type(), &DataType::Utf8);
    let params = stmt
        .parameter_schema()
        .unwrap_or_else(|e| panic!("{e}"))
        .clone();
    let params: Vec<_> = params
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        params,
        [("$1".into(), DataType::Utf8), ("$2".into(), DataType::Utf8)]
    );

    // Executing before binding names the problem.
    let err = status(stmt.execute().await.err().unwrap_or_else(|| panic!("ran")));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("takes 2 parameter(s), 0 bound"),
        "{}",
        err.message()
    );

    let bind = |tenant: &str, channel: &str| {
        RecordBatch::try_from_iter(vec![("$1", utf8(&[tenant])), ("$2", utf8(&[channel]))])
            .unwrap_or_else(|e| panic!("{e}"))
    };
    stmt.set_parameters(bind("acme", "chat"))
        .unwrap_or_else(|e| panic!("{e}"));
    let info = stmt.execute().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&fetch(&mut c, info).await, 0), ["e1"]);
    // Re-bound, the same statement answers for the new values.
    stmt.set_parameters(bind("acme", "email"))
        .unwrap_or_else(|e| panic!("{e}"));
    let info = stmt.execute().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&fetch(&mut c, info).await, 0), ["e2"]);
    stmt.close().await.unwrap_or_else(|e| panic!("{e}"));

    // A value of another type is cast to the parameter's: text → timestamp.
    let mut stmt = c
        .prepare(
            "SELECT event_id FROM events WHERE event_time >= $1 ORDER BY event_id".into(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ty = stmt
        .parameter_schema()
        .unwrap_or_else(|e| panic!("{e}"))
        .field(0)
        .data_type()
        .clone();
    assert!(matches!(ty, DataType::Timestamp(..)), "{ty}");
    stmt.set_parameters(
        RecordBatch::try_from_iter(vec![("$1", utf8(&["2026-01-01T01:00:00Z"]))])
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let info = stmt.execute().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&fetch(&mut c, info).await, 0), ["e2", "e3"]);

    // A parameter nothing constrains is offered as text; once bound, the
    // FlightInfo schema is the bound value's type, as DoGet streams it
    // (the Go ADBC driver rejects a mismatch).
    let mut stmt = c
        .prepare("SELECT $1 AS x".into(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stmt.parameter_schema()
            .map(|p| p.field(0).data_type().clone())
            .ok(),
        Some(DataType::Utf8)
    );
    stmt.set_parameters(
        RecordBatch::try_from_iter(vec![(
            "$1",
            Arc::new(arrow::array::Int64Array::from(vec![7])) as ArrayRef,
        )])
        .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let info = stmt.execute().await.unwrap_or_else(|e| panic!("{e}"));
    let schema = info
        .clone()
        .try_decode_schema()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    let batches = fetch(&mut c, info).await;
    assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Int64);
    assert_eq!(strings(&batches, 0), ["7"]);

    // A statement without parameters still gets a (empty) parameter schema.
    let stmt = c
        .prepare("SELECT count(*) AS n FROM events".into(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stmt.parameter_schema().is_ok_and(|p| p.fields().is_empty()));
    assert_eq!(
        stmt.dataset_schema()
            .map(|d| d.field(0).name().clone())
            .ok(),
        Some("n".to_string())
    );
}

/// The raw calls, to hold on to handles: create, bind, read the new handle.
async fn create(c: &mut FlightServiceClient<Channel>, sql: &str) -> bytes::Bytes {
    let action = Action {
        r#type: "CreatePreparedStatement".into(),
        body: ActionCreatePreparedStatementRequest {
            query: sql.into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec()
        .into(),
    };
    let mut results = c
        .do_action(action)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let body = results
        .next()
        .await
        .unwrap_or_else(|| panic!("no result"))
        .unwrap_or_else(|e| panic!("{e}"))
        .body;
    let any = Any::decode(body).unwrap_or_else(|e| panic!("{e}"));
    let result: ActionCreatePreparedStatementResult = any
        .unpack()
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("not a CreatePreparedStatement result"));
    result.prepared_statement_handle
}

async fn bind(
    c: &mut FlightServiceClient<Channel>,
    handle: &bytes::Bytes,
    tenant: &str,
) -> bytes::Bytes {
    let cmd = CommandPreparedStatementQuery {
        prepared_statement_handle: handle.clone(),
    };
    let batch =
        RecordBatch::try_from_iter(vec![("$1", utf8(&[tenant]))]).unwrap_or_else(|e| panic!("{e}"));
    let data: Vec<FlightData> = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_cmd(
            cmd.as_any().encode_to_vec(),
        )))
        .build(futures::stream::iter([Ok(batch)]))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut results = c
        .do_put(futures::stream::iter(data))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let put = results
        .next()
        .await
        .unwrap_or_else(|| panic!("no PutResult"))
        .unwrap_or_else(|e| panic!("{e}"));
    DoPutPreparedStatementResult::decode(put.app_metadata)
        .unwrap_or_else(|e| panic!("{e}"))
        .prepared_statement_handle
        .unwrap_or_else(|| panic!("no updated handle"))
}

async fn run_prepared(c: &mut FlightServiceClient<Channel>, handle: &bytes::Bytes) -> Vec<String> {
    let cmd = CommandPreparedStatementQuery {
        prepared_statement_handle: handle.clone(),
    };
    let info = c
        .get_flight_info(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let ticket: Ticket = info.endpoint[0]
        .ticket
        .clone()
        .unwrap_or_else(|| panic!("no ticket"));
    let stream = c
        .do_get(ticket)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let batches: Vec<RecordBatch> =
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            stream.map_err(FlightError::from),
        )
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    strings(&batches, 0)
}

#[tokio::test]
async fn prepared_handles_are_stateless_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut s = TestServer::start_in(tmp.path(), &[]).await;
    seed(&s).await;
    let mut c = FlightServiceClient::new(s.channel().await);
    let sql = "SELECT event_id FROM events WHERE tenant_id = $1 ORDER BY event_id";
    let created = create(&mut c, sql).await;
    let bound = bind(&mut c, &created, "acme").await;
    assert_ne!(
        bound, created,
        "binding answers with a handle carrying the values"
    );
    assert_eq!(run_prepared(&mut c, &bound).await, ["e1", "e2"]);
    // Clients that ignore the new handle keep using the first one.
    assert_eq!(run_prepared(&mut c, &created).await, ["e1", "e2"]);

    drop(c);
    s.terminate().await;
    let s = TestServer::start_in(tmp.path(), &[]).await;
    let mut c = FlightServiceClient::new(s.channel().await);
    // The bound handle needs nothing the old process knew.
    assert_eq!(run_prepared(&mut c, &bound).await, ["e1", "e2"]);
    // Re-binding the original handle works on the new process too.
    let globex = bind(&mut c, &created, "globex").await;
    assert_eq!(run_prepared(&mut c, &globex).await, ["e3"]);
}

#[tokio::test]
async fn catalog_commands_describe_what_can_be_queried() {
    let s = TestServer::start().await;
    seed(&s).await;
    let mut c = client(&s).await;

    let info = c.get_catalogs().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&fetch(&mut c, info).await, 0), ["cxdb"]);

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let schemas = strings(&fetch(&mut c, info).await, 1);
    assert!(schemas.contains(&"public".to_string()), "{schemas:?}");
    assert!(
        schemas.contains(&"information_schema".to_string()),
        "{schemas:?}"
    );
    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("cxdb".into()),
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batches = fetch(&mut c, info).await;
    assert_eq!(strings(&batches, 0), ["cxdb"]);
    assert_eq!(strings(&batches, 1), ["public"]);

    // GetTables with include_schema: IPC-encoded schemas that decode.
    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("cxdb".into()),
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("ev%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batches = fetch(&mut c, info).await;
    assert_eq!(strings(&batches, 2), ["events"]);
    assert_eq!(strings(&batches, 3), ["TABLE"]);
    let ipc = batches[0]
        .column_by_name("table_schema")
        .unwrap_or_else(|| panic!("no table_schema column"));
    let ipc = ipc
        .as_any()
        .downcast_ref::<BinaryArray>()
        .unwrap_or_else(|| panic!("table_schema is {}", ipc.data_type()));
    let schema = try_schema_from_ipc_buffer(ipc.value(0)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema.field(0).name(), "tenant_id");
    assert!(
        schema
            .field_with_name("csat_score")
            .is_ok_and(|f| f.data_type() == &DataType::Int32)
    );
    assert!(
        schema
            .field_with_name("tags")
            .is_ok_and(|f| matches!(f.data_type(), DataType::List(_)))
    );

    // Table types filter; information_schema tables are views, as in
    // information_schema.tables.
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("information_schema".into()),
            table_name_filter_pattern: None,
            table_types: vec!["VIEW".into()],
            include_schema: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batches = fetch(&mut c, info).await;
    let names = strings(&batches, 2);
    assert!(names.contains(&"tables".to_string()), "{names:?}");
    assert!(names.contains(&"columns".to_string()), "{names:?}");
    assert!(
        batches
            .iter()
            .all(|b| b.column_by_name("table_schema").is_none())
    );

    let info = c.get_table_types().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(strings(&fetch(&mut c, info).await, 0), ["TABLE", "VIEW"]);

    // GetSqlInfo: server name and version, keywords.
    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerVersion,
            SqlInfo::FlightSqlServerReadOnly,
            SqlInfo::SqlKeywords,
            SqlInfo::SqlIdentifierQuoteChar,
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batches = fetch(&mut c, info).await;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(batch.num_rows(), 5);
    let names = batch.column(0).as_any().downcast_ref::<UInt32Array>();
    let values = batch.column(1).as_any().downcast_ref::<UnionArray>();
    let (Some(names), Some(values)) = (names, values) else {
        panic!("GetSqlInfo schema: {:?}", batch.schema());
    };
    let value = |info: SqlInfo| {
        let row = (0..names.len())
            .find(|&r| names.value(r) == info as u32)
            .unwrap_or_else(|| panic!("{info:?} missing"));
        values.value(row)
    };
    let text = |a: ArrayRef| a.as_string::<i32>().value(0).to_string();
    assert_eq!(text(value(SqlInfo::FlightSqlServerName)), "cxdb");
    assert_eq!(
        text(value(SqlInfo::FlightSqlServerVersion)),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(text(value(SqlInfo::SqlIdentifierQuoteChar)), "\"");
    assert!(
        value(SqlInfo::FlightSqlServerReadOnly)
            .as_boolean()
            .value(0)
    );
    let keywords = value(SqlInfo::SqlKeywords);
    let keywords = keywords.as_list::<i32>().value(0);
    let keywords: Vec<_> = keywords.as_string::<i32>().iter().flatten().collect();
    assert!(
        keywords.contains(&"SELECT") && keywords.contains(&"WHERE"),
        "{keywords:?}"
    );

    // Every key a JDBC driver reads is there when it asks for all of them.
    let info = c
        .get_sql_info(vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: usize = fetch(&mut c, info).await.iter().map(|b| b.num_rows()).sum();
    assert!(rows >= 80, "{rows} SqlInfo rows");

    let info = c
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let types = strings(&fetch(&mut c, info).await, 0);
    for t in ["BIGINT", "VARCHAR", "TIMESTAMP", "DOUBLE", "BOOLEAN"] {
        assert!(types.contains(&t.to_string()), "{t} missing from {types:?}");
    }

    // Session options are answered, not UNIMPLEMENTED.
    let mut raw = FlightServiceClient::new(s.channel().await);
    for action in ["GetSessionOptions", "SetSessionOptions", "CloseSession"] {
        let results: Vec<_> = raw
            .do_action(Action {
                r#type: action.into(),
                body: Default::default(),
            })
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"))
            .into_inner()
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(results.len(), 1, "{action}");
    }
}

#[tokio::test]
async fn handshake_answers_basic_auth_with_a_bearer_token() {
    let s = TestServer::start().await;
    seed(&s).await;
    let mut c = client(&s).await;
    c.handshake("analyst", "secret-token")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.token().map(String::as_str), Some("secret-token"));
    // Later calls carry `authorization: Bearer secret-token`.
    let batches = query(&mut c, "SELECT count(*) FROM events").await;
    assert_eq!(strings(&batches, 0), ["3"]);

    // An authorization scheme that is neither Bearer nor Basic is refused.
    let mut c = client(&s).await;
    c.set_header("authorization", "Digest abc");
    let err = status(
        c.execute("SELECT 1".into(), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted")),
    );
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("Digest"), "{}", err.message());
}

#[tokio::test]
async fn errors_name_the_problem() {
    let s = TestServer::start().await;
    seed(&s).await;
    let mut c = client(&s).await;
    let fail = |sql: &'static str| {
        let mut c = c.clone();
        async move {
            status(
                c.execute(sql.into(), None)
                    .await
                    .err()
                    .unwrap_or_else(|| panic!("{sql}: accepted")),
            )
        }
    };
    let err = fail("SELEC 1").await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("SELEC"), "{}", err.message());
    let err = fail("SELECT * FROM nope").await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("nope"), "{}", err.message());
    let err = fail("CREATE TABLE t (x INT)").await;
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = fail("DELETE FROM events").await;
    assert_eq!(err.code(), Code::InvalidArgument);

    // An error while streaming ends the stream with its status.
    let info = c
        .execute("SELECT CAST(event_id AS INT) FROM events".into(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ticket = info.endpoint[0]
        .ticket
        .clone()
        .unwrap_or_else(|| panic!("no ticket"));
    let result: Result<Vec<RecordBatch>, _> = match c.do_get(ticket).await {
        Ok(stream) => stream.try_collect().await,
        Err(e) => Err(e),
    };
    let err = status(result.err().unwrap_or_else(|| panic!("cast succeeded")));
    assert_eq!(err.code(), Code::InvalidArgument);
    // Two partitions (acme's day 0: e1, e2; globex's day 1: e3) are cast in
    // parallel: whichever fails first names its value.
    assert!(
        ["'e1'", "'e3'"].iter().any(|v| err.message().contains(v)),
        "{}",
        err.message()
    );

    // Handles and tickets this server did not issue.
    let mut raw = FlightServiceClient::new(s.channel().await);
    let cmd = CommandPreparedStatementQuery {
        prepared_statement_handle: "no-such-handle".into(),
    };
    let err = raw
        .get_flight_info(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()))
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("unknown prepared statement handle"),
        "{}",
        err.message()
    );
    let err = raw
        .do_get(Ticket::new("garbage"))
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = raw
        .do_action(Action {
            r#type: "NoSuchAction".into(),
            body: Default::default(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);

    // The server is still serving.
    assert_eq!(strings(&query(&mut c, "SELECT 1 + 1").await, 0), ["2"]);
}

/// The schema `GetFlightInfo` announces is the schema `DoGet` streams, even
/// where DataFusion's planned and executed schemas differ (ADBC refuses a
/// mismatch): a list aggregated from strings (`List(Utf8)` planned,
/// `List(Utf8View)` executed) and `coalesce` over an outer join (NOT NULL
/// planned, nullable executed), as in the `journeys` view.
#[tokio::test]
async fn announced_schema_is_the_streamed_schema() {
    let s = TestServer::start().await;
    seed(&s).await;
    let mut c = client(&s).await;
    let sql = "SELECT e.tenant_id, array_agg(e.channel) AS channels, \
               coalesce(max(x.n), 0) AS n, count(*) AS events \
               FROM events e LEFT JOIN (SELECT tenant_id, count(*) AS n FROM events \
               WHERE channel = 'sms' GROUP BY tenant_id) x ON x.tenant_id = e.tenant_id \
               GROUP BY e.tenant_id ORDER BY e.tenant_id";
    let info = c
        .execute(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let announced = info
        .clone()
        .try_decode_schema()
        .unwrap_or_else(|e| panic!("{e}"));
    let batches = fetch(&mut c, info).await;
    assert!(!batches.is_empty());
    for b in &batches {
        assert_eq!(b.schema().as_ref(), &announced);
    }
    assert_eq!(
        announced.field(1).data_type(),
        &DataType::List(Arc::new(arrow::datatypes::Field::new(
            "item",
            DataType::Utf8,
            true
        )))
    );
    assert_eq!(strings(&batches, 0), vec!["acme", "globex"]);
    assert_eq!(strings(&batches, 2), vec!["0", "0"]);
    assert_eq!(strings(&batches, 3), vec!["2", "1"]);
}
