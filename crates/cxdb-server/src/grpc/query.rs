use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arrow::ipc::writer::StreamWriter;
use cxdb_proto::v1::query_service_server::QueryService;
use cxdb_proto::v1::{ExplainResponse, SqlRequest, SqlResponse};
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::authorize;
use crate::AppState;
use crate::auth::Action;
use crate::error::Error;

#[derive(Debug)]
pub(crate) struct QuerySvc {
    pub(crate) state: Arc<AppState>,
}

type SqlStream = Pin<Box<dyn Stream<Item = Result<SqlResponse, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for QuerySvc {
    type SqlStream = SqlStream;

    async fn sql(&self, request: Request<SqlRequest>) -> Result<Response<SqlStream>, Status> {
        let principal = authorize(&self.state, &request, Action::Query)?.via("grpc");
        let sql = request.into_inner().sql;
        let started = Instant::now();
        let result = self.state.executor.execute(&principal, &sql).await;
        self.state
            .metrics
            .record_query(started.elapsed(), result.is_ok());
        let batches = result.map_err(Error::from)?;
        Ok(Response::new(ipc_stream(batches)?))
    }

    async fn explain(
        &self,
        request: Request<SqlRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let principal = authorize(&self.state, &request, Action::Query)?;
        let sql = request.into_inner().sql;
        let out = self
            .state
            .executor
            .explain(&principal, &sql)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(ExplainResponse {
            logical_plan: out.logical,
            physical_plan: out.physical,
        }))
    }
}

/// Schema first, then one message per batch, then the end-of-stream
/// marker: concatenated, the messages are one valid Arrow IPC stream.
/// An error after the first message ends the stream with its status.
fn ipc_stream(batches: SendableRecordBatchStream) -> Result<SqlStream, Status> {
    let batches = crate::wire::wire_stream(batches);
    let mut writer = StreamWriter::try_new(Vec::new(), &batches.schema())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let first = std::mem::take(writer.get_mut());
    let state = (Some(first), writer, batches, false);
    let stream =
        futures::stream::unfold(state, |(first, mut writer, mut batches, done)| async move {
            let msg = |bytes: Vec<u8>| Ok(SqlResponse { arrow_ipc: bytes });
            if let Some(bytes) = first {
                return Some((msg(bytes), (None, writer, batches, false)));
            }
            if done {
                return None;
            }
            let (item, done) = match batches.next().await {
                Some(Ok(batch)) => match writer.write(&batch) {
                    Ok(()) => (msg(std::mem::take(writer.get_mut())), false),
                    Err(e) => (Err(Status::from(Error::Internal(e.to_string()))), true),
                },
                Some(Err(e)) => (Err(Status::from(Error::Query(e.into()))), true),
                None => match writer.finish() {
                    Ok(()) => (msg(std::mem::take(writer.get_mut())), true),
                    Err(e) => (Err(Status::from(Error::Internal(e.to_string()))), true),
                },
            };
            Some((item, (None, writer, batches, done)))
        });
    Ok(Box::pin(stream))
}
