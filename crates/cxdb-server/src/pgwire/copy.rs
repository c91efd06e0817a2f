//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT` in text,
//! CSV and binary format: psql's `\copy … to`, ADBC's bulk reads. The query
//! runs through the read-only check; values are encoded by arrow-pg, as
//! query results are. `COPY … TO 'file' (FORMAT parquet|csv|json)` is an
//! export, run by the query layer ([`copy_to_file`]); COPY FROM and COPY to
//! a program are refused.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch};
use bytes::Bytes;
use cxdb_query::{Principal, SharedExecutor};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopyTarget, Ident, Statement,
};
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo, Response, Tag,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::copy::CopyData;
use futures::StreamExt;

use super::error::SqlStateError;
use super::hooks::{plan_read_only, read_only};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Csv,
    Binary,
}

/// The COPY options, new (`(FORMAT csv, HEADER)`) and old (`CSV HEADER`)
/// syntax alike.
#[derive(Debug)]
struct Options {
    kind: Kind,
    header: bool,
    delimiter: Option<char>,
    null: Option<String>,
    quote: Option<char>,
    force_quote: Vec<Ident>,
}

fn unsupported(what: impl std::fmt::Display) -> PgWireError {
    SqlStateError::new("0A000", format!("COPY option {what} is not supported")).into()
}

impl Options {
    fn parse(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<Self> {
        let mut o = Self {
            kind: Kind::Text,
            header: false,
            delimiter: None,
            null: None,
            quote: None,
            force_quote: Vec::new(),
        };
        for option in options {
            match option {
                CopyOption::Format(name) => {
                    o.kind = match name.value.to_ascii_lowercase().as_str() {
                        "text" => Kind::Text,
                        "csv" => Kind::Csv,
                        "binary" => Kind::Binary,
                        other => {
                            return Err(SqlStateError::new(
                                "22023",
                                format!("COPY format \"{other}\" not recognized"),
                            )
                            .into());
                        }
                    }
                }
                CopyOption::Header(h) => o.header = *h,
                CopyOption::Delimiter(c) => o.delimiter = Some(*c),
                CopyOption::Null(s) => o.null = Some(s.clone()),
                CopyOption::Quote(c) => o.quote = Some(*c),
                CopyOption::ForceQuote(columns) => o.force_quote.clone_from(columns),
                // UTF-8 is all cxdb speaks; ESCAPE only matters when reading.
                CopyOption::Encoding(_) | CopyOption::Escape(_) => {}
                other => return Err(unsupported(other)),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => o.kind = Kind::Binary,
                CopyLegacyOption::Delimiter(c) => o.delimiter = Some(*c),
                CopyLegacyOption::Null(s) => o.null = Some(s.clone()),
                CopyLegacyOption::Csv(csv) => {
                    o.kind = Kind::Csv;
                    for option in csv {
                        match option {
                            CopyLegacyCsvOption::Header => o.header = true,
                            CopyLegacyCsvOption::Quote(c) => o.quote = Some(*c),
                            CopyLegacyCsvOption::ForceQuote(columns) => {
                                o.force_quote.clone_from(columns);
                            }
                            CopyLegacyCsvOption::Escape(_) => {}
                            other => return Err(unsupported(other)),
                        }
                    }
                }
                other => return Err(unsupported(other)),
            }
        }
        Ok(o)
    }

    fn delimiter(&self) -> String {
        let default = if self.kind == Kind::Csv { ',' } else { '\t' };
        self.delimiter.unwrap_or(default).to_string()
    }

    fn encoder(&self, fields: &Arc<Vec<FieldInfo>>) -> CopyEncoder {
        match self.kind {
            Kind::Binary => CopyEncoder::new_binary(Arc::clone(fields)),
            Kind::Text => CopyEncoder::new_text(
                Arc::clone(fields),
                CopyTextOptions {
                    delimiter: self.delimiter().into(),
                    null_string: self.null.clone().unwrap_or_else(|| "\\N".into()).into(),
                },
            ),
            Kind::Csv => {
                let quote = self.quote.unwrap_or('"').to_string();
                let force_quote = fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| {
                        self.force_quote
                            .iter()
                            .any(|c| c.value == "*" || c.value == f.name())
                    })
                    .map(|(i, _)| i)
                    .collect();
                CopyEncoder::new_csv(
                    Arc::clone(fields),
                    CopyCsvOptions {
                        delimiter: self.delimiter().into(),
                        quote: quote.clone().into(),
                        escape: quote.into(),
                        null_string: self.null.clone().unwrap_or_default().into(),
                        force_quote,
                    },
                )
            }
        }
    }

    /// The HEADER line: column names, quoted as CSV values are.
    fn header_line(&self, fields: &[FieldInfo]) -> Option<CopyData> {
        if !self.header || self.kind == Kind::Binary {
            return None;
        }
        let delimiter = self.delimiter();
        let quote = self.quote.unwrap_or('"');
        let names: Vec<String> = fields
            .iter()
            .map(|f| {
                let name = f.name();
                let special = name.contains(delimiter.as_str())
                    || name.contains(quote)
                    || name.contains(['\n', '\r']);
                if self.kind == Kind::Csv && special {
                    let doubled = name.replace(quote, &format!("{quote}{quote}"));
                    format!("{quote}{doubled}{quote}")
                } else {
                    name.to_string()
                }
            })
            .collect();
        Some(CopyData::new(Bytes::from(format!(
            "{}\n",
            names.join(&delimiter)
        ))))
    }
}

