//! `client add` and `client list`.

use super::{CLI_ACTOR, UsageError};
use crate::config::Settings;
use crate::domain::ClientSlug;
use crate::startup;
use crate::store::AuditEntry;

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create a client; prints its id and slug.
    Add {
        /// Display name, e.g. "Woodstock Outlet".
        #[arg(long)]
        name: String,
        /// URL-safe handle (default: derived from the name).
        #[arg(long)]
        slug: Option<String>,
    },
    /// List clients.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add { name, slug } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(UsageError("--name must be 1 to 200 characters".to_owned()).into());
            }
            let slug = match slug {
                Some(raw) => ClientSlug::parse(&raw).map_err(|e| UsageError(format!("--slug: {e}")))?,
                None => ClientSlug::from_name(name).map_err(|e| UsageError(e.to_string()))?,
            };
            let store = startup::open_store(settings).await?;
            let client = store.create_client(name, &slug).await.map_err(|e| match e {
                crate::store::StoreError::Conflict(msg) => anyhow::Error::new(UsageError(msg)),
                other => other.into(),
            })?;
            store
                .append_audit(&AuditEntry {
                    actor: CLI_ACTOR.to_owned(),
                    action: "client.created".to_owned(),
                    client_id: Some(client.id),
                    page_id: None,
                    detail: format!("name {:?}, slug {}", client.name, client.slug),
                })
                .await?;
            println!("created client {} with slug {}", client.id, client.slug);
            Ok(())
        }
        ClientCommand::List { json } => {
            let store = startup::open_store(settings).await?;
            let clients = store.list_clients().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&clients)?);
            } else if clients.is_empty() {
                println!("no clients yet: add one with `switchboard client add --name NAME`");
            } else {
                println!("{:<6} {:<32} {:<40} CREATED", "ID", "SLUG", "NAME");
                for c in clients {
                    println!("{:<6} {:<32} {:<40} {}", c.id, c.slug, c.name, c.created_at.format("%Y-%m-%d %H:%M UTC"));
                }
            }
            Ok(())
        }
    }
}
