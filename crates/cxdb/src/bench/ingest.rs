//! `cxdb bench ingest`: ingest through a real server, per protocol.
//!
//! Every cell starts its own `cxdb serve` child process (this binary, port 0,
//! `--ports-file`, a fresh data directory), so no cell sees another's events
//! (dedup never hits) and each cell's peak RSS (`VmHWM`) is its own. The
//! events are pre-generated and pre-encoded in the protocol's wire form
//! before the clock starts; C clients then write closed-loop (send a batch,
//! wait for its durable ack, send the next) for `--cell-secs` seconds:
//!
//! - gRPC `IngestService.Write`, one tonic channel per client;
//! - Arrow Flight `DoPut` with descriptor path `["events"]`, one long-lived
//!   DoPut stream per client, one `PutResult` awaited per batch;
//! - HTTP `POST /v1/events` with an NDJSON body, one keep-alive HTTP/1.1
//!   connection per client.
//!
//! Freshness: on the server of each protocol's last cell (which holds that
//! cell's events), small batches of a fresh tenant are written one at a
//! time; after each ack, `SELECT count(*) FROM events WHERE tenant_id = …`
//! runs over gRPC `QueryService.Sql` until the count includes the batch.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightData, FlightDescriptor, PutResult, SchemaAsIpc};
use cxdb_model::{Event, EventBatchBuilder};
use cxdb_proto::v1::{WriteRequest, WriteResponse};
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tonic::transport::Channel;

use super::events::Generator;
use super::{
    DataDir, IngestArgs, fmt_bytes, fmt_int, load_average, machine_header, ms, new_histogram,
    proc_kib, yes_no,
};

const BATCH_SIZES: [usize; 2] = [100, 10_000];
const CLIENTS: [usize; 2] = [1, 8];
/// Events per freshness write.
const FRESH_BATCH: usize = 10;
/// Issue #8 targets, at 10,000-event batches (the best of 1 and 8 clients).
const TARGET_FLIGHT: f64 = 1_000_000.0;
const TARGET_GRPC: f64 = 500_000.0;
const TARGET_FRESH_P99_MS: f64 = 100.0;
/// Most events one cell pre-generates (wire form: ~0.4–1 KiB each).
const MAX_CELL_EVENTS: u64 = 5_000_000;
/// A batch not visible after this long is an error, not a figure.
const FRESH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Grpc,
    Flight,
    Http,
}

impl Protocol {
    pub(crate) const ALL: [Protocol; 3] = [Protocol::Grpc, Protocol::Flight, Protocol::Http];

    fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "gRPC Write",
            Protocol::Flight => "Flight DoPut",
            Protocol::Http => "HTTP NDJSON",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Flight => "flight",
            Protocol::Http => "http",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "grpc" => Ok(Protocol::Grpc),
            "flight" => Ok(Protocol::Flight),
            "http" => Ok(Protocol::Http),
            other => Err(format!("unknown protocol {other:?} (grpc, flight, http)")),
        }
    }

    /// Events a cell pre-generates per second of its time: above what the
    /// machine reaches, so the cell normally ends on time.
    fn budget_per_sec(self, batch: usize) -> f64 {
        match (self, batch) {
            (_, 100) => 500_000.0,
            (Protocol::Flight | Protocol::Grpc, _) => 1_600_000.0,
            (Protocol::Http, _) => 800_000.0,
        }
    }
}

