//! Arrow Flight and Flight SQL on the gRPC port, one service
//! (arrow-flight's [`FlightSqlService`]):
//!
//! ```text
//!  every call: token (Bearer, or the Basic password) ─► AppState::authenticate ─► Principal
//!  DoPut, descriptor path ["events"] ─────────► ingest_events ─► cxdb-storage
//!  DoPut(CommandStatementIngest "events") ────► the same write, all or nothing per batch (ADBC)
//!  GetFlightInfo(CommandStatementQuery) ──────► executor.prepare: schema; ticket = the SQL
//!  DoGet(ticket) ─────────────────────────────► executor.execute_with_params, streamed batch by batch
//!    with header x-cxdb-export (cxdb export) ─► the same, recorded in audit_log (export.rs)
//!  CreatePreparedStatement ───────────────────► executor.prepare: handle, dataset + parameter schemas
//!  DoPut(CommandPreparedStatementQuery) ──────► a new handle carrying the bound row
//!  GetCatalogs / GetDbSchemas / GetTables ────► executor.catalog (what the principal may query)
//!  GetSqlInfo / GetXdbcTypeInfo / GetTableTypes / key listings ─► static tables (metadata.rs)
//!  Get/SetSessionOptions, CloseSession ───────► fixed catalog `cxdb`, schema `public` (session.rs)
//! ```
//!
//! Tickets and handles are stateless (handle.rs): they carry the SQL and the
//! bound values, so they survive between calls, restarts and servers.
//!
//! `DoPut` with descriptor path `["events"]` ingests record batches of the
//! events schema (nullable columns may be omitted; the server sets
//! `ingested_at`), answering one `PutResult` per batch whose `app_metadata`
//! is JSON `{"accepted": n, "duplicate": n, "rejected": [...]}`.

mod export;
mod handle;
mod metadata;
mod put;
mod session;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{DoPutError, FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TableExistsOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, PutResult, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use cxdb_query::Principal;
use datafusion::datasource::TableType;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use self::handle::{BoundParams, Statement};
use crate::AppState;
use crate::auth::{self, require};
use crate::error::Error;
use crate::http::write_outcome_json;
use crate::metrics::Protocol;
use crate::wire::{wire_schema, wire_stream};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug)]
pub(crate) struct FlightSvc {
    state: Arc<AppState>,
    /// Values bound to prepared statements, for clients that keep using the
    /// handle they created (handle.rs).
    bound: BoundParams,
}

impl FlightSvc {
    pub(crate) fn new(state: Arc<AppState>) -> Self {
        Self {
            state,
            bound: BoundParams::default(),
        }
    }

    /// Authenticates a call; every Flight SQL entry point starts here.
    fn principal(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let token = crate::auth::metadata_token(metadata)?;
        Ok(self.state.authenticate(token.as_deref())?.via("flight-sql"))
    }

    /// Runs a statement and streams its batches as DataFusion produces them.
    async fn run(
        &self,
        principal: &Principal,
        stmt: Statement,
        export: Option<cxdb_query::ClientExport>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let stmt = stmt.resolve(&self.bound);
        let values = stmt.values()?;
        let started = Instant::now();
        let result = self
            .state
            .executor
            .execute_with_params(principal, &stmt.sql, values)
            .await;
        self.state
            .metrics
            .record_query(started.elapsed(), result.is_ok());
        let batches = result.map_err(Error::from)?;
        let batches = match &export {
            // `cxdb export`: recorded in audit_log when the stream ends.
            Some(export) => self
                .state
                .engine
                .client_export(principal, &stmt.sql, export, batches),
            None => batches,
        };
        Ok(Response::new(query_stream(batches)))
    }

