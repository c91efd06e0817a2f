//! `cxdb`: the command line of the customer-experience analytics database.
//!
//! `serve` runs the server; `sql` queries one; `demo` streams synthetic
//! support traffic into one; `import` loads files into one; `export` writes
//! a query's result to a file; `bench` measures. Every client subcommand
//! reaches the server with `--addr` (gRPC).

mod bench;
mod client;
mod demo;
mod export;
mod import;
mod serve;
mod token;

use clap::{Parser, Subcommand};

/// mimalloc: the write path allocates many short strings from several
/// threads; glibc malloc spent ~30% of ingest CPU (perf, `cxdb bench storage`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "cxdb",
    version,
    about = "Customer-experience analytics database"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info,cxdb_storage=debug`.
    #[arg(long, env = "CXDB_LOG_FILTER", default_value = "info", global = true)]
    log_filter: String,

    /// Log format.
    #[arg(long, env = "CXDB_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    log_format: String,

    /// TOML file whose keys are flag names (flags and CXDB_* variables win).
    #[arg(long, env = "CXDB_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,

    /// Client commands: the CA certificate (PEM) that signed the server's
    /// certificate, for `--addr https://…` (servers run with --tls-cert).
    #[arg(long, env = "CXDB_CA_CERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<serve::ServeArgs>),
    /// Run SQL against a server: one statement with -c, else an interactive shell.
    Sql(client::SqlArgs),
    /// Stream realistic synthetic support traffic into a server.
    Demo(demo::DemoArgs),
    /// Load Parquet, NDJSON or CSV files of events into a server.
    Import(import::ImportArgs),
    /// Write a query's result to a Parquet, CSV or NDJSON file (audited; analyst or admin token).
    Export(export::ExportArgs),
    /// Measure cxdb and print a markdown report.
    Bench(bench::BenchArgs),
    /// Create, list and revoke API tokens (needs an admin token).
    Token(token::TokenArgs),
}

/// Turns transparent huge pages off for this process, as mimalloc's own
/// `MIMALLOC_ALLOW_THP=0` would. mimalloc marks its arenas `MADV_HUGEPAGE`,
/// so the first touch of each 2 MiB page clears all of it, and memory it
/// returns to the kernel and takes back is cleared again 2 MiB at a time:
/// perf of Flight `DoPut` (10,000-event batches, 8 clients) had 25 % of the
/// server's CPU in `clear_page_erms` under `do_huge_pmd_anonymous_page`.
/// Off, the same cell went from 0.73–0.78M to 0.98–1.32M events/s
/// (`cxdb bench ingest --protocols flight`, 2026-11-27).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments only; PR_SET_THP_DISABLE
        // changes one flag of this process and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            eprintln!(
                "cxdb: could not turn transparent huge pages off: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn main() -> anyhow::Result<()> {
    disable_transparent_huge_pages();
    let args: Vec<String> = std::env::args().collect();
    serve::load_config_file(&args)?;
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    if let Some(ca) = &cli.ca_cert {
        client::set_ca_cert(ca)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Sql(args) => client::sql(args).await,
            Command::Demo(args) => demo::run_remote(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Export(args) => export::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Token(args) => token::run(args).await,
        }
    })
}

async fn serve(args: serve::ServeArgs) -> anyhow::Result<()> {
    let config = args.server_config()?;
    let demo = args.demo.then_some(demo::DemoFeed {
        seed: args.demo_seed,
        backfill_days: args.demo_backfill_days,
    });
    cxdb_server::run(config, shutdown_signal(), move |storage| {
        if let Some(feed) = demo {
            tokio::spawn(feed.run_in_process(std::sync::Arc::clone(storage)));
        }
    })
    .await?;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