pub(super) async fn run(args: &IngestArgs) -> anyhow::Result<String> {
    let cell_time = Duration::try_from_secs_f64(args.cell_secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow!("--cell-secs must be a positive number of seconds"))?;
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locating this binary")?,
    };
    let protocols: Vec<Protocol> = if args.protocols.is_empty() {
        Protocol::ALL.to_vec()
    } else {
        args.protocols.clone()
    };
    let work = DataDir::new("ingest", args.dir.clone(), args.keep)?;
    let mut r = machine_header("cxdb ingest benchmark");
    let _ = writeln!(
        r,
        "- server: `{} serve` as a child process per cell (port 0, fresh data directory \
         under `{}`, defaults: auth none on loopback, background persister at 1,000,000 rows \
         or 60 s); each cell's clock starts once the server has built its maintained views \
         (`conversation_state`, `replies`: empty at start); the clients run in this process, \
         on the same machine",
        binary.display(),
        work.path.display()
    );

    let mut cells = Vec::new();
    let mut fresh = Vec::new();
    let mut generated = (0u64, 0f64);
    for &proto in &protocols {
        for batch in BATCH_SIZES {
            for clients in CLIENTS {
                let last = batch == BATCH_SIZES[1] && clients == CLIENTS[1];
                let repeat = if last { args.repeat } else { 1 };
                let mut runs = Vec::new();
                for run in 1..=repeat {
                    eprintln!(
                        "ingest: {}, batch {batch}, {clients} client(s){}…",
                        proto.name(),
                        if repeat > 1 {
                            format!(", run {run} of {repeat}")
                        } else {
                            String::new()
                        }
                    );
                    let dir =
                        work.fresh_subdir(&format!("{}-b{batch}-c{clients}-r{run}", proto.slug()))?;
                    // Freshness is measured on the server of the last run.
                    let (cell, f) = run_cell(
                        &binary,
                        &dir,
                        proto,
                        batch,
                        clients,
                        cell_time,
                        args.seed,
                        (last && run == repeat).then_some(args.freshness_samples),
                    )
                    .await?;
                    work.remove_subdir(&dir);
                    generated.0 += cell.generated;
                    generated.1 += cell.generate_secs;
                    fresh.extend(f);
                    runs.push(cell);
                }
                cells.push(median_run(runs)?);
            }
        }
    }
    let _ = writeln!(
        r,
        "- events: the bench generator (seed {}; 3 tenants, help-desk mix, bodies of 20–200 \
         characters), generated and encoded into the protocol's wire form before each cell's \
         clock starts: {:.2} µs of one core per event",
        args.seed,
        generated.1 * 1e6 / generated.0.max(1) as f64
    );
    let _ = writeln!(
        r,
        "- anything else running on the machine (compilers, tests, other VMs on the host) \
         shows up in these figures on 2 cores; the load averages at start and end are \
         given"
    );
    write_targets(&mut r, &cells, &fresh);
    write_cells(&mut r, &cells, cell_time);
    write_fresh(&mut r, &fresh);
    let _ = writeln!(r, "\n- load average at the end: {}", load_average());
    Ok(r)
}

/// One cell of the matrix.
struct Cell {
    proto: Protocol,
    batch: usize,
    clients: usize,
    events: u64,
    writes: u64,
    secs: f64,
    acks: Histogram<u64>,
    exhausted: bool,
    server_cpu_secs: f64,
    /// `VmHWM` of the server at the end of the cell.
    server_peak_rss: Option<u64>,
    /// `VmRSS` of the server right after start.
    server_start_rss: Option<u64>,
    generated: u64,
    generate_secs: f64,
    /// Events/s of every run of this cell, in run order (one unless
    /// `--repeat`); the other fields are the median run's.
    runs: Vec<f64>,
}

/// The run with the median events/s (the lower middle of an even count),
/// knowing the rates of all.
fn median_run(mut runs: Vec<Cell>) -> anyhow::Result<Cell> {
    let rates: Vec<f64> = runs.iter().map(Cell::events_per_sec).collect();
    runs.sort_by(|a, b| a.events_per_sec().total_cmp(&b.events_per_sec()));
    let mut cell = runs
        .into_iter()
        .nth((rates.len().max(1) - 1) / 2)
        .ok_or_else(|| anyhow!("a cell ran no time"))?;
    cell.runs = rates;
    Ok(cell)
}

impl Cell {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.secs.max(1e-9)
    }
}

/// Per-client tally, merged after the cell.
struct Tally {
    acks: Histogram<u64>,
    events: u64,
    writes: u64,
    last_ack: Option<Instant>,
    exhausted: bool,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            acks: new_histogram()?,
            events: 0,
            writes: 0,
            last_ack: None,
            exhausted: false,
        })
    }

    fn merge(&mut self, o: &Tally) -> anyhow::Result<()> {
        self.acks
            .add(&o.acks)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        self.events += o.events;
        self.writes += o.writes;
        self.last_ack = self.last_ack.max(o.last_ack);
        self.exhausted |= o.exhausted;
        Ok(())
    }
}

/// One request's body, ready to send: encoded before the cell starts, for
/// every protocol, so a cell measures the server rather than the client's
/// encoder (which shares the server's cores).
#[allow(clippy::large_enum_variant)] // a few per cell; boxing would add an allocation per batch
enum Payload {
    /// An encoded `WriteRequest`.
    Grpc(bytes::Bytes),
    Flight(FlightData),
    Http(Vec<u8>),
}

