//! `keygen` and `rotate-keys`.

use anyhow::Context as _;
use secrecy::ExposeSecret as _;

use super::UsageError;
use crate::config::Settings;
use crate::domain::{Actor, AuditAction, KeyId};
use crate::secrets::rotation;
use crate::secrets::vault;
use crate::startup;
use crate::store::AuditEntry;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The new key's id (default: k + today's date and time, which sorts by age).
    #[arg(long)]
    id: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// Rows re-encrypted per transaction.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let id = args.id.clone().unwrap_or_else(|| format!("k{}", crate::clock::now().format("%Y%m%d%H%M%S")));
    let id = KeyId::parse(&id).map_err(|problem| UsageError(format!("--id: {problem}")))?;
    println!("{}", vault::generate_key_entry(&id).expose_secret());
    Ok(())
}

pub async fn rotate(settings: &Settings, args: &RotateArgs) -> anyhow::Result<()> {
    let store = startup::open_store(settings).await?;
    let keys = startup::open_vault(settings, &store).await?;
    let report = rotation::rotate_all(&store, &keys, args.batch_size).await.context("rotation stopped")?;
    let current = keys.current_key_id();
    store
        .append_audit(&AuditEntry {
            actor: Actor::Cli,
            action: AuditAction::VaultRotated,
            client_id: None,
            page_id: None,
            detail: format!(
                "key {current}: {} rotated, {} skipped, {} failed",
                report.rotated,
                report.skipped,
                report.failed.len()
            ),
        })
        .await?;
    println!(
        "rotated {} secret(s) to key {current}; {} changed concurrently and were left as they are; {} failed",
        report.rotated,
        report.skipped,
        report.failed.len()
    );
    for (page, reason) in &report.failed {
        eprintln!("failed: {page}: {reason}");
    }
    if report.failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} secret(s) could not be re-encrypted (listed above)", report.failed.len())
    }
}
