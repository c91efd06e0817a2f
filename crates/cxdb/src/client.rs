//! `cxdb sql`: runs SQL on a server over gRPC (`QueryService.Sql`, Arrow IPC)
//! and prints the result as a table, CSV or JSON.

use std::io::Cursor;

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use clap::Args;
use cxdb_proto::v1::SqlRequest;
use cxdb_proto::v1::query_service_client::QueryServiceClient;
use futures::StreamExt;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Debug, Clone, Args)]
pub(crate) struct SqlArgs {
    /// Server gRPC address.
    #[arg(long, env = "CXDB_ADDR", default_value = "http://127.0.0.1:50051")]
    pub(crate) addr: String,

    /// Bearer token (servers running with --auth token).
    #[arg(long, env = "CXDB_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// One statement to run; without it, an interactive shell starts.
    #[arg(short = 'c', long = "command")]
    pub(crate) command: Option<String>,

    /// Output format.
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    pub(crate) format: String,
}

/// `--ca-cert`: the PEM of the CA that signed the server's certificate.
static CA_CERT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// Reads `--ca-cert` once, at start-up.
pub(crate) fn set_ca_cert(path: &std::path::Path) -> anyhow::Result<()> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
    let _ = CA_CERT.set(pem);
    Ok(())
}

/// A channel to the server at `addr`: TLS for `https://` (trusting
/// `--ca-cert`; there is no system trust store in the client), plain text
/// for `http://`.
pub(crate) async fn connect_raw(addr: &str) -> anyhow::Result<Channel> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(addr.to_string())
        .with_context(|| format!("invalid server address {addr:?}"))?;
    if addr.starts_with("https://") {
        let ca = CA_CERT.get().with_context(|| {
            format!("{addr} is https: give the server's CA certificate with --ca-cert")
        })?;
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS configuration for {addr}"))?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to cxdb at {addr}"))
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub(crate) struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    pub(crate) fn new(token: Option<&str>) -> anyhow::Result<Self> {
        token
            .map(|t| {
                format!("Bearer {}", t.trim())
                    .parse()
                    .context("the token is not valid header text")
            })
            .transpose()
            .map(Self)
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the token.
pub(crate) type AuthChannel = InterceptedService<Channel, BearerToken>;

/// A channel to the server at `addr` whose calls carry `token`.
pub(crate) async fn connect(addr: &str, token: Option<&str>) -> anyhow::Result<AuthChannel> {
    let bearer = BearerToken::new(token)?;
    Ok(InterceptedService::new(connect_raw(addr).await?, bearer))
}

/// Runs one statement and returns its batches.
pub(crate) async fn query(channel: AuthChannel, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let mut client = QueryServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    let mut stream = client
        .sql(SqlRequest {
            sql: sql.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", code_name(s.code()), s.message()))?
        .into_inner();
    let mut ipc = Vec::new();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|s| anyhow::anyhow!("{}: {}", code_name(s.code()), s.message()))?;
        ipc.extend_from_slice(&msg.arrow_ipc);
    }
    let reader = StreamReader::try_new(Cursor::new(ipc), None)
        .context("invalid Arrow IPC from the server")?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

fn print(batches: &[RecordBatch], format: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        "csv" => {
            let mut w = arrow::csv::Writer::new(&mut out);
            for b in batches {
                w.write(&nested_as_text(b)?)?;
            }
        }
        "json" => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            println!();
        }
        _ => {
            use std::io::Write;
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(batches)?
            )?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
    }
    Ok(())
}

/// `batch` with its lists, structs and maps written as text (`[a, b]`, as
/// the table format and DuckDB's CSV export write them): Arrow's CSV writer
/// has no form for nested values and would refuse the whole result. Used
/// by every CSV `cxdb` writes (`sql --format csv`, `export --format csv`).
pub(crate) fn nested_as_text(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};

    if !batch.columns().iter().any(|c| c.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !column.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())?;
        let text: StringArray = (0..column.len())
            .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
            .collect();
        fields.push(Field::new(
            field.name(),
            arrow::datatypes::DataType::Utf8,
            true,
        ));
        columns.push(std::sync::Arc::new(text));
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(fields)),
        columns,
    )?)
}

pub(crate) async fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let channel = connect(&args.addr, args.token.as_deref()).await?;
    if let Some(sql) = &args.command {
        let batches = query(channel, sql).await?;
        return print(&batches, &args.format);
    }
    shell(channel, &args.format).await
}

/// An interactive shell with history (`~/.cxdb_history`); a statement ends
/// with `;`.
async fn shell(channel: AuthChannel, format: &str) -> anyhow::Result<()> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cxdb_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!("cxdb sql shell: end statements with ';', \\q to quit.");
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "cxdb> "
        } else {
            "  ... "
        };
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(_) => break,
        };
        if statement.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        statement.push_str(&line);
        statement.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut statement);
        let _ = editor.add_history_entry(sql.trim());
        match query(channel.clone(), &sql).await {
            Ok(batches) => print(&batches, format)?,
            Err(e) => eprintln!("error: {e}"),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