#[allow(clippy::too_many_arguments)]
async fn run_cell(
    binary: &Path,
    dir: &Path,
    proto: Protocol,
    batch: usize,
    clients: usize,
    time: Duration,
    seed: u64,
    freshness: Option<usize>,
) -> anyhow::Result<(Cell, Option<Fresh>)> {
    let budget = ((proto.budget_per_sec(batch) * time.as_secs_f64()) as u64)
        .clamp((batch * clients) as u64, MAX_CELL_EVENTS);
    let round = (batch * clients) as u64;
    let rounds = budget.div_ceil(round).max(1) as usize;
    let total = rounds as u64 * round;
    let prefix = format!("{}b{batch}c{clients}", proto.slug());
    let gen_start = Instant::now();
    let pools = tokio::task::spawn_blocking(move || {
        let mut generator = Generator::new(seed, &prefix, total);
        let mut pools: Vec<Vec<Payload>> =
            (0..clients).map(|_| Vec::with_capacity(rounds)).collect();
        for _ in 0..rounds {
            for pool in &mut pools {
                pool.push(encode(proto, &generator.batch(batch))?);
            }
        }
        Ok::<_, anyhow::Error>(pools)
    })
    .await??;
    let generate_secs = gen_start.elapsed().as_secs_f64();

    let server = Server::start(binary, dir).await?;
    let server_start_rss = server.status_bytes("VmRSS");
    let mut writers = Vec::with_capacity(clients);
    for _ in 0..clients {
        writers.push(Writer::connect(proto, &server).await?);
    }
    eprintln!(
        "  {} events pre-encoded in {generate_secs:.1} s; timed run: {} s",
        fmt_int(total),
        time.as_secs_f64()
    );
    let cpu0 = server.cpu_secs();
    let start = Instant::now();
    let deadline = start + time;
    let mut tasks = Vec::with_capacity(clients);
    for (mut writer, pool) in writers.into_iter().zip(pools) {
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            let mut pool = pool.into_iter();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let Some(payload) = pool.next() else {
                    tally.exhausted = true;
                    break;
                };
                let sent = Instant::now();
                let accepted = writer.write(payload).await?;
                let now = Instant::now();
                tally
                    .acks
                    .saturating_record((now - sent).as_micros().max(1) as u64);
                if accepted != batch as u64 {
                    bail!("a write of {batch} events accepted {accepted}");
                }
                tally.events += accepted;
                tally.writes += 1;
                tally.last_ack = Some(now);
            }
            writer.finish().await?;
            Ok::<_, anyhow::Error>(tally)
        }));
    }
    let mut tally = Tally::new()?;
    for t in tasks {
        tally.merge(&t.await??)?;
    }
    // Over the time until the last ack (a little past the deadline, or
    // earlier if the events ran out).
    let secs = (tally.last_ack.unwrap_or_else(Instant::now) - start).as_secs_f64();
    let server_cpu_secs = server.cpu_secs() - cpu0;
    let server_peak_rss = server.status_bytes("VmHWM");
    let fresh = match freshness {
        Some(samples) => {
            eprintln!("  freshness: {samples} writes of {FRESH_BATCH} events…");
            Some(measure_freshness(proto, &server, samples, seed).await?)
        }
        None => None,
    };
    server.stop().await;
    Ok((
        Cell {
            proto,
            batch,
            clients,
            events: tally.events,
            writes: tally.writes,
            secs,
            acks: tally.acks,
            exhausted: tally.exhausted,
            server_cpu_secs,
            server_peak_rss,
            server_start_rss,
            generated: total,
            generate_secs,
            runs: Vec::new(),
        },
        fresh,
    ))
}

/// The events schema as a client sends it: `ingested_at` is the server's.
fn wire_schema() -> Schema {
    let schema = cxdb_model::events_schema();
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != "ingested_at")
        .cloned()
        .collect();
    Schema::new(fields)
}

fn encode(proto: Protocol, events: &[Event]) -> anyhow::Result<Payload> {
    Ok(match proto {
        Protocol::Grpc => Payload::Grpc(
            prost::Message::encode_to_vec(&WriteRequest {
                events: events.iter().map(cxdb_server::event_to_proto).collect(),
                atomic: false,
            })
            .into(),
        ),
        Protocol::Flight => {
            let mut builder = EventBatchBuilder::with_capacity(events.len());
            for e in events {
                builder.push(e);
            }
            let full = builder.finish();
            let keep: Vec<usize> = (0..full.num_columns())
                .filter(|&i| full.schema().field(i).name() != "ingested_at")
                .collect();
            let batch: RecordBatch = full.project(&keep)?;
            let schema = wire_schema();
            let mut data = arrow_flight::utils::batches_to_flight_data(&schema, vec![batch])?;
            // [schema, batch]: the schema goes once per stream (Writer).
            if data.len() != 2 {
                bail!(
                    "expected one Flight message per batch, got {}",
                    data.len() - 1
                );
            }
            Payload::Flight(data.pop().ok_or_else(|| anyhow!("no Flight data"))?)
        }
        Protocol::Http => {
            let mut body = Vec::with_capacity(events.len() * 400);
            for e in events {
                serde_json::to_writer(&mut body, &event_json(e))?;
                body.push(b'\n');
            }
            Payload::Http(body)
        }
    })
}

