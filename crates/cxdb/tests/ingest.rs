use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_flight::FlightDescriptor;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use cxdb_proto::v1::admin_service_client::AdminServiceClient;
use cxdb_proto::v1::{FlushRequest, WriteRequest};
use futures::StreamExt;

use crate::server::*;

/// `WriteStream`: each message is written as it arrives and the one answer
/// sums them, with indexes counted across the messages of the stream.
#[tokio::test]
async fn grpc_write_stream_sums_its_messages() {
    let s = TestServer::start().await;
    let messages = vec![
        // Indexes 0 and 1.
        WriteRequest {
            events: vec![event("acme", "s1", "chat"), event("acme", "s2", "email")],
            atomic: false,
        },
        // 2: a duplicate of s1 (an earlier message); 3: rejected; 4: new.
        WriteRequest {
            events: vec![
                event("acme", "s1", "chat"),
                event("acme", "s-bad", "fax"),
                event("acme", "s3", "chat"),
            ],
            atomic: false,
        },
        WriteRequest {
            events: vec![],
            atomic: false,
        },
        // 5 and 6, atomic with a bad event: neither is written.
        WriteRequest {
            events: vec![event("acme", "s4", "chat"), event("acme", "", "chat")],
            atomic: true,
        },
    ];
    let resp = s
        .ingest()
        .await
        .write_stream(futures::stream::iter(messages))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(
        (
            resp.accepted,
            resp.duplicate,
            resp.duplicate_indexes.clone()
        ),
        (3, 1, vec![2])
    );
    let rejected: Vec<(u32, &str)> = resp
        .rejected
        .iter()
        .map(|r| (r.index, r.field.as_str()))
        .collect();
    assert_eq!(rejected, [(3, "channel"), (6, "event_id")]);
    assert_eq!(
        s.count("SELECT count(*) FROM events WHERE event_id IN ('s1', 's2', 's3', 's4')")
            .await,
        3
    );
}

