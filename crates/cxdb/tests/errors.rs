//! Bad input on every protocol: the exact status and a message naming the
//! problem, and nothing written.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_flight::FlightDescriptor;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use cxdb_proto::v1::WriteRequest;
use futures::StreamExt;
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
