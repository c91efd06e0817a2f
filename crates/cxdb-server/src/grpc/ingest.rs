//! `cxdb.v1.IngestService` (`Write`, `WriteStream`).
//!
//! Served by hand rather than through the generated `IngestServiceServer`:
//! a request is kept as its encoded bytes and decoded straight into Arrow
//! columns ([`super::columns`]) after the caller is authorized, instead of
//! into one prost struct of `String`s per event. Responses are prost's.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use cxdb_proto::v1::WriteResponse;
use cxdb_query::Principal;
use futures::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{ClientStreamingService, Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status, Streaming};

use super::authorize;
use super::columns::{self, DecodeError};
use crate::AppState;
use crate::auth::Action;
use crate::convert::add_outcome;
use crate::error::Error;
use crate::metrics::Protocol;

const WRITE: &str = "/cxdb.v1.IngestService/Write";
const WRITE_STREAM: &str = "/cxdb.v1.IngestService/WriteStream";

/// The ingest service, as a tower service for tonic's router.
#[derive(Debug, Clone)]
pub(crate) struct IngestServer {
    state: Arc<AppState>,
    /// Largest accepted request message (`--max-request-bytes`).
    max_message: usize,
}

impl NamedService for IngestServer {
    const NAME: &'static str = "cxdb.v1.IngestService";
}

impl IngestServer {
    pub(crate) fn new(state: Arc<AppState>, max_message: usize) -> Self {
        Self { state, max_message }
    }

    fn grpc(&self) -> Grpc<WriteCodec> {
        Grpc::new(WriteCodec).apply_max_message_size_config(Some(self.max_message), None)
    }

    /// Writes one encoded `WriteRequest`; returns its number of events.
    async fn write_one(
        &self,
        principal: &Principal,
        msg: Bytes,
        offset: usize,
        resp: &mut WriteResponse,
    ) -> Result<usize, Status> {
        let sizes = columns::measure(&msg).map_err(malformed)?;
        let n = sizes.rows();
        self.state.admit_events(principal, n)?;
        let request = columns::decode(&msg, &sizes).map_err(malformed)?;
        drop(msg);
        let out = self
            .state
            .storage
            .write_batch(
                &request.batch,
                AppState::write_options(principal, request.atomic),
            )
            .await
            .map_err(Error::from)?;
        self.state.metrics.record_write(Protocol::Grpc, &out);
        add_outcome(resp, &out, offset);
        Ok(n)
    }

    async fn write(&self, request: Request<Bytes>) -> Result<Response<WriteResponse>, Status> {
        let principal = authorize(&self.state, &request, Action::Write)?;
        let mut resp = WriteResponse::default();
        self.write_one(&principal, request.into_inner(), 0, &mut resp)
            .await?;
        Ok(Response::new(resp))
    }

    /// Client streaming: each message is written as it arrives; one answer
    /// sums them up.
    async fn write_stream(
        &self,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<WriteResponse>, Status> {
        let principal = authorize(&self.state, &request, Action::Write)?;
        let mut stream = request.into_inner();
        let mut resp = WriteResponse::default();
        let mut offset = 0;
        while let Some(msg) = stream.next().await {
            offset += self.write_one(&principal, msg?, offset, &mut resp).await?;
        }
        Ok(Response::new(resp))
    }
}

/// A message that is not a `WriteRequest`: INTERNAL, as gRPC specifies for
/// a request that cannot be parsed (and as tonic answers for other services).
fn malformed(e: DecodeError) -> Status {
    Status::internal(e.to_string())
}

impl UnaryService<Bytes> for IngestServer {
    type Response = WriteResponse;
    type Future = BoxFuture<Response<WriteResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.write(request).await })
    }
}

impl ClientStreamingService<Bytes> for IngestServer {
    type Response = WriteResponse;
    type Future = BoxFuture<Response<WriteResponse>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.write_stream(request).await })
    }
}

impl<B> Service<http::Request<B>> for IngestServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (mut grpc, svc) = (self.grpc(), self.clone());
        match req.uri().path() {
            WRITE => Box::pin(async move { Ok(grpc.unary(svc, req).await) }),
            WRITE_STREAM => Box::pin(async move { Ok(grpc.client_streaming(svc, req).await) }),
            path => {
                let status = Status::unimplemented(format!("no method {path}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// Requests stay encoded (decoded in the handler, see the module doc);
/// responses are encoded by prost.
#[derive(Debug, Clone, Copy, Default)]
struct WriteCodec;

impl Codec for WriteCodec {
    type Encode = WriteResponse;
    type Decode = Bytes;
    type Encoder = WriteCodec;
    type Decoder = WriteCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for WriteCodec {
    type Item = WriteResponse;
    type Error = Status;

    fn encode(&mut self, item: WriteResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for WriteCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // Zero-copy: the message's bytes are split off tonic's buffer.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
