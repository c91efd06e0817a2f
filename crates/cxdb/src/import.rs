//! `cxdb import FILE…`: loads Parquet, NDJSON and CSV files into a server.
//!
//! Every file becomes Arrow record batches of (a subset of) the `events`
//! schema on the client, which are sent with Arrow Flight `DoPut` (path
//! `["events"]`) over the server's gRPC port. The server validates and
//! deduplicates as for any write, so importing a file twice adds nothing the
//! second time, and its answers give the accepted / duplicate / rejected
//! summary. Rejections name the file and the row (1-based data row; for
//! NDJSON the line number).
//!
//! Column handling: columns are matched by name with SPEC §2 and cast to the
//! column's type (timestamps in any unit or zone become µs UTC; CSV text is
//! parsed); a column that is not in SPEC §2 fails the file before anything is
//! sent. `ingested_at` is ignored (the server sets it). In CSV, `tags` is a
//! JSON array (`["vip","refund"]`) or a `;`-separated list.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use arrow::array::{
    Array, ArrayRef, BooleanArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightClient, FlightDescriptor};
use clap::{Args, ValueEnum};
use cxdb_model::{EventBatchBuilder, event_from_json_line, events_schema};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[derive(Debug, Clone, Args)]
pub(crate) struct ImportArgs {
    /// Server gRPC address.
    #[arg(long, env = "CXDB_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,

    /// Bearer token (servers running with --auth token; an ingest token will do).
    #[arg(long, env = "CXDB_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// File format; by default from the extension (.parquet, .ndjson/.jsonl/.json, .csv).
    #[arg(long, value_enum)]
    format: Option<Format>,

    /// Events per request.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,

    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,

    /// Files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Parquet,
    Ndjson,
    Csv,
}

impl Format {
    fn of(path: &Path) -> anyhow::Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("parquet") => Ok(Self::Parquet),
            Some("ndjson" | "jsonl" | "json") => Ok(Self::Ndjson),
            Some("csv") => Ok(Self::Csv),
            _ => bail!(
                "cannot tell the format of {} from its extension; pass --format parquet|ndjson|csv",
                path.display()
            ),
        }
    }
}

/// Totals over all files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Summary {
    accepted: u64,
    duplicate: u64,
    rejected: u64,
    /// First rejections, `file:row: event_id field: message`.
    errors: Vec<String>,
}

const SHOWN_ERRORS: usize = 20;

impl Summary {
    fn reject(&mut self, message: String) {
        self.rejected += 1;
        if self.errors.len() < SHOWN_ERRORS {
            self.errors.push(message);
        }
    }
}

/// One batch ready to send, with the file row (1-based; the line for
/// NDJSON) of each of its rows.
struct Chunk {
    rows: Vec<u64>,
    batch: RecordBatch,
}

pub(crate) async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let channel = crate::client::connect_raw(&args.addr).await?;
    let mut summary = Summary::default();
    for path in &args.files {
        let format = match args.format {
            Some(f) => f,
            None => Format::of(path)?,
        };
        import_file(&channel, path, format, &args, &mut summary)
            .await
            .with_context(|| format!("importing {}", path.display()))?;
    }
    println!(
        "accepted {}, duplicate {}, rejected {}",
        summary.accepted, summary.duplicate, summary.rejected
    );
    for e in &summary.errors {
        println!("  rejected {e}");
    }
    if summary.rejected as usize > summary.errors.len() {
        println!(
            "  … and {} more rejections",
            summary.rejected as usize - summary.errors.len()
        );
    }
    if summary.accepted == 0 && summary.duplicate == 0 && summary.rejected > 0 {
        bail!("no event was accepted");
    }
    Ok(())
}

