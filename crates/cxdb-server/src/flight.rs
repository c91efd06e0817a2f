//! Arrow Flight: `DoPut` with descriptor path `["events"]` ingests record
//! batches of the events schema (nullable columns may be omitted; the server
//! sets `ingested_at`), answering one `PutResult` per batch whose
//! `app_metadata` is JSON `{"accepted": n, "duplicate": n, "rejected": [...]}`.
//! Flight SQL joins this service on the same port with the BI work.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use cxdb_model::events_from_batch;
use cxdb_storage::WriteOptions;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::AppState;
use crate::error::Error;
use crate::http::write_outcome_json;
use crate::metrics::Protocol;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug)]
pub(crate) struct FlightSvc {
    pub(crate) state: Arc<AppState>,
}

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not supported; DoPut with descriptor path [\"events\"] ingests events"
    )))
}

/// Ingests a DoPut stream whose first message carried `descriptor`.
pub(crate) async fn ingest_events(
    state: Arc<AppState>,
    descriptor: Option<FlightDescriptor>,
    data: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<Response<BoxStream<PutResult>>, Status> {
    let path = descriptor.map(|d| d.path).unwrap_or_default();
    if path != ["events"] {
        return Err(Status::invalid_argument(format!(
            "DoPut needs a flight descriptor with path [\"events\"], got {path:?}"
        )));
    }
    let decoder = FlightDataDecoder::new(
        data.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
    );
    let results = decoder
        .map_err(|e| Status::invalid_argument(format!("invalid Arrow Flight data: {e}")))
        .and_then(move |msg| {
            let state = Arc::clone(&state);
            async move {
                let DecodedPayload::RecordBatch(batch) = msg.payload else {
                    return Ok(None);
                };
                let events = events_from_batch(&batch).map_err(|e| {
                    state
                        .metrics
                        .record_rejected(Protocol::Flight, batch.num_rows());
                    Status::invalid_argument(e.to_string())
                })?;
                state.check_rows(events.len())?;
                let out = state
                    .storage
                    .write(events, WriteOptions::default())
                    .await
                    .map_err(Error::from)?;
                state.metrics.record_write(Protocol::Flight, &out);
                let json = write_outcome_json(&out, |i| i + 1);
                Ok(Some(PutResult {
                    app_metadata: json.to_string().into(),
                }))
            }
        })
        .try_filter_map(|r| async move { Ok(r) });
    Ok(Response::new(Box::pin(results)))
}

#[tonic::async_trait]
impl FlightService for FlightSvc {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;
    type DoExchangeStream = BoxStream<FlightData>;

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented("Handshake")
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }

    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unimplemented("GetFlightInfo")
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }

    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unimplemented("GetSchema")
    }

    async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        unimplemented("DoGet")
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let mut stream = request.into_inner().peekable();
        let descriptor = match Pin::new(&mut stream).peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(Status::invalid_argument("DoPut stream is empty")),
        };
        ingest_events(Arc::clone(&self.state), descriptor, stream).await
    }

    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unimplemented("DoAction")
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unimplemented("ListActions")
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }
}
