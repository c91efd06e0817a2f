//! `cxdb export --query … --format parquet|csv|ndjson --out FILE`: runs a
//! query over Arrow Flight SQL on the gRPC port (`CommandStatementQuery` →
//! `FlightInfo` → `DoGet` of its ticket) and writes each batch to FILE as it
//! arrives, so memory stays bounded whatever the result's size (a Parquet
//! row group, 128 Ki rows, is the most held).
//!
//! The calls carry `x-cxdb-export: {"format": …, "destination": …}`: the
//! server then requires an analyst or admin token and records the export
//! in `audit_log` with the rows it sent. The file is written under a
//! temporary name next to FILE and renamed when complete, so a failed
//! export leaves no file that looks whole.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

#[derive(Debug, Clone, Args)]
pub(crate) struct ExportArgs {
    /// Server gRPC address (Arrow Flight SQL shares the port).
    #[arg(long, env = "CXDB_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,

    /// Bearer token: an analyst or admin token (servers running with --auth token).
    #[arg(long, env = "CXDB_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// The query whose result is exported.
    #[arg(long, short = 'q')]
    query: String,

    /// File format; by default from the extension of --out (.parquet, .csv, .ndjson/.jsonl/.json).
    #[arg(long, value_enum)]
    format: Option<Format>,

    /// The file to write (replaced if it exists).
    #[arg(long, short = 'o')]
    out: PathBuf,

    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Parquet,
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    fn of(path: &Path) -> anyhow::Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("parquet") => Ok(Self::Parquet),
            Some("csv") => Ok(Self::Csv),
            Some("ndjson" | "jsonl" | "json") => Ok(Self::Ndjson),
            _ => bail!(
                "cannot tell the format of {} from its extension; pass --format parquet|csv|ndjson",
                path.display()
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }
}

/// A file being written, batch by batch.
enum Writer {
    Parquet(ArrowWriter<BufWriter<File>>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
    Ndjson(arrow::json::LineDelimitedWriter<BufWriter<File>>),
}

impl Writer {
    fn new(format: Format, file: File, schema: SchemaRef) -> anyhow::Result<Self> {
        let out = BufWriter::new(file);
        Ok(match format {
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(128 * 1024))
                    .build();
                Self::Parquet(ArrowWriter::try_new(out, schema, Some(props))?)
            }
            Format::Csv => Self::Csv(arrow::csv::Writer::new(out)),
            Format::Ndjson => Self::Ndjson(arrow::json::LineDelimitedWriter::new(out)),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        match self {
            Self::Parquet(w) => w.write(batch)?,
            Self::Csv(w) => w.write(&crate::client::nested_as_text(batch)?)?,
            Self::Ndjson(w) => w.write(batch)?,
        }
        Ok(())
    }

    /// Ends the file and syncs it to disk.
    fn finish(self) -> anyhow::Result<()> {
        let out = match self {
            Self::Parquet(w) => w.into_inner()?,
            Self::Csv(w) => w.into_inner(),
            Self::Ndjson(mut w) => {
                w.finish()?;
                w.into_inner()
            }
        };
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }
}

/// A Flight error as `Code: message` for a gRPC status.
fn flight_error(e: FlightError) -> anyhow::Error {
    match e {
        FlightError::Tonic(status) => anyhow::anyhow!(
            "{}: {}",
            crate::client::code_name(status.code()),
            status.message()
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

/// `value` as JSON text with every non-ASCII character escaped (`\uXXXX`), so
/// it is a valid gRPC header value.
fn ascii_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

pub(crate) async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let format = match args.format {
        Some(f) => f,
        None => Format::of(&args.out)?,
    };
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("invalid output path {}", args.out.display()))?;
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not name a file", out.display()))?;
    let partial = out.with_file_name(format!(".{name}.partial"));

    let channel = crate::client::connect_raw(&args.addr).await?;
    let mut flight = FlightSqlServiceClient::new(channel);
    if let Some(token) = &args.token {
        flight.set_token(token.trim().to_string());
    }
    let declared = serde_json::json!({
        "format": format.name(),
        "destination": out.display().to_string(),
    });
    flight.set_header("x-cxdb-export", ascii_json(&declared));

    let info = flight
        .execute(args.query.clone(), None)
        .await
        .map_err(flight_error)?;
    let schema = std::sync::Arc::new(
        info.clone()
            .try_decode_schema()
            .context("the server's FlightInfo has no valid schema")?,
    );
    let file =
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let bar = progress_bar(args.quiet, name);
    let result = write_endpoints(&mut flight, info, format, file, schema, &bar).await;
    bar.finish_and_clear();
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    println!(
        "exported {rows} row{} to {} ({})",
        if rows == 1 { "" } else { "s" },
        out.display(),
        format.name()
    );
    Ok(())
}

/// Streams every endpoint's batches into the file; the rows written.
async fn write_endpoints(
    flight: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    info: arrow_flight::FlightInfo,
    format: Format,
    file: File,
    schema: SchemaRef,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    // Made with the first batch's schema: the stream's is the one written
    // (the FlightInfo's, from planning, may differ in nullability).
    let mut file = Some(file);
    let mut writer = None;
    let mut rows = 0u64;
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .context("the server's FlightInfo has an endpoint without a ticket")?;
        let mut batches = flight.do_get(ticket).await.map_err(flight_error)?;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(flight_error)?;
            if writer.is_none()
                && let Some(file) = file.take()
            {
                writer = Some(Writer::new(format, file, batch.schema())?);
            }
            if let Some(w) = writer.as_mut() {
                w.write(&batch)?;
            }
            rows += batch.num_rows() as u64;
            bar.set_position(rows);
        }
    }
    let writer = match (writer, file) {
        (Some(w), _) => w,
        // No rows: the file still has the schema (Parquet) or the header (CSV).
        (None, Some(file)) => {
            let mut w = Writer::new(format, file, std::sync::Arc::clone(&schema))?;
            if format == Format::Csv {
                w.write(&RecordBatch::new_empty(schema))?;
            }
            w
        }
        (None, None) => bail!("internal: the output file was lost"),
    };
    writer.finish()?;
    Ok(rows)
}

fn progress_bar(quiet: bool, name: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg}: {human_pos} rows ({per_sec}, {elapsed})")
    {
        bar.set_style(style);
    }
    bar.set_message(name.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_json_is_ascii() {
        let v = serde_json::json!({"destination": "/tmp/résumé 📄.csv"});
        let text = ascii_json(&v);
        assert!(text.is_ascii(), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, v);
    }
}