/// An event as an NDJSON object: SPEC §2 names, absent fields left out,
/// `event_time` in epoch microseconds.
fn event_json(e: &Event) -> Value {
    let mut m = Map::new();
    let mut s = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            m.insert(k.to_string(), Value::String(v.clone()));
        }
    };
    s("tenant_id", Some(&e.tenant_id));
    s("event_id", Some(&e.event_id));
    s("event_type", Some(&e.event_type));
    s("channel", e.channel.as_ref());
    s("conversation_id", e.conversation_id.as_ref());
    s("ticket_id", e.ticket_id.as_ref());
    s("customer_id", e.customer_id.as_ref());
    s("customer_email", e.customer_email.as_ref());
    s("customer_phone", e.customer_phone.as_ref());
    s("actor_type", e.actor_type.as_ref());
    s("agent_id", e.agent_id.as_ref());
    s("team_id", e.team_id.as_ref());
    s("status", e.status.as_ref());
    s("priority", e.priority.as_ref());
    s("message_id", e.message_id.as_ref());
    s("body", e.body.as_ref());
    s("bot_id", e.bot_id.as_ref());
    s("intent", e.intent.as_ref());
    s("workflow_id", e.workflow_id.as_ref());
    s("store", e.store.as_ref());
    s("order_id", e.order_id.as_ref());
    s("currency", e.currency.as_ref());
    s("attributes", e.attributes.as_ref());
    m.insert("event_time".into(), Value::from(e.event_time));
    if let Some(v) = e.is_public {
        m.insert("is_public".into(), Value::from(v));
    }
    if let Some(v) = e.csat_score {
        m.insert("csat_score".into(), Value::from(v));
    }
    if let Some(v) = e.confidence {
        m.insert("confidence".into(), Value::from(v));
    }
    if let Some(v) = e.order_total {
        m.insert("order_total".into(), Value::from(v));
    }
    if let Some(v) = e.duration_ms {
        m.insert("duration_ms".into(), Value::from(v));
    }
    if let Some(tags) = &e.tags {
        m.insert("tags".into(), Value::from(tags.clone()));
    }
    Value::Object(m)
}

/// Sends an encoded `WriteRequest` ([`Payload::Grpc`]) as it is; decodes
/// the `WriteResponse` with prost.
#[derive(Debug, Clone, Copy)]
struct EncodedWrite;