#[tokio::test]
async fn grpc_http_and_flight_write_one_table() {
    let s = TestServer::start().await;
    // gRPC: 2 accepted, 1 duplicate (same id twice), 1 rejected.
    let mut bad = event("acme", "g-bad", "fax");
    bad.channel = Some("fax".into());
    let resp = s
        .ingest()
        .await
        .write(WriteRequest {
            events: vec![
                event("acme", "g1", "chat"),
                event("acme", "g2", "email"),
                event("acme", "g1", "chat"),
                bad,
            ],
            atomic: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(
        (
            resp.accepted,
            resp.duplicate,
            resp.duplicate_indexes.clone()
        ),
        (2, 1, vec![2])
    );
    assert_eq!(resp.rejected.len(), 1);
    assert_eq!(
        (resp.rejected[0].index, resp.rejected[0].field.as_str()),
        (3, "channel")
    );

    // HTTP NDJSON: line 2 is a duplicate of a gRPC event, line 4 is bad JSON.
    let body = format!(
        "{}\n{}\n\n{{not json\n",
        r#"{"tenant_id":"acme","event_id":"h1","event_time":"2026-01-01T00:00:05Z","event_type":"conversation.created","conversation_id":"c9","channel":"whatsapp"}"#,
        r#"{"tenant_id":"acme","event_id":"g1","event_time":"2026-01-01T00:00:01Z","event_type":"conversation.created","conversation_id":"c-g1","channel":"chat"}"#,
    );
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", s.http))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let json: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["accepted"], 1);
    assert_eq!(json["duplicate"], 1);
    assert_eq!(json["rejected"][0]["line"], 4);
    assert_eq!(json["rejected"][0]["field"], "line");

    // Flight DoPut: a batch with only the required columns and channel.
    let s_arr = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
    let batch = RecordBatch::try_from_iter(vec![
        ("tenant_id", s_arr(vec!["acme", "acme"])),
        ("event_id", s_arr(vec!["f1", "f2"])),
        (
            "event_time",
            Arc::new(TimestampMicrosecondArray::from(vec![DAY0, DAY0]).with_timezone("UTC"))
                as ArrayRef,
        ),
        (
            "event_type",
            s_arr(vec!["conversation.created", "conversation.created"]),
        ),
        ("conversation_id", s_arr(vec!["cf1", "cf2"])),
        ("channel", s_arr(vec!["sms", "sms"])),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let mut flight = FlightServiceClient::new(s.channel().await);
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["events".into()])))
        .build(futures::stream::iter(vec![Ok(batch)]))
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")));
    let mut results = flight
        .do_put(data)
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
    assert_eq!(meta["accepted"], 2);

    // One table: chat 1 (g1), email 1, whatsapp 1, sms 2.
    assert_eq!(s.count("SELECT count(*) FROM events").await, 5);
    assert_eq!(
        s.count("SELECT count(*) FROM events WHERE channel = 'sms'")
            .await,
        2
    );

    // Flush persists; the catalog lists the file; the data is still there.
    let mut admin = AdminServiceClient::new(s.channel().await);
    let f = admin
        .flush(FlushRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!((f.files, f.rows), (1, 5));
    assert_eq!(s.count("SELECT count(*) FROM events").await, 5);
    let r = reqwest::get(format!("{}/metrics", s.http))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let metrics = r.text().await.unwrap_or_default();
    assert!(
        metrics.contains("cxdb_events_total{protocol=\"grpc\",outcome=\"accepted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cxdb_events_total{protocol=\"http\",outcome=\"rejected\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cxdb_persisted_files 1"), "{metrics}");
    // Every durable write went through a WAL fsync, timed in the histogram
    // (3 ingest requests: gRPC, HTTP, Flight; group commit may merge some).
    let fsyncs = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cxdb_wal_fsync_duration_seconds_count "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no fsync histogram: {metrics}"));
    assert!((1..=3).contains(&fsyncs), "{fsyncs} fsyncs");
    assert!(
        metrics.contains(&format!(
            "cxdb_wal_fsync_duration_seconds_bucket{{le=\"+Inf\"}} {fsyncs}"
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn sigterm_persists_and_restart_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut s = TestServer::start_in(tmp.path(), &[]).await;
    s.ingest()
        .await
        .write(WriteRequest {
            events: vec![event("acme", "t1", "chat")],
            atomic: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = s
        .terminate()
        .await
        .unwrap_or_else(|| panic!("no exit status"));
    assert!(status.success(), "exit status {status:?}");
    let files = std::fs::read_dir(
        tmp.path()
            .join("data/events/tenant_id=acme/date=2026-01-01"),
    )
    .map(|d| d.count())
    .unwrap_or(0);
    assert_eq!(files, 1, "the buffer was persisted at shutdown");
    let s = TestServer::start_in(tmp.path(), &[]).await;
    assert_eq!(s.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn sigkill_during_concurrent_http_and_grpc_writes_loses_no_ack() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut s = TestServer::start_in(tmp.path(), &[]).await;
    let acked: Arc<Mutex<HashSet<String>>> = Default::default();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let acked = Arc::clone(&acked);
        let grpc = s.grpc.clone();
        let http = s.http.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let channel = tonic::transport::Endpoint::from_shared(grpc)
                .unwrap_or_else(|e| panic!("{e}"))
                .connect_lazy();
            let mut ingest = cxdb_proto::v1::ingest_service_client::IngestServiceClient::new(channel);
            for n in 0.. {
                let ids: Vec<String> = (0..5).map(|i| format!("w{w}-{n}-{i}")).collect();
                let ok = if w % 2 == 0 {
                    let events = ids.iter().map(|id| event("acme", id, "chat")).collect();
                    ingest.write(WriteRequest { events, atomic: false }).await.is_ok_and(|r| r.get_ref().accepted == 5)
                } else {
                    let body: String = ids
                        .iter()
                        .map(|id| format!("{{\"tenant_id\":\"acme\",\"event_id\":\"{id}\",\"event_time\":{DAY0},\"event_type\":\"conversation.created\",\"conversation_id\":\"c\",\"channel\":\"email\"}}\n"))
                        .collect();
                    match client.post(format!("{http}/v1/events")).body(body).send().await {
                        Ok(r) if r.status() == 200 => r
                            .json::<serde_json::Value>()
                            .await
                            .is_ok_and(|j| j["accepted"] == 5),
                        _ => false,
                    }
                };
                if !ok {
                    return; // the server is gone
                }
                acked.lock().unwrap_or_else(|e| e.into_inner()).extend(ids);
            }
        }));
    }
    // Let the writers get going, then pull the plug.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.lock().unwrap_or_else(|e| e.into_inner()).len() < 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "writers made no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    s.kill();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let s = TestServer::start_in(tmp.path(), &[]).await;
    let batches = s
        .sql("SELECT event_id FROM events")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = HashSet::new();
    for b in &batches {
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .unwrap_or_else(|| panic!("ids"));
        for i in 0..ids.len() {
            assert!(
                seen.insert(ids.value(i).to_string()),
                "{} stored twice",
                ids.value(i)
            );
        }
    }
    let lost: Vec<_> = acked.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
