//! `cxdb`: the command line of the customer-experience analytics database.
//!
//! Subcommands: `bench` (reproducible figures). `serve`, `sql`, `import`,
//! `demo` and `export` arrive with the server (see README "Status").

mod bench;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cxdb", version, about = "Customer-experience analytics database")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info,cxdb_storage=debug`.
    #[arg(long, env = "CXDB_LOG_FILTER", default_value = "warn", global = true)]
    log_filter: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure cxdb and print a markdown report.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log_filter)?)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Bench(args) => bench::run(args).await,
        }
    })
}