impl tonic::codec::Codec for EncodedWrite {
    type Encode = bytes::Bytes;
    type Decode = WriteResponse;
    type Encoder = EncodedWrite;
    type Decoder = EncodedWrite;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Encoder for EncodedWrite {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for EncodedWrite {
    type Item = WriteResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<WriteResponse>, tonic::Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// One client connection of one protocol.
#[allow(clippy::large_enum_variant)] // one per client
enum Writer {
    Grpc(tonic::client::Grpc<Channel>),
    Flight {
        client: FlightClient,
        tx: futures::channel::mpsc::Sender<arrow_flight::error::Result<FlightData>>,
        /// The request stream until the first write opens the DoPut call.
        rx: Option<futures::channel::mpsc::Receiver<arrow_flight::error::Result<FlightData>>>,
        results: Option<BoxStream<'static, arrow_flight::error::Result<PutResult>>>,
    },
    Http(HttpConn),
}

impl Writer {
    async fn connect(proto: Protocol, server: &Server) -> anyhow::Result<Self> {
        Ok(match proto {
            Protocol::Grpc => Writer::Grpc(
                tonic::client::Grpc::new(server.channel().await?)
                    .max_encoding_message_size(usize::MAX)
                    .max_decoding_message_size(usize::MAX),
            ),
            Protocol::Flight => {
                let inner = FlightServiceClient::new(server.channel().await?)
                    .max_encoding_message_size(usize::MAX)
                    .max_decoding_message_size(usize::MAX);
                let (tx, rx) = futures::channel::mpsc::channel(2);
                Writer::Flight {
                    client: FlightClient::new_from_inner(inner),
                    tx,
                    rx: Some(rx),
                    results: None,
                }
            }
            Protocol::Http => Writer::Http(HttpConn::connect(&server.http).await?),
        })
    }

    /// Sends one batch and waits for its durable ack; returns the events
    /// the server accepted.
    async fn write(&mut self, payload: Payload) -> anyhow::Result<u64> {
        match (self, payload) {
            (Writer::Grpc(client), Payload::Grpc(req)) => {
                client.ready().await?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                    "/cxdb.v1.IngestService/Write",
                );
                let out = client
                    .unary(tonic::Request::new(req), path, EncodedWrite)
                    .await
                    .map_err(|s| anyhow!("gRPC Write: {:?}: {}", s.code(), s.message()))?
                    .into_inner();
                Ok(out.accepted)
            }
            (
                Writer::Flight {
                    client,
                    tx,
                    rx,
                    results,
                },
                Payload::Flight(data),
            ) => {
                if let Some(rx) = rx.take() {
                    // The stream opens with the schema and the descriptor;
                    // the server reads the descriptor before it answers.
                    let schema = wire_schema();
                    let first =
                        FlightData::from(SchemaAsIpc::new(&schema, &IpcWriteOptions::default()))
                            .with_descriptor(FlightDescriptor::new_path(vec!["events".into()]));
                    tx.send(Ok(first)).await?;
                    tx.send(Ok(data)).await?;
                    *results = Some(client.do_put(rx).await?);
                } else {
                    tx.send(Ok(data)).await?;
                }
                let put = results
                    .as_mut()
                    .ok_or_else(|| anyhow!("DoPut is not open"))?
                    .next()
                    .await
                    .ok_or_else(|| anyhow!("DoPut ended without a PutResult"))??;
                let meta: Value = serde_json::from_slice(&put.app_metadata)
                    .context("PutResult app_metadata is not JSON")?;
                accepted_of(&meta)
            }
            (Writer::Http(conn), Payload::Http(body)) => {
                let (status, text) = conn.request("POST", "/v1/events", &body).await?;
                if status != 200 {
                    bail!(
                        "POST /v1/events: {status}: {}",
                        String::from_utf8_lossy(&text)
                    );
                }
                accepted_of(&serde_json::from_slice(&text)?)
            }
            _ => bail!("payload of another protocol"),
        }
    }

    /// Ends a DoPut stream cleanly.
    async fn finish(self) -> anyhow::Result<()> {
        if let Writer::Flight { tx, results, .. } = self {
            drop(tx);
            if let Some(mut results) = results {
                while let Some(r) = results.next().await {
                    r?;
                }
            }
        }
        Ok(())
    }
}

fn accepted_of(meta: &Value) -> anyhow::Result<u64> {
    meta.get("accepted")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("no \"accepted\" in the ack: {meta}"))
}

/// Ack → visible in `count(*)`, per write of [`FRESH_BATCH`] events.
struct Fresh {
    proto: Protocol,
    samples: usize,
    /// Rows the server held before (the cell's events).
    rows_before: u64,
    visible: Histogram<u64>,
    /// Duration of the query that first saw the batch (the floor).
    query: Histogram<u64>,
    /// Writes whose first query already saw them.
    first_poll: usize,
    max_polls: u64,
    acks: Histogram<u64>,
}

async fn measure_freshness(
    proto: Protocol,
    server: &Server,
    samples: usize,
    seed: u64,
) -> anyhow::Result<Fresh> {
    let tenant = format!("fresh-{}", proto.slug());
    let mut generator = Generator::new(seed ^ 0xF5E5, &tenant, (samples * FRESH_BATCH) as u64);
    let mut payloads = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut events = generator.batch(FRESH_BATCH);
        for e in &mut events {
            e.tenant_id.clone_from(&tenant);
        }
        payloads.push(encode(proto, &events)?);
    }
    let query_channel = crate::client::connect(&server.grpc, None).await?;
    let count = |sql: String| {
        let channel = query_channel.clone();
        async move {
            let batches = crate::client::query(channel, &sql).await?;
            let b = batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .ok_or_else(|| anyhow!("count(*) returned no row"))?;
            let v = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| anyhow!("count(*) is not Int64"))?;
            Ok::<u64, anyhow::Error>(if v.is_null(0) { 0 } else { v.value(0) as u64 })
        }
    };
    let rows_before = count("SELECT count(*) FROM events".into()).await?;
    let sql = format!("SELECT count(*) FROM events WHERE tenant_id = '{tenant}'");
    let mut writer = Writer::connect(proto, server).await?;
    let mut f = Fresh {
        proto,
        samples,
        rows_before,
        visible: new_histogram()?,
        query: new_histogram()?,
        first_poll: 0,
        max_polls: 0,
        acks: new_histogram()?,
    };
    let mut expected = 0u64;
    for payload in payloads {
        let sent = Instant::now();
        let accepted = writer.write(payload).await?;
        let acked = Instant::now();
        f.acks
            .saturating_record((acked - sent).as_micros().max(1) as u64);
        if accepted != FRESH_BATCH as u64 {
            bail!("a freshness write of {FRESH_BATCH} events accepted {accepted}");
        }
        expected += accepted;
        let mut polls = 0u64;
        loop {
            polls += 1;
            let q = Instant::now();
            let n = count(sql.clone()).await?;
            let now = Instant::now();
            if n >= expected {
                f.visible
                    .saturating_record((now - acked).as_micros().max(1) as u64);
                f.query
                    .saturating_record((now - q).as_micros().max(1) as u64);
                break;
            }
            if now - acked > FRESH_TIMEOUT {
                bail!(
                    "{expected} events acknowledged, {n} visible after {} s",
                    FRESH_TIMEOUT.as_secs()
                );
            }
        }
        if polls == 1 {
            f.first_poll += 1;
        }
        f.max_polls = f.max_polls.max(polls);
    }
    writer.finish().await?;
    Ok(f)
}