async fn import_file(
    channel: &tonic::transport::Channel,
    path: &Path,
    format: Format,
    args: &ImportArgs,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let file = File::open(path).context("cannot open")?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let batch_size = args.batch_size as usize;
    let name = path.display().to_string();
    // Readers are blocking; they run on a blocking thread and hand chunks over
    // a small channel, so reading overlaps sending and memory stays bounded.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Chunk>>(2);
    // Parquet reports progress in rows (its footer, read once here, knows how
    // many), text formats in bytes read.
    let bytes_read = Arc::new(AtomicU64::new(0));
    let counted = |file: File| Counting {
        inner: file,
        read: Arc::clone(&bytes_read),
    };
    let (source, progress_len, unit_rows) = match format {
        Format::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .context("not a readable Parquet file")?;
            let rows = builder.metadata().file_metadata().num_rows() as u64;
            (Source::Parquet(builder), rows, true)
        }
        Format::Ndjson => (Source::Ndjson(counted(file)), size, false),
        Format::Csv => (Source::Csv(counted(file)), size, false),
    };
    let bar = progress_bar(args.quiet, progress_len, unit_rows, &name);
    // Rows the reader rejected itself: a count and the first messages.
    let local = Arc::new(std::sync::Mutex::new(Summary::default()));
    let local_reader = Arc::clone(&local);
    let path = path.to_path_buf();
    let reader_name = name.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let send = |chunk: anyhow::Result<Chunk>| tx.blocking_send(chunk).is_ok();
        let reject = |message: String| {
            if let Ok(mut local) = local_reader.lock() {
                local.reject(message);
            }
        };
        let sink = Sink {
            send: &send,
            reject: &reject,
        };
        let name = reader_name.as_str();
        let result = match source {
            Source::Parquet(builder) => read_parquet(builder, batch_size, name, &sink),
            Source::Ndjson(text) => read_ndjson(text, batch_size, name, &sink),
            Source::Csv(text) => read_csv(&path, text, batch_size, name, &sink),
        };
        if let Err(e) = result {
            send(Err(e));
        }
    });

    let mut client = FlightClient::new(channel.clone());
    if let Some(token) = &args.token {
        client
            .add_header("authorization", &format!("Bearer {}", token.trim()))
            .context("the token is not valid header text")?;
    }
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        let rows = chunk.batch.num_rows() as u64;
        let file_rows = chunk.rows;
        let input = futures::stream::iter([Ok(chunk.batch)]);
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["events".into()])))
            .build(input);
        let mut results = client
            .do_put(data)
            .await
            .map_err(|e| anyhow::anyhow!("the server refused the batch: {e}"))?;
        // The encoder may split a batch into several messages; each answer
        // covers `accepted + duplicate + rejected` rows, in order.
        let mut offset = 0;
        while let Some(result) = results
            .try_next()
            .await
            .map_err(|e| anyhow::anyhow!("the server refused the batch: {e}"))?
        {
            offset += tally(&result.app_metadata, &file_rows[offset..], &name, summary)?;
        }
        if unit_rows {
            bar.inc(rows);
        } else {
            bar.set_position(bytes_read.load(Ordering::Relaxed));
        }
    }
    reader.await.context("the file reader panicked")?;
    if let Ok(local) = local.lock() {
        summary.rejected += local.rejected;
        for e in &local.errors {
            if summary.errors.len() < SHOWN_ERRORS {
                summary.errors.push(e.clone());
            }
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// An opened input file.
enum Source {
    Parquet(ParquetRecordBatchReaderBuilder<File>),
    Ndjson(Counting<File>),
    Csv(Counting<File>),
}

/// Counts the bytes read through it, for the progress of text formats.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn progress_bar(quiet: bool, len: u64, rows: bool, name: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template = if rows {
        "{msg} [{bar:30}] {human_pos}/{human_len} rows ({per_sec}, {eta})"
    } else {
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// Adds one DoPut answer to the summary; returns the rows it covered.
/// `rows` are the file rows of the answered batch and those after it.
fn tally(
    metadata: &[u8],
    rows: &[u64],
    file: &str,
    summary: &mut Summary,
) -> anyhow::Result<usize> {
    let answer: serde_json::Value =
        serde_json::from_slice(metadata).context("unreadable answer from the server")?;
    let count = |k: &str| {
        answer
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let (accepted, duplicate) = (count("accepted"), count("duplicate"));
    summary.accepted += accepted;
    summary.duplicate += duplicate;
    let rejected = answer
        .get("rejected")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in &rejected {
        let line = r
            .get("line")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1);
        let row = rows
            .get(line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or(0);
        let text = |k: &str| r.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
        summary.reject(format!(
            "{file}:{row}: event {:?} field {}: {}",
            text("event_id"),
            text("field"),
            text("error")
        ));
    }
    Ok((accepted + duplicate) as usize + rejected.len())
}

/// Where readers send their work: batches to import, and rows they rejected
/// themselves (unparseable lines or values), as ready-made messages.
struct Sink<'a> {
    send: &'a dyn Fn(anyhow::Result<Chunk>) -> bool,
    reject: &'a dyn Fn(String),
}

/// Sends the typed rows of `batch` (file rows `first_row..`); rows with a
/// value that does not fit its column are rejected locally. False when the
/// receiver went away.
fn send_typed(
    batch: &RecordBatch,
    first_row: u64,
    file: &str,
    sink: &Sink<'_>,
) -> anyhow::Result<bool> {
    let (batch, bad) = to_events_types(batch)?;
    let mut keep = vec![true; batch.num_rows()];
    for (i, message) in bad {
        if std::mem::replace(&mut keep[i], false) {
            (sink.reject)(format!("{file}:{}: {message}", first_row + i as u64));
        }
    }
    let rows: Vec<u64> = (0..batch.num_rows())
        .filter(|i| keep[*i])
        .map(|i| first_row + i as u64)
        .collect();
    let batch = if rows.len() == batch.num_rows() {
        batch
    } else {
        arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))?
    };
    if batch.num_rows() == 0 {
        return Ok(true);
    }
    Ok((sink.send)(Ok(Chunk { rows, batch })))
}

