use std::sync::Arc;

use cxdb_proto::v1::ingest_service_server::IngestService;
use cxdb_proto::v1::{WriteRequest, WriteResponse};
use cxdb_query::Principal;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::authorize;
use crate::AppState;
use crate::auth::Action;
use crate::convert::{add_outcome, event_from_proto};
use crate::error::Error;
use crate::metrics::Protocol;

#[derive(Debug)]
pub(crate) struct IngestSvc {
    pub(crate) state: Arc<AppState>,
}

impl IngestSvc {
    async fn write_one(
        &self,
        principal: &Principal,
        req: WriteRequest,
        offset: usize,
        resp: &mut WriteResponse,
    ) -> Result<usize, Status> {
        let n = req.events.len();
        self.state.admit_events(principal, n)?;
        let events = req.events.into_iter().map(event_from_proto).collect();
        let out = self
            .state
            .storage
            .write(events, AppState::write_options(principal, req.atomic))
            .await
            .map_err(Error::from)?;
        self.state.metrics.record_write(Protocol::Grpc, &out);
        add_outcome(resp, &out, offset);
        Ok(n)
    }
}

#[tonic::async_trait]
impl IngestService for IngestSvc {
    async fn write(
        &self,
        request: Request<WriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let principal = authorize(&self.state, &request, Action::Write)?;
        let mut resp = WriteResponse::default();
        self.write_one(&principal, request.into_inner(), 0, &mut resp)
            .await?;
        Ok(Response::new(resp))
    }

    async fn write_stream(
        &self,
        request: Request<Streaming<WriteRequest>>,
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
