//! Bad input on every protocol: the exact status and a message naming the
//! problem, and nothing written.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, DictionaryArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::Int32Type;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor, PutResult};
use cxdb_proto::v1::WriteRequest;
use futures::{StreamExt, TryStreamExt};
use tonic::Code;

use crate::server::*;

async fn nothing_written(s: &TestServer) {
    assert_eq!(s.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn grpc_bad_input() {
    let s = TestServer::start().await;
    let mut ingest = s.ingest().await;
    // Bad tenant: per-event rejection naming the field.
    let r = ingest
        .write(WriteRequest {
            events: vec![event("Not_Valid", "e1", "chat")],
            atomic: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(r.accepted, 0);
    assert_eq!(r.rejected[0].field, "tenant_id");
    assert!(
        r.rejected[0].error.contains("does not match"),
        "{}",
        r.rejected[0].error
    );
    // Atomic: one bad event, nothing written.
    let r = ingest
        .write(WriteRequest {
            events: vec![event("acme", "ok", "chat"), event("acme", "", "chat")],
            atomic: true,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!((r.accepted, r.rejected.len()), (0, 1));
    assert_eq!(r.rejected[0].field, "event_id");
    // Malformed protobuf: raw bytes that are not a WriteRequest.
    let mut grpc = tonic::client::Grpc::new(s.channel().await);
    grpc.ready().await.unwrap_or_else(|e| panic!("{e}"));
    let codec = RawCodec;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/cxdb.v1.IngestService/Write");
    let err = grpc
        .unary(
            tonic::Request::new(vec![0x0a, 0xff, 0xff, 0xff]),
            path,
            codec,
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("malformed protobuf accepted"));
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(err.message().contains("decode"), "{}", err.message());
    // Bad SQL.
    let err = s
        .sql("SELEC 1")
        .await
        .err()
        .unwrap_or_else(|| panic!("bad SQL accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("SELEC"), "{}", err.message());
    let err = s
        .sql("SELECT nope FROM events")
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("nope"), "{}", err.message());
    let err = s
        .sql("SELECT * FROM nowhere")
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("nowhere"), "{}", err.message());
    let err = s
        .sql("CREATE TABLE t AS SELECT 1")
        .await
        .err()
        .unwrap_or_else(|| panic!("DDL accepted"));
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    nothing_written(&s).await;
}

/// Sends raw bytes as a gRPC message, to test the server's decoder.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        *self
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[tokio::test]
async fn http_bad_input() {
    let s = TestServer::start().await;
    let c = reqwest::Client::new();
    let post = |body: Vec<u8>, query: &'static str| {
        let c = c.clone();
        let url = format!("{}/v1/events{query}", s.http);
        async move {
            c.post(url)
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let good = r#"{"tenant_id":"acme","event_id":"h1","event_time":"2026-01-01T00:00:05Z","event_type":"conversation.created","conversation_id":"c9","channel":"chat"}"#;
    // Every line bad: 400 with one entry per line, naming the field.
    let r = post(
        b"{\"tenant_id\":\"acme\",\"event_id\":\"x\",\"event_time\":\"yesterday\"}\n[1,2]\n"
            .to_vec(),
        "",
    )
    .await;
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap_or_default();
    assert_eq!(j["rejected"][0]["field"], "event_time");
    assert_eq!(j["rejected"][0]["event_id"], "x");
    assert_eq!(j["rejected"][1]["line"], 2);
    // Atomic: a good line and a bad one: nothing written.
    let r = post(
        format!("{good}\n{{\"tenant_id\":\"BAD\"}}\n").into_bytes(),
        "?atomic=true",
    )
    .await;
    assert_eq!(r.status(), 400);
    // Not UTF-8 / empty / bad gzip.
    assert_eq!(post(vec![0xff, 0xfe, b'\n'], "").await.status(), 400);
    let r = post(Vec::new(), "").await;
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap_or_default();
    assert!(
        j["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no events"),
        "{j}"
    );
    let r = c
        .post(format!("{}/v1/events", s.http))
        .header("content-encoding", "gzip")
        .body(b"not gzip".to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 400);
    // Oversized: more than --max-request-bytes (64 MiB default) → 413 JSON.
    let big = vec![b' '; (64 << 20) + 1];
    let r = post(big, "").await;
    assert_eq!(r.status(), 413);
    let j: serde_json::Value = r.json().await.unwrap_or_default();
    assert!(
        j["error"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than the limit"),
        "{j}"
    );
    nothing_written(&s).await;
    // gzip works.
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(good.as_bytes());
    let r = c
        .post(format!("{}/v1/events", s.http))
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap_or_default())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    assert_eq!(s.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn flight_bad_input() {
    let s = TestServer::start().await;
    let flight = FlightServiceClient::new(s.channel().await);
    let put = |batch: RecordBatch, path: &str| {
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![path.to_string()])))
            .build(futures::stream::iter(vec![Ok(batch)]))
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")));
        let mut flight = flight.clone();
        async move {
            match flight.do_put(data).await {
                Err(e) => Err(e),
                Ok(r) => match r.into_inner().next().await {
                    Some(Err(e)) => Err(e),
                    other => Ok(other),
                },
            }
        }
    };
    let s_arr = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    // Wrong type for event_time.
    let wrong = RecordBatch::try_from_iter(vec![
        ("tenant_id", s_arr("acme")),
        ("event_id", s_arr("f1")),
        (
            "event_time",
            Arc::new(Int64Array::from(vec![DAY0])) as ArrayRef,
        ),
        ("event_type", s_arr("custom.x")),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let err = put(wrong.clone(), "events")
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("\"event_time\" has type Int64"),
        "{}",
        err.message()
    );
    // Unknown column.
    let unknown = RecordBatch::try_from_iter(vec![("colour", s_arr("red"))])
        .unwrap_or_else(|e| panic!("{e}"));
    let err = put(unknown, "events")
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(
        err.message().contains("unknown column \"colour\""),
        "{}",
        err.message()
    );
    // Wrong descriptor.
    let err = put(wrong, "orders")
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("[\"events\"]"), "{}", err.message());
    drop(flight);
    nothing_written(&s).await;
}

/// Encodes `batch` as a DoPut stream to `events` (schema, dictionaries with
/// `Resend`, the batch).
async fn flight_messages(batch: RecordBatch, dictionaries: DictionaryHandling) -> Vec<FlightData> {
    FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["events".into()])))
        .with_dictionary_handling(dictionaries)
        .build(futures::stream::iter(vec![Ok(batch)]))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn put_raw(
    s: &TestServer,
    messages: Vec<FlightData>,
) -> Result<Vec<PutResult>, tonic::Status> {
    let mut flight = FlightServiceClient::new(s.channel().await);
    flight
        .do_put(futures::stream::iter(messages))
        .await?
        .into_inner()
        .try_collect()
        .await
}

#[tokio::test]
async fn flight_ipc_malformed_is_rejected_and_dictionaries_are_decoded() {
    let s = TestServer::start().await;
    let strings = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
    let columns = |event_id: ArrayRef, channel: ArrayRef| {
        RecordBatch::try_from_iter(vec![
            ("tenant_id", strings(vec!["acme", "acme"])),
            ("event_id", event_id),
            (
                "event_time",
                Arc::new(TimestampMicrosecondArray::from(vec![DAY0, DAY0]).with_timezone("UTC"))
                    as ArrayRef,
            ),
            ("event_type", strings(vec!["custom.x", "custom.x"])),
            ("channel", channel),
        ])
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let plain = columns(strings(vec!["d1", "d2"]), strings(vec!["chat", "email"]));
    let good = flight_messages(plain, DictionaryHandling::Hydrate).await;
    assert_eq!(good.len(), 2, "schema and batch");
    let (schema, batch) = (good[0].clone(), good[1].clone());
    let rejected = |messages: Vec<FlightData>, what: &'static str| {
        let s = &s;
        async move {
            let err = put_raw(s, messages)
                .await
                .err()
                .unwrap_or_else(|| panic!("{what}: accepted"));
            assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err}");
            assert!(
                err.message().starts_with("invalid Arrow Flight data"),
                "{what}: {}",
                err.message()
            );
            err.message().to_string()
        }
    };

    // A batch before the schema.
    let mut first = batch.clone();
    first.flight_descriptor = schema.flight_descriptor.clone();
    let m = rejected(vec![first], "batch first").await;
    assert!(m.contains("before the schema"), "{m}");
    // A header that is not a flatbuffer Message.
    let mut garbage = batch.clone();
    garbage.data_header = bytes::Bytes::from_static(b"not an Arrow IPC message");
    let m = rejected(vec![schema.clone(), garbage], "garbage header").await;
    assert!(m.contains("header is not valid"), "{m}");
    // A body shorter than its header declares.
    let mut truncated = batch.clone();
    truncated.data_body = batch.data_body.slice(..batch.data_body.len() / 2);
    let m = rejected(vec![schema.clone(), truncated], "truncated body").await;
    assert!(m.contains("byte body, the message has"), "{m}");
    // A header whose body length was forged down to 8 bytes (and a body of
    // 8 bytes): its buffers now lie outside the body. arrow-ipc alone would
    // panic slicing them.
    let declared = (batch.data_body.len() as i64).to_le_bytes();
    let header = batch.data_header.to_vec();
    let at: Vec<usize> = (0..header.len() - 8)
        .filter(|&i| header[i..i + 8] == declared)
        .collect();
    assert_eq!(at.len(), 1, "the body length occurs once in the header");
    let mut forged_header = header.clone();
    forged_header[at[0]..at[0] + 8].copy_from_slice(&8i64.to_le_bytes());
    let mut forged = batch.clone();
    forged.data_header = forged_header.into();
    forged.data_body = batch.data_body.slice(..8);
    let m = rejected(vec![schema.clone(), forged], "forged buffers").await;
    assert!(m.contains("lies outside the 8-byte body"), "{m}");
    // Bytes that are not UTF-8 in a column the schema calls Utf8: the
    // batch is encoded as Binary (the same buffers), the schema as Utf8.
    let binary = columns(
        Arc::new(BinaryArray::from(vec![&b"d1"[..], &[0xff, 0xfe][..]])),
        strings(vec!["chat", "email"]),
    );
    let binary = flight_messages(binary, DictionaryHandling::Hydrate).await;
    let m = rejected(vec![schema.clone(), binary[1].clone()], "invalid UTF-8").await;
    assert!(m.to_lowercase().contains("utf"), "{m}");
    nothing_written(&s).await;

    // A dictionary-encoded column (a pandas categorical), sent as a
    // dictionary message before the batch: decoded and stored as strings.
    let channel: DictionaryArray<Int32Type> = vec!["chat", "email"].into_iter().collect();
    let dict = columns(strings(vec!["d1", "d2"]), Arc::new(channel));
    let messages = flight_messages(dict, DictionaryHandling::Resend).await;
    assert_eq!(messages.len(), 3, "schema, dictionary, batch");
    let results = put_raw(&s, messages)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let meta: serde_json::Value =
        serde_json::from_slice(&results[0].app_metadata).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meta["accepted"], 2, "{meta}");
    assert_eq!(
        s.count("SELECT count(*) FROM events WHERE channel = 'email' AND event_id = 'd2'")
            .await,
        1
    );
}
