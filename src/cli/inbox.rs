//! `inbox stats` and `inbox replay --failed [--client SLUG]`.

use super::{CLI_ACTOR, UsageError};
use crate::config::Settings;
use crate::domain::ClientSlug;
use crate::startup;
use crate::store::AuditEntry;

#[derive(Debug, clap::Subcommand)]
pub enum InboxCommand {
    /// Events per status (pending, done, failed).
    Stats,
    /// Put failed events (dead letters) back to pending; a running server hands them to its engine at its next
    /// inbox sweep (inbox.sweep_interval_secs).
    Replay {
        /// Replay failed events (the only kind that can be replayed).
        #[arg(long, required = true)]
        failed: bool,
        /// Only this client's pages.
        #[arg(long = "client", value_name = "SLUG")]
        client: Option<String>,
    },
}

pub async fn run(settings: &Settings, cmd: InboxCommand) -> anyhow::Result<()> {
    let store = startup::open_store(settings).await?;
    match cmd {
        InboxCommand::Stats => {
            let counts = store.inbox_counts().await?;
            if counts.is_empty() {
                println!("the inbox is empty");
            }
            for (status, n) in counts {
                println!("{status:<8} {n}");
            }
            Ok(())
        }
        InboxCommand::Replay { failed: _, client } => {
            let client_id = match client {
                Some(raw) => {
                    let slug = ClientSlug::parse(&raw).map_err(|e| UsageError(format!("--client: {e}")))?;
                    Some(
                        store
                            .client_by_slug(&slug)
                            .await?
                            .ok_or_else(|| UsageError(format!("no client with slug {slug}")))?
                            .id,
                    )
                }
                None => None,
            };
            let n = store.inbox_requeue_failed(client_id).await?;
            store
                .append_audit(&AuditEntry {
                    actor: CLI_ACTOR.to_owned(),
                    action: "inbox.replayed".to_owned(),
                    client_id,
                    page_id: None,
                    detail: format!("{n} failed event(s) back to pending"),
                })
                .await?;
            println!("{n} failed event(s) are pending again; a running server handles them at its next inbox sweep");
            Ok(())
        }
    }
}
