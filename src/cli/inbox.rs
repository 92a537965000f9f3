//! `inbox stats`, `inbox unhandled [--limit N] [--json]` and `inbox replay --failed [--client SLUG]`.

use super::UsageError;
use crate::config::Settings;
use crate::domain::{Actor, AuditAction, ClientSlug};
use crate::startup;
use crate::store::{AuditEntry, Store};

#[derive(Debug, clap::Subcommand)]
pub enum InboxCommand {
    /// Events per status (pending, done, failed), the oldest pending event, the Pages found stuck (and why),
    /// and the webhook parts kept as not understood, per kind.
    Stats,
    /// The newest webhook parts Switchboard did not understand (acknowledged to Meta and kept raw), with where
    /// each was in its body and why.
    Unhandled {
        /// How many to show, newest first.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// One JSON object per line, raw part included.
        #[arg(long)]
        json: bool,
    },
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
        InboxCommand::Stats => stats(&store).await,
        InboxCommand::Unhandled { limit, json } => unhandled(&store, limit, json).await,
        InboxCommand::Replay { failed: _, client } => replay(&store, client).await,
    }
}

/// Rows per status, the oldest pending event's age, the Pages found stuck, and a summary of what was not
/// understood.
async fn stats(store: &Store) -> anyhow::Result<()> {
    let counts = store.inbox_counts().await?;
    if counts.is_empty() {
        println!("the inbox is empty");
    }
    for (status, n) in counts {
        println!("{status:<8} {n}");
    }
    let now = crate::clock::now();
    if let Some(oldest) = store.inbox_pending_by_page().await?.iter().map(|p| p.oldest).min() {
        println!("oldest pending event: waiting for {}", waited(now - oldest));
    }
    let stuck = store.stuck_pages().await?;
    if !stuck.is_empty() {
        println!();
        println!("stuck Pages (pending events wait and none finishes; `inbox.stuck_after_secs`):");
        println!("{:<20} {:<16} {:>8} {:>10}  {:<12} reason", "page", "why", "pending", "oldest", "checked by");
        for s in stuck {
            let age = |ms: i64| waited(now - chrono::DateTime::from_timestamp_millis(ms).unwrap_or(now));
            println!(
                "{:<20} {:<16} {:>8} {:>10}  {:<12} {} (checked {} ago)",
                s.page_id,
                s.reason,
                s.pending,
                age(s.oldest_ms),
                s.node,
                s.detail,
                age(s.checked_ms)
            );
        }
    }
    let unhandled = store.unhandled_summary().await?;
    if !unhandled.is_empty() {
        println!();
        println!("not understood (acknowledged and kept raw; `switchboard inbox unhandled` lists them):");
        println!("{:<26} {:<22} {:<16} {:>8}  last", "object", "kind", "reason", "count");
        for u in unhandled {
            println!(
                "{:<26} {:<22} {:<16} {:>8}  {}",
                u.object,
                u.kind,
                u.reason,
                u.count,
                u.last_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    Ok(())
}

/// A duration for people: seconds, minutes or hours.
fn waited(d: chrono::Duration) -> String {
    match d.num_seconds().max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// The newest parts not understood, raw (or as JSON lines).
async fn unhandled(store: &Store, limit: u32, json: bool) -> anyhow::Result<()> {
    let parts = store.unhandled_recent(i64::from(limit)).await?;
    if parts.is_empty() && !json {
        println!("nothing was left not understood");
    }
    for part in parts {
        if json {
            println!("{}", serde_json::to_string(&part)?);
            continue;
        }
        println!(
            "#{} {} {}/{} {} page {}: {}",
            part.id,
            part.received_at.format("%Y-%m-%d %H:%M:%S UTC"),
            part.object,
            part.kind,
            part.reason,
            part.account_id.as_deref().unwrap_or("-"),
            part.detail
        );
        println!("    {}", part.raw);
    }
    Ok(())
}

/// Failed events (of one client, or all) back to pending, audited.
async fn replay(store: &Store, client: Option<String>) -> anyhow::Result<()> {
    let client_id = match client {
        Some(raw) => {
            let slug = ClientSlug::parse(&raw).map_err(|e| UsageError(format!("--client: {e}")))?;
            Some(
                store.client_by_slug(&slug).await?.ok_or_else(|| UsageError(format!("no client with slug {slug}")))?.id,
            )
        }
        None => None,
    };
    let n = store.inbox_requeue_failed(client_id).await?;
    store
        .append_audit(&AuditEntry {
            actor: Actor::Cli,
            action: AuditAction::InboxReplayed,
            client_id,
            page_id: None,
            detail: format!("{n} failed event(s) back to pending"),
        })
        .await?;
    println!("{n} failed event(s) are pending again; a running server handles them at its next inbox sweep");
    Ok(())
}
