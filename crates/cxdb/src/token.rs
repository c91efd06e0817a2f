//! `cxdb token create|list|revoke`: manages API tokens through
//! `AdminService` (needs an admin token, e.g. the server's `--admin-token`).

use clap::{Args, Subcommand};
use cxdb_proto::v1::admin_service_client::AdminServiceClient;
use cxdb_proto::v1::{CreateTokenRequest, ListRequest, RevokeTokenRequest, TokenInfo};

use crate::client::{code_name, connect};

#[derive(Debug, Clone, Args)]
pub(crate) struct TokenArgs {
    /// Server gRPC address.
    #[arg(long, env = "CXDB_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,

    /// An admin token.
    #[arg(long, env = "CXDB_TOKEN", hide_env_values = true)]
    token: Option<String>,

    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Clone, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is shown only once).
    Create {
        /// A label: who or what uses the token.
        #[arg(long)]
        name: String,
        /// ingest (write events), read (queries), analyst (read + views), admin.
        #[arg(long, value_parser = ["ingest", "read", "analyst", "admin"])]
        role: String,
        /// Scope the token to one tenant: it sees and writes only its rows.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        /// Only the tokens scoped to this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token by its id; it stops working at once.
    Revoke {
        /// The id shown by `list` (the part after `cxdb_`).
        id: String,
    },
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", code_name(s.code()), s.message())
}

pub(crate) async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let channel = connect(&args.addr, args.token.as_deref()).await?;
    let mut admin = AdminServiceClient::new(channel);
    match args.command {
        TokenCommand::Create { name, role, tenant } => {
            let out = admin
                .create_token(CreateTokenRequest {
                    name,
                    role,
                    tenant_id: tenant,
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(info) = &out.info {
                eprintln!("created {}; the token is shown only once:", describe(info));
            }
            println!("{}", out.token);
        }
        TokenCommand::List { tenant } => {
            let out = admin
                .list_tokens(ListRequest {
                    tenant_id: tenant.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "{:<12}  {:<8}  {:<16}  {:<24}  status",
                "id", "role", "tenant", "name"
            );
            for t in &out.tokens {
                println!(
                    "{:<12}  {:<8}  {:<16}  {:<24}  {}",
                    t.id,
                    t.role,
                    t.tenant_id.as_deref().unwrap_or("*"),
                    t.name,
                    if t.revoked_at_us.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let out = admin
                .revoke_token(RevokeTokenRequest { id: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            if out.revoked {
                println!("revoked {id}");
            } else {
                println!("{id} was already revoked");
            }
        }
    }
    Ok(())
}

fn describe(t: &TokenInfo) -> String {
    match &t.tenant_id {
        Some(tenant) => format!(
            "{} token {} ({:?}) for tenant {tenant}",
            t.role, t.id, t.name
        ),
        None => format!("{} token {} ({:?}) for every tenant", t.role, t.id, t.name),
    }
}