/// A binary COPY of no rows: PGCOPY signature, flags, header extension
/// length and the trailer, in one message as PostgreSQL sends it (clients
/// such as tokio-postgres read the header with the first tuple or trailer).
const BINARY_EMPTY: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff";

/// The binary trailer, after the last row.
const BINARY_TRAILER: &[u8] = b"\xff\xff";

pub(crate) async fn copy_to_stdout(
    statement: &Statement,
    ctx: &SessionContext,
) -> PgWireResult<Response> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(SqlStateError::new("XX000", "not a COPY statement").into());
    };
    if !to {
        return Err(read_only("COPY FROM").into());
    }
    if !matches!(target, CopyTarget::Stdout) {
        return Err(SqlStateError::new(
            "42501",
            "permission denied: COPY to a server file or program is not allowed; use COPY … TO STDOUT",
        )
        .into());
    }
    let options = Options::parse(options, legacy_options)?;
    let query =
        cxdb_query::copy_source_query(source).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let plan = plan_read_only(&query, ctx).await?;
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let format = match options.kind {
        Kind::Binary => Format::UnifiedBinary,
        Kind::Text | Kind::Csv => Format::UnifiedText,
    };
    let fields = Arc::new(arrow_schema_to_pg_fields(
        df.schema().as_arrow(),
        &format,
        None,
    )?);
    let batches = df
        .execute_stream()
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let columns = fields.len();
    let header = options.header_line(&fields);
    let rows = Rows {
        batches,
        encoder: options.encoder(&fields),
        fields,
        binary: options.kind == Kind::Binary,
        rows: 0,
        done: false,
    };
    let data = futures::stream::iter(header.map(Ok))
        .chain(futures::stream::unfold(rows, Rows::next_chunk).flat_map(futures::stream::iter));
    // pgwire would append the binary trailer as a message of its own, also
    // after an empty result, where the header has to come first: the
    // trailer is written here (`Rows`), and the format set afterwards.
    let mut response = CopyResponse::new(0, columns, data);
    if options.kind == Kind::Binary {
        response.format = 1;
    }
    Ok(Response::CopyOut(response))
}

/// `COPY (query) TO 'file' (FORMAT …)`: an export under `--export-dir`,
/// checked, run and audited by the query layer as on every protocol
/// (cxdb-query's export.rs); answered `COPY <rows>`.
pub(crate) async fn copy_to_file(
    executor: &SharedExecutor,
    principal: &Principal,
    statement: &Statement,
) -> PgWireResult<Response> {
    let query_error = |e| match e {
        cxdb_query::Error::DataFusion(e) => PgWireError::ApiError(Box::new(e)),
        other => super::error::server_error(crate::Error::Query(other)),
    };
    let mut answer = executor
        .execute(principal, &statement.to_string())
        .await
        .map_err(query_error)?;
    let mut rows = 0;
    while let Some(batch) = answer.next().await {
        let batch = batch.map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        if let Some(n) = batch
            .column_by_name("rows")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .filter(|c| !c.is_empty())
        {
            rows += usize::try_from(n.value(0)).unwrap_or(usize::MAX);
        }
    }
    Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
}

/// Encodes the result batch by batch into one CopyData per row.
struct Rows {
    batches: SendableRecordBatchStream,
    encoder: CopyEncoder,
    fields: Arc<Vec<FieldInfo>>,
    binary: bool,
    rows: usize,
    done: bool,
}

impl Rows {
    async fn next_chunk(mut self) -> Option<(Vec<PgWireResult<CopyData>>, Self)> {
        if self.done {
            return None;
        }
        match self.batches.next().await {
            Some(Ok(batch)) => {
                let chunk = self.encode(&batch);
                Some((chunk, self))
            }
            Some(Err(e)) => {
                self.done = true;
                Some((vec![Err(PgWireError::ApiError(Box::new(e)))], self))
            }
            None => {
                self.done = true;
                // The encoder writes the binary header with the first row.
                let end = match (self.binary, self.rows) {
                    (false, _) => return None,
                    (true, 0) => BINARY_EMPTY,
                    (true, _) => BINARY_TRAILER,
                };
                Some((vec![Ok(CopyData::new(Bytes::from_static(end)))], self))
            }
        }
    }

    fn encode(&mut self, batch: &RecordBatch) -> Vec<PgWireResult<CopyData>> {
        let schema = batch.schema();
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            for (i, field) in self.fields.iter().enumerate() {
                if let Err(e) = encode_value(
                    &mut self.encoder,
                    batch.column(i),
                    row,
                    schema.field(i),
                    field,
                ) {
                    self.done = true;
                    out.push(Err(e));
                    return out;
                }
            }
            out.push(Ok(self.encoder.take_copy()));
            self.rows += 1;
        }
        out
    }
}