/// A keep-alive HTTP/1.1 connection: enough of a client for `POST
/// /v1/events` and `GET /readyz` (the server answers with Content-Length).
/// Not reqwest: it is in the release build only through object_store, with
/// other features, and asking for more would rebuild DataFusion.
struct HttpConn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl HttpConn {
    async fn connect(host: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(host)
            .await
            .with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            host: host.to_string(),
        })
    }

    /// One request; returns the status and the body.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let w = self.stream.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(body).await?;
        w.flush().await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad HTTP status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("the server closed the connection");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked responses are not supported here");
                }
            }
        }
        let mut out = vec![0; length.unwrap_or(0)];
        self.stream.read_exact(&mut out).await?;
        Ok((status, out))
    }
}

/// A `cxdb serve` child process; killed on drop.
struct Server {
    child: tokio::process::Child,
    pid: u32,
    /// `http://host:port` of the gRPC / Flight listener.
    grpc: String,
    /// `host:port` of the HTTP listener.
    http: String,
}

impl Server {
    async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ports_file = dir.join("ports.json");
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = tokio::process::Command::new(binary)
            .arg("serve")
            .args(["--grpc-addr", "127.0.0.1:0"])
            .args(["--pg-addr", "127.0.0.1:0"])
            .args(["--http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--ports-file")
            .arg(&ports_file)
            .args(["--log-filter", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} serve", binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the server exited at once"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "cxdb serve exited with {status}; see {}",
                    log_path.display()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&ports_file)
                && let Ok(ports) = serde_json::from_str::<Value>(&text)
                && let (Some(grpc), Some(http)) = (ports["grpc"].as_str(), ports["http"].as_str())
            {
                let ready = match HttpConn::connect(http).await {
                    Ok(mut conn) => conn
                        .request("GET", "/readyz", b"")
                        .await
                        .is_ok_and(|(status, _)| status == 200),
                    Err(_) => false,
                };
                if ready {
                    let server = Self {
                        child,
                        pid,
                        grpc: format!("http://{grpc}"),
                        http: http.to_string(),
                    };
                    server.wait_for_maintained_views().await?;
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "cxdb serve was not ready within 60 s; see {}",
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the server has built its maintained views at start (a
    /// query that reads one waits for the build). Otherwise that build runs
    /// during the first seconds of the cell, over the events already
    /// written, and its CPU would be counted as ingest.
    async fn wait_for_maintained_views(&self) -> anyhow::Result<()> {
        let channel = crate::client::connect(&self.grpc, None).await?;
        for view in cxdb_query::MAINTAINED_VIEWS {
            crate::client::query(channel.clone(), &format!("SELECT count(*) FROM {view}"))
                .await
                .with_context(|| format!("waiting for the maintained view {view}"))?;
        }
        Ok(())
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        tonic::transport::Endpoint::from_shared(self.grpc.clone())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.grpc))
    }

    /// A `/proc/<pid>/status` value in bytes (`VmHWM`, `VmRSS`).
    fn status_bytes(&self, key: &str) -> Option<u64> {
        proc_kib(&format!("/proc/{}/status", self.pid), key).map(|k| k * 1024)
    }

    /// User + system CPU seconds of the server so far.
    fn cpu_secs(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return 0.0;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return 0.0;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (ticks(11) + ticks(12)) as f64 / 100.0
    }

    /// Kills the server: its data is thrown away, nothing to shut down cleanly.
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn best_rate(cells: &[Cell], proto: Protocol, batch: usize) -> Option<&Cell> {
    cells
        .iter()
        .filter(|c| c.proto == proto && c.batch == batch)
        .max_by(|a, b| a.events_per_sec().total_cmp(&b.events_per_sec()))
}

/// "; median of 3 runs: a, b, c" for a repeated cell.
fn runs_note(c: &Cell) -> String {
    if c.runs.len() < 2 {
        return String::new();
    }
    format!("; median of {} runs: {}", c.runs.len(), fmt_rates(&c.runs))
}

fn fmt_rates(rates: &[f64]) -> String {
    let rates: Vec<String> = rates.iter().map(|v| fmt_int(*v as u64)).collect();
    rates.join(", ")
}

fn write_targets(r: &mut String, cells: &[Cell], fresh: &[Fresh]) {
    let _ = writeln!(
        r,
        "\n## Targets (issue #8)\n\n| target | measured | met |\n|---|---|---|"
    );
    for (proto, target) in [
        (Protocol::Flight, TARGET_FLIGHT),
        (Protocol::Grpc, TARGET_GRPC),
    ] {
        if let Some(c) = best_rate(cells, proto, 10_000) {
            let v = c.events_per_sec();
            let _ = writeln!(
                r,
                "| {} ≥ {} events/s durable, 10,000-event batches | {} events/s ({} client(s){}) | {} |",
                proto.name(),
                fmt_int(target as u64),
                fmt_int(v as u64),
                c.clients,
                runs_note(c),
                yes_no(v >= target)
            );
        }
    }
    for f in fresh {
        let p99 = ms(f.visible.value_at_quantile(0.99));
        let _ = writeln!(
            r,
            "| freshness p99 < {TARGET_FRESH_P99_MS} ms ({}) | {p99:.2} ms (p50 {:.2} ms) | {} |",
            f.proto.name(),
            ms(f.visible.value_at_quantile(0.5)),
            yes_no(p99 < TARGET_FRESH_P99_MS)
        );
    }
}

fn write_cells(r: &mut String, cells: &[Cell], time: Duration) {
    let _ = writeln!(
        r,
        "\n## Ingest per protocol\n\nEach cell: a fresh server; C clients, each with its own \
         connection, write closed-loop for {:.1} s (send a batch, wait for its ack, send the \
         next). An ack is durable: the server answers after the WAL record holding the batch \
         is fdatasynced. Latency: send → ack, per batch, in the client. Server CPU: user + \
         system seconds of the server process per event. RSS: the server's `VmRSS` after \
         start and its `VmHWM` (peak) at the end of the cell.\n",
        time.as_secs_f64()
    );
    let _ = writeln!(
        r,
        "| protocol | batch | clients | events | s | events/s | batches/s | ack p50 ms | \
         ack p99 ms | ack max ms | server CPU µs/event | server RSS at start | server peak RSS |"
    );
    let _ = writeln!(r, "|{}", "---|".repeat(13));
    for c in cells {
        let rss = |b: Option<u64>| b.map_or("unknown".to_string(), fmt_bytes);
        let _ = writeln!(
            r,
            "| {} | {} | {} | {}{} | {:.2} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            c.proto.name(),
            fmt_int(c.batch as u64),
            c.clients,
            fmt_int(c.events),
            if c.exhausted { "*" } else { "" },
            c.secs,
            fmt_int(c.events_per_sec() as u64),
            fmt_int((c.writes as f64 / c.secs.max(1e-9)) as u64),
            ms(c.acks.value_at_quantile(0.5)),
            ms(c.acks.value_at_quantile(0.99)),
            ms(c.acks.max()),
            c.server_cpu_secs * 1e6 / c.events.max(1) as f64,
            rss(c.server_start_rss),
            rss(c.server_peak_rss),
        );
    }
    for c in cells.iter().filter(|c| c.runs.len() > 1) {
        let _ = writeln!(
            r,
            "\n{}, {} events a batch, {} clients: the median of {} runs, each on a fresh \
             server (events/s in run order: {}).",
            c.proto.name(),
            fmt_int(c.batch as u64),
            c.clients,
            c.runs.len(),
            fmt_rates(&c.runs)
        );
    }
    if cells.iter().any(|c| c.exhausted) {
        let _ = writeln!(
            r,
            "\n\\* the cell's pre-generated events ran out before its time; the rate is over \
             the time it ran."
        );
    }
}

fn write_fresh(r: &mut String, fresh: &[Fresh]) {
    if fresh.is_empty() {
        return;
    }
    let _ = writeln!(
        r,
        "\n## Freshness: acknowledgement → visible in `count(*)`\n\nOn the server of each \
         protocol's last cell (10,000-event batches, 8 clients; it still holds that cell's \
         events, part of them persisted to Parquet), one client writes {FRESH_BATCH}-event \
         batches of a fresh tenant one at a time; after each ack, `SELECT count(*) FROM \
         events WHERE tenant_id = '<tenant>'` runs over gRPC `QueryService.Sql` until the \
         count includes the batch. Visible = ack received → answer of the first query that \
         includes it (so it contains one query's time: that query's duration is the next \
         column). The server is otherwise idle.\n"
    );
    let _ = writeln!(
        r,
        "| protocol | writes | rows already stored | visible p50 ms | visible p99 ms | \
         visible max ms | query p50 ms | query p99 ms | seen by the first query | most polls \
         | ack p50 ms | ack p99 ms |\n|{}",
        "---|".repeat(12)
    );
    for f in fresh {
        let _ = writeln!(
            r,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} of {} | {} | {:.2} | {:.2} |",
            f.proto.name(),
            f.samples,
            fmt_int(f.rows_before),
            ms(f.visible.value_at_quantile(0.5)),
            ms(f.visible.value_at_quantile(0.99)),
            ms(f.visible.max()),
            ms(f.query.value_at_quantile(0.5)),
            ms(f.query.value_at_quantile(0.99)),
            f.first_poll,
            f.samples,
            f.max_polls,
            ms(f.acks.value_at_quantile(0.5)),
            ms(f.acks.value_at_quantile(0.99)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_round_trips_through_the_server_parser() {
        let mut g = Generator::new(1, "t", 500);
        for mut e in g.batch(500) {
            let line = event_json(&e).to_string();
            let mut back = cxdb_model::event_from_json_line(0, &line)
                .unwrap_or_else(|err| panic!("{err:?}: {line}"));
            // Floats through decimal text may differ in the last bit.
            for (a, b) in [
                (&mut back.confidence, &mut e.confidence),
                (&mut back.order_total, &mut e.order_total),
            ] {
                assert_eq!(a.is_some(), b.is_some(), "{line}");
                if let (Some(x), Some(y)) = (*a, *b) {
                    assert!((x - y).abs() <= 1e-12 * y.abs(), "{x} vs {y}");
                }
                (*a, *b) = (None, None);
            }
            assert_eq!(back, e);
        }
    }

    fn cell(events: u64) -> Cell {
        Cell {
            proto: Protocol::Flight,
            batch: 10_000,
            clients: 8,
            events,
            writes: events / 10_000,
            secs: 2.0,
            acks: new_histogram().unwrap_or_else(|e| panic!("{e}")),
            exhausted: false,
            server_cpu_secs: 1.0,
            server_peak_rss: None,
            server_start_rss: None,
            generated: events,
            generate_secs: 1.0,
            runs: Vec::new(),
        }
    }

    #[test]
    fn a_repeated_cell_reports_its_median_run_and_every_rate() {
        let median = |events: &[u64]| {
            median_run(events.iter().map(|e| cell(*e)).collect()).unwrap_or_else(|e| panic!("{e}"))
        };
        // Rates over 2 s: 900k, 1,000k, 800k → the 900k run.
        let c = median(&[1_800_000, 2_000_000, 1_600_000]);
        assert_eq!(c.events, 1_800_000);
        assert_eq!(c.runs, [900_000.0, 1_000_000.0, 800_000.0]);
        assert_eq!(
            runs_note(&c),
            "; median of 3 runs: 900,000, 1,000,000, 800,000"
        );
        // An even count takes the lower middle; one run has no note.
        assert_eq!(median(&[2_000_000, 1_600_000]).events, 1_600_000);
        assert_eq!(runs_note(&median(&[1_000])), "");
        assert!(median_run(Vec::new()).is_err());
    }

    #[test]
    fn payloads_encode() {
        let mut g = Generator::new(1, "t", 100);
        let events = g.batch(100);
        for proto in Protocol::ALL {
            let p = encode(proto, &events).unwrap_or_else(|e| panic!("{e}"));
            match (proto, p) {
                (Protocol::Grpc, Payload::Grpc(r)) => {
                    let req = <WriteRequest as prost::Message>::decode(r)
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(req.events.len(), 100)
                }
                (Protocol::Flight, Payload::Flight(d)) => assert!(!d.data_body.is_empty()),
                (Protocol::Http, Payload::Http(b)) => {
                    assert_eq!(b.iter().filter(|&&c| c == b'\n').count(), 100)
                }
                _ => panic!("wrong payload for {proto:?}"),
            }
        }
    }
}