fn read_parquet(
    builder: ParquetRecordBatchReaderBuilder<File>,
    batch_size: usize,
    name: &str,
    sink: &Sink<'_>,
) -> anyhow::Result<()> {
    let reader = builder.with_batch_size(batch_size).build()?;
    let mut row = 1;
    for batch in reader {
        let batch = batch?;
        if !send_typed(&batch, row, name, sink)? {
            break;
        }
        row += batch.num_rows() as u64;
    }
    Ok(())
}

fn read_ndjson(
    file: impl Read,
    batch_size: usize,
    name: &str,
    sink: &Sink<'_>,
) -> anyhow::Result<()> {
    let mut builder = EventBatchBuilder::with_capacity(batch_size);
    let mut rows: Vec<u64> = Vec::with_capacity(batch_size);
    let flush = |builder: &mut EventBatchBuilder, rows: &mut Vec<u64>| {
        builder.is_empty()
            || (sink.send)(Ok(Chunk {
                rows: std::mem::take(rows),
                batch: builder.finish(),
            }))
    };
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.with_context(|| format!("line {line_no}: not UTF-8 text"))?;
        if line.trim().is_empty() {
            continue;
        }
        match event_from_json_line(i, &line) {
            Ok(event) => {
                builder.push(&event);
                rows.push(line_no);
                if builder.len() >= batch_size && !flush(&mut builder, &mut rows) {
                    return Ok(());
                }
            }
            Err(e) => (sink.reject)(format!(
                "{name}:{line_no}: event {:?} field {}: {}",
                e.event_id.unwrap_or_default(),
                e.field,
                e.message
            )),
        }
    }
    flush(&mut builder, &mut rows);
    Ok(())
}

fn read_csv(
    path: &Path,
    counted: impl Read,
    batch_size: usize,
    name: &str,
    sink: &Sink<'_>,
) -> anyhow::Result<()> {
    // Every column is read as text, then cast to its SPEC §2 type, so that a
    // bad value rejects its row with a message naming row and column.
    let mut header = String::new();
    BufReader::new(File::open(path)?)
        .read_line(&mut header)
        .context("cannot read the CSV header")?;
    let names = csv_header(&header)?;
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(schema)
        .with_header(true)
        .with_batch_size(batch_size)
        .build(counted)?;
    let mut row = 1;
    for batch in reader {
        let batch = batch.with_context(|| format!("CSV near data row {row}"))?;
        if !send_typed(&batch, row, name, sink)? {
            break;
        }
        row += batch.num_rows() as u64;
    }
    Ok(())
}

fn csv_header(line: &str) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = line
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    if names.iter().all(String::is_empty) {
        bail!("the CSV file has no header line");
    }
    Ok(names)
}