    /// Plans `sql` with `params` bound for its schema; a failure counts as
    /// a failed query.
    async fn plan(
        &self,
        principal: &Principal,
        sql: &str,
        params: Vec<datafusion::common::ScalarValue>,
    ) -> Result<cxdb_query::StatementInfo, Status> {
        let started = Instant::now();
        let result = self.state.executor.prepare(principal, sql, params).await;
        if result.is_err() {
            self.state.metrics.record_query(started.elapsed(), false);
        }
        Ok(result.map_err(Error::from)?)
    }

    async fn catalog(&self, principal: &Principal) -> Result<cxdb_query::CatalogListing, Status> {
        Ok(self
            .state
            .executor
            .catalog(principal)
            .await
            .map_err(Error::from)?)
    }

    /// Statements that change something: view statements (`CREATE
    /// VIEW`, `DROP VIEW`); 0 rows affected. A query sent as an update is
    /// named as such.
    async fn update(&self, principal: &Principal, sql: &str) -> Result<i64, Status> {
        let started = Instant::now();
        let result = self.state.executor.execute_update(principal, sql).await;
        self.state
            .metrics
            .record_query(started.elapsed(), result.is_ok());
        result.map_err(Error::from)?;
        Ok(0)
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::from(Error::Internal(e.to_string()))
}

/// A `FlightInfo` with one endpoint whose ticket is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: impl Into<Bytes>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(internal)?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// A schema as Flight SQL sends it in prepared-statement results and
/// `GetTables`: an encapsulated IPC schema message.
fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(internal)?;
    Ok(bytes)
}