/// Casts every column to its SPEC §2 type; drops `ingested_at`; refuses
/// columns SPEC §2 does not name. Returns the typed batch and the rows whose
/// value did not fit (row index in the batch, message).
fn to_events_types(batch: &RecordBatch) -> anyhow::Result<(RecordBatch, Vec<(usize, String)>)> {
    let target = events_schema();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut bad = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name();
        if name == "ingested_at" {
            continue;
        }
        let Ok(want) = target.field_with_name(name) else {
            bail!(
                "column {name:?} is not an events column (SPEC §2); put extra data in `attributes`"
            );
        };
        let (cast, column_bad) = cast_column(column, want.data_type(), name)?;
        bad.extend(column_bad);
        fields.push(Field::new(name, want.data_type().clone(), true));
        columns.push(cast);
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok((
        RecordBatch::try_new_with_options(schema, columns, &options)?,
        bad,
    ))
}

/// Casts one column; values that do not fit become null and are listed.
fn cast_column(
    column: &ArrayRef,
    want: &DataType,
    name: &str,
) -> anyhow::Result<(ArrayRef, Vec<(usize, String)>)> {
    if column.data_type() == want {
        return Ok((Arc::clone(column), Vec::new()));
    }
    let text = column.as_any().downcast_ref::<StringArray>();
    if let (DataType::List(_), Some(text)) = (want, text) {
        return Ok(parse_tags(text));
    }
    let cast = cast_with_options(column, want, &CastOptions::default())
        .with_context(|| format!("column {name:?} cannot be read as {want}"))?;
    let mut bad = Vec::new();
    // A safe cast turns values that do not fit into nulls.
    if cast.null_count() > column.null_count() {
        for i in 0..column.len() {
            if column.is_valid(i) && cast.is_null(i) {
                let value = text.map_or(String::new(), |t| format!(" {:?}", t.value(i)));
                bad.push((
                    i,
                    format!("column {name:?}: value{value} is not a valid {want}"),
                ));
            }
        }
    }
    Ok((cast, bad))
}

/// `["a","b"]` (JSON) or `a;b`; a bad JSON array is listed.
fn parse_tags(text: &StringArray) -> (ArrayRef, Vec<(usize, String)>) {
    let mut builder = ListBuilder::new(StringBuilder::new());
    let mut bad = Vec::new();
    for (i, value) in text.iter().enumerate() {
        match value.map(str::trim) {
            None | Some("") => builder.append_null(),
            Some(v) if v.starts_with('[') => match serde_json::from_str::<Vec<String>>(v) {
                Ok(tags) => {
                    for t in tags {
                        builder.values().append_value(t);
                    }
                    builder.append(true);
                }
                Err(_) => {
                    bad.push((
                        i,
                        format!("column \"tags\": {v:?} is not a JSON array of strings"),
                    ));
                    builder.append_null();
                }
            },
            Some(v) => {
                for t in v.split(';').map(str::trim).filter(|t| !t.is_empty()) {
                    builder.values().append_value(t);
                }
                builder.append(true);
            }
        }
    }
    (Arc::new(builder.finish()), bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_extension() {
        assert_eq!(
            Format::of(Path::new("a/b.PARQUET")).ok(),
            Some(Format::Parquet)
        );
        assert_eq!(Format::of(Path::new("x.jsonl")).ok(), Some(Format::Ndjson));
        assert_eq!(Format::of(Path::new("x.csv")).ok(), Some(Format::Csv));
        assert!(Format::of(Path::new("x.txt")).is_err());
    }

    #[test]
    fn tags_in_csv() {
        let text = StringArray::from(vec![
            Some(r#"["vip","refund"]"#),
            Some("a; b"),
            None,
            Some("[1"),
        ]);
        let (tags, bad) = parse_tags(&text);
        let list = tags
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap_or_else(|| panic!("not a list"));
        assert_eq!(list.value_length(0), 2);
        assert_eq!(list.value_length(1), 2);
        assert!(list.is_null(2));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 3);
    }

    #[test]
    fn bad_value_names_row_and_column() {
        let col: ArrayRef = Arc::new(StringArray::from(vec!["5", "x"]));
        let (cast, bad) =
            cast_column(&col, &DataType::Int32, "csat_score").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cast.null_count(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 1);
        assert!(
            bad[0].1.contains("csat_score") && bad[0].1.contains("\"x\""),
            "{}",
            bad[0].1
        );
    }
}