fn batch_stream(batch: RecordBatch) -> Response<BoxStream<FlightData>> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// Query results as Flight data, one batch at a time; an error after the
/// schema ends the stream with its mapped status.
fn query_stream(batches: SendableRecordBatchStream) -> BoxStream<FlightData> {
    let batches = wire_stream(batches);
    let schema = batches.schema();
    let batches = batches.map_err(|e| FlightError::from(Status::from(Error::Query(e.into()))));
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

fn table_type_name(t: TableType) -> &'static str {
    match t {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

/// Ingests a DoPut stream whose first message carried `descriptor`.
pub(crate) async fn ingest_events(
    state: Arc<AppState>,
    principal: Principal,
    descriptor: Option<FlightDescriptor>,
    data: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<Response<BoxStream<PutResult>>, Status> {
    let path = descriptor.map(|d| d.path).unwrap_or_default();
    if path != ["events"] {
        return Err(Status::invalid_argument(format!(
            "DoPut needs a flight descriptor with path [\"events\"], got {path:?}"
        )));
    }
    let mut decoder = put::PutDecoder::default();
    let results = data
        .try_filter_map(move |data| {
            let batch = decoder
                .decode(data)
                .map_err(|e| Status::invalid_argument(format!("invalid Arrow Flight data: {e}")));
            async move { batch }
        })
        .and_then(move |batch| {
            let state = Arc::clone(&state);
            let principal = principal.clone();
            async move {
                let out = write_batch(&state, &principal, &batch, false).await?;
                let json = write_outcome_json(&out, |i| i + 1);
                Ok(PutResult {
                    app_metadata: json.to_string().into(),
                })
            }
        });
    Ok(Response::new(Box::pin(results)))
}

/// Writes one Arrow batch of events (columnar: no rows are built); a batch
/// whose columns do not fit the events schema is INVALID_ARGUMENT.
async fn write_batch(
    state: &AppState,
    principal: &Principal,
    batch: &RecordBatch,
    atomic: bool,
) -> Result<cxdb_storage::WriteOutcome, Status> {
    state.admit_events(principal, batch.num_rows())?;
    let opts = AppState::write_options(principal, atomic);
    let out = match state.storage.write_batch(batch, opts).await {
        Ok(out) => out,
        Err(cxdb_storage::Error::Model(e)) => {
            state
                .metrics
                .record_rejected(Protocol::Flight, batch.num_rows());
            return Err(Status::invalid_argument(e.to_string()));
        }
        Err(e) => return Err(Error::from(e).into()),
    };
    state.metrics.record_write(Protocol::Flight, &out);
    Ok(out)
}

type DoGetResult = Result<Response<<FlightSvc as FlightService>::DoGetStream>, Status>;

#[tonic::async_trait]
impl FlightSqlService for FlightSvc {
    type FlightService = FlightSvc;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let token = crate::auth::metadata_token(request.metadata())?;
        self.state.authenticate(token.as_deref())?;
        // The token is the credential (there are no sessions), so it is what
        // the client sends as `Bearer` from now on.
        let payload = token.clone().map(Bytes::from).unwrap_or_default();
        let out = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload,
        })]);
        let mut response: Response<BoxStream<HandshakeResponse>> = Response::new(Box::pin(out));
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::unauthenticated("the token is not valid header text"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(request.metadata())?;
        // An export refused for its role is refused before it starts.
        export::declared(&principal, request.metadata())?;
        let info = self.plan(&principal, &query.query, Vec::new()).await?;
        let ticket = TicketStatementQuery {
            statement_handle: Statement::query(query.query).encode(),
        };
        flight_info(
            &wire_schema(&info.schema),
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(request.metadata())?;
        let stmt = Statement::decode(&cmd.prepared_statement_handle, "prepared statement handle")?
            .resolve(&self.bound);
        let values = stmt.values()?;
        let bound = values.len();
        // Planned with the values, so the schema is the one DoGet streams
        // (clients compare the two).
        let info = self.plan(&principal, &stmt.sql, values).await?;
        if bound != info.parameters.len() {
            return Err(Status::invalid_argument(format!(
                "the prepared statement takes {} parameter(s), {bound} bound: bind them with \
                 DoPut(CommandPreparedStatementQuery) first",
                info.parameters.len()
            )));
        }
        // The ticket carries the bound values, so any server can serve it.
        let ticket = TicketStatementQuery {
            statement_handle: stmt.encode(),
        };
        flight_info(
            &wire_schema(&info.schema),
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.into_builder().schema();
        let ticket = query.as_any().encode_to_vec();
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        let ticket = query.as_any().encode_to_vec();
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        let ticket = query.as_any().encode_to_vec();
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.into_builder().schema();
        let ticket = query.as_any().encode_to_vec();
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.clone().into_builder(metadata::sql_info()).schema();
        let ticket = query.as_any().encode_to_vec();
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.into_builder(metadata::xdbc_type_info()).schema();
        let ticket = query.as_any().encode_to_vec();
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let ticket = query.as_any().encode_to_vec();
        flight_info(
            &metadata::primary_keys_schema(),
            ticket,
            request.into_inner(),
        )
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let ticket = query.as_any().encode_to_vec();
        flight_info(
            &metadata::foreign_keys_schema(),
            ticket,
            request.into_inner(),
        )
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let ticket = query.as_any().encode_to_vec();
        flight_info(
            &metadata::foreign_keys_schema(),
            ticket,
            request.into_inner(),
        )
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let ticket = query.as_any().encode_to_vec();
        flight_info(
            &metadata::foreign_keys_schema(),
            ticket,
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let principal = self.principal(request.metadata())?;
        let export = export::declared(&principal, request.metadata())?;
        let stmt = Statement::decode(&ticket.statement_handle, "statement ticket")?;
        self.run(&principal, stmt, export).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let principal = self.principal(request.metadata())?;
        let stmt = Statement::decode(
            &query.prepared_statement_handle,
            "prepared statement handle",
        )?;
        let export = export::declared(&principal, request.metadata())?;
        self.run(&principal, stmt, export).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let principal = self.principal(request.metadata())?;
        let listing = self.catalog(&principal).await?;
        let mut builder = query.into_builder();
        let catalogs: BTreeSet<_> = listing.schemas.iter().map(|(c, _)| c).collect();
        for catalog in catalogs {
            builder.append(catalog);
        }
        Ok(batch_stream(builder.build().map_err(internal)?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let principal = self.principal(request.metadata())?;
        let listing = self.catalog(&principal).await?;
        let mut builder = query.into_builder();
        for (catalog, schema) in &listing.schemas {
            builder.append(catalog, schema);
        }
        Ok(batch_stream(builder.build().map_err(internal)?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let principal = self.principal(request.metadata())?;
        let listing = self.catalog(&principal).await?;
        let mut builder = query.into_builder();
        for t in &listing.tables {
            builder
                .append(
                    &t.catalog,
                    &t.schema,
                    &t.name,
                    table_type_name(t.table_type),
                    &t.arrow_schema,
                )
                .map_err(internal)?;
        }
        Ok(batch_stream(builder.build().map_err(internal)?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.principal(request.metadata())?;
        let mut builder = query.into_builder();
        for t in [TableType::Base, TableType::View] {
            builder.append(table_type_name(t));
        }
        Ok(batch_stream(builder.build().map_err(internal)?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.principal(request.metadata())?;
        let batch = query
            .into_builder(metadata::sql_info())
            .build()
            .map_err(internal)?;
        Ok(batch_stream(batch))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.principal(request.metadata())?;
        let batch = query
            .into_builder(metadata::xdbc_type_info())
            .build()
            .map_err(internal)?;
        Ok(batch_stream(batch))
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.principal(request.metadata())?;
        Ok(batch_stream(RecordBatch::new_empty(
            metadata::primary_keys_schema(),
        )))
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.principal(request.metadata())?;
        Ok(batch_stream(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.principal(request.metadata())?;
        Ok(batch_stream(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.principal(request.metadata())?;
        Ok(batch_stream(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_fallback(&self, request: Request<Ticket>, message: Any) -> DoGetResult {
        self.principal(request.metadata())?;
        Err(Status::invalid_argument(format!(
            "unknown ticket (type {:?}): use the ticket of a FlightInfo this server returned",
            message.type_url
        )))
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<BoxStream<PutResult>>, Status> {
        let principal = self.principal(request.metadata())?;
        // A path descriptor carries no command: plain Flight ingest.
        if !message.type_url.is_empty() {
            return Err(Status::invalid_argument(format!(
                "unsupported DoPut command {:?}: DoPut with descriptor path [\"events\"] ingests \
                 events; DoPut(CommandPreparedStatementQuery) binds parameters",
                message.type_url
            )));
        }
        let mut stream = request.into_inner();
        let descriptor = match stream.peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(Status::invalid_argument("DoPut stream is empty")),
        };
        require(&principal, auth::Action::Write)?;
        ingest_events(Arc::clone(&self.state), principal, descriptor, stream).await
    }

    async fn do_put_error_callback(
        &self,
        _request: Request<PeekableFlightDataStream>,
        error: DoPutError,
    ) -> Result<Response<BoxStream<PutResult>>, Status> {
        Err(Status::invalid_argument(match error {
            DoPutError::MissingCommand => "DoPut stream is empty".to_string(),
            DoPutError::MissingFlightDescriptor => {
                "DoPut needs a flight descriptor with path [\"events\"], got none".to_string()
            }
        }))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = self.principal(request.metadata())?;
        self.update(&principal, &command.query).await
    }

    /// ADBC bulk ingest (`adbc_ingest("events", data, mode="append")`):
    /// appends to `events`, all or nothing per batch, and counts the events
    /// newly stored (duplicates are not).
    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = self.principal(request.metadata())?;
        require(&principal, auth::Action::Write)?;
        let in_public = command.schema.as_deref().is_none_or(|s| s == "public")
            && command.catalog.as_deref().is_none_or(|c| c == "cxdb");
        if command.table != "events" || !in_public || command.temporary {
            return Err(Status::invalid_argument(format!(
                "bulk ingest writes only to the table events (cxdb.public.events), not {:?}",
                command.table
            )));
        }
        let if_exists = command
            .table_definition_options
            .map(|o| o.if_exists)
            .unwrap_or_default();
        if if_exists == TableExistsOption::Fail as i32
            || if_exists == TableExistsOption::Replace as i32
        {
            return Err(Status::invalid_argument(
                "events exists and is append-only: ingest with mode \"append\"",
            ));
        }
        let mut batches = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let mut stored = 0;
        while let Some(batch) = batches.next().await {
            let batch = batch
                .map_err(|e| Status::invalid_argument(format!("invalid Arrow Flight data: {e}")))?;
            let out = write_batch(&self.state, &principal, &batch, true).await?;
            if let Some(first) = out.rejected.first() {
                return Err(Status::invalid_argument(format!(
                    "{} of {} events rejected, so none of this batch was written; the first: {first}",
                    out.rejected.len(),
                    batch.num_rows()
                )));
            }
            stored += i64::try_from(out.accepted).unwrap_or(i64::MAX);
        }
        Ok(stored)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.principal(request.metadata())?;
        let stmt = Statement::decode(
            &query.prepared_statement_handle,
            "prepared statement handle",
        )?;
        let mut batches = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let mut row = None;
        while let Some(batch) = batches.next().await {
            let batch = batch
                .map_err(|e| Status::invalid_argument(format!("invalid parameter batch: {e}")))?;
            match (&row, batch.num_rows()) {
                (_, 0) => {}
                (None, 1) => row = Some(batch),
                _ => {
                    return Err(Status::invalid_argument(
                        "bind exactly one row of parameters to a query, got more",
                    ));
                }
            }
        }
        let row = row.ok_or_else(|| {
            Status::invalid_argument(
                "no parameter values: bind one row with a column per parameter ($1, $2, …)",
            )
        })?;
        // Refuse values that cannot become scalars now, not at DoGet.
        handle::row_values(&row)?;
        let bound = stmt.bind(&row)?;
        bound.remember(&self.bound);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.encode()),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = self.principal(request.metadata())?;
        let stmt = Statement::decode(
            &query.prepared_statement_handle,
            "prepared statement handle",
        )?;
        self.update(&principal, &stmt.sql).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.principal(request.metadata())?;
        let info = self.plan(&principal, &query.query, Vec::new()).await?;
        // A parameter the statement does not constrain (`SELECT $1`) is
        // offered as text: JDBC binds any value to a VARCHAR parameter,
        // while a Null-typed one accepts only NULL.
        let parameters: Vec<Field> = info
            .parameters
            .iter()
            .map(|(id, ty)| Field::new(id, ty.clone().unwrap_or(DataType::Utf8), true))
            .collect();
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Statement::prepared(query.query).encode(),
            dataset_schema: ipc_schema(&wire_schema(&info.schema))?,
            parameter_schema: ipc_schema(&wire_schema(&Schema::new(parameters)))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.principal(request.metadata())?;
        Statement::decode(
            &query.prepared_statement_handle,
            "prepared statement handle",
        )?
        .forget(&self.bound);
        Ok(())
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        self.principal(request.metadata())?;
        let action = request.into_inner();
        let body = match action.r#type.as_str() {
            session::SET_SESSION_OPTIONS => session::set(&action.body).encode_to_vec(),
            session::GET_SESSION_OPTIONS => session::current().encode_to_vec(),
            session::CLOSE_SESSION => session::close().encode_to_vec(),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown action {other:?}; ListActions names the supported ones"
                )));
            }
        };
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |name: &str, description: &str| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        };
        Some(vec![
            action(
                session::SET_SESSION_OPTIONS,
                "Accepts session options; catalog and schema are fixed (cxdb.public)",
            ),
            action(
                session::GET_SESSION_OPTIONS,
                "The session options: catalog and schema",
            ),
            action(
                session::CLOSE_SESSION,
                "Closes the session (there is no server-side state)",
            ),
        ])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
