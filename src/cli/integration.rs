//! `integration list`: page id, client, status, expiry. Never a token, sealed or not.

use super::UsageError;
use crate::config::Settings;
use crate::domain::{Actor, PageId};
use crate::onboarding::CheckResult;
use crate::startup;
use crate::store::Integration;
use crate::store::StoreError;

#[derive(Debug, clap::Subcommand)]
pub enum IntegrationCommand {
    /// List page integrations.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disconnect a page: unsubscribe it at Meta, erase its token, mark it revoked.
    Disconnect { page_id: String },
    /// Check tokens (debug_token) and webhook subscriptions now: one page, or every connected page.
    Check { page_id: Option<String> },
}

#[derive(serde::Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    integration: &'a Integration,
    /// The key that sealed the token (useful while rotating), or null once the token is wiped.
    token_key_id: Option<&'a str>,
}

pub async fn run(settings: &Settings, cmd: IntegrationCommand) -> anyhow::Result<()> {
    let json = match cmd {
        IntegrationCommand::List { json } => json,
        IntegrationCommand::Disconnect { page_id } => return disconnect(settings, &page_id).await,
        IntegrationCommand::Check { page_id } => return check(settings, page_id.as_deref()).await,
    };
    let store = startup::open_store(settings).await?;
    let integrations = store.list_integrations().await?;
    let listed: Vec<Listed<'_>> = integrations
        .iter()
        .map(|i| Listed { integration: i, token_key_id: i.sealed_token.as_ref().map(|s| s.key_id().as_str()) })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    if listed.is_empty() {
        println!("no integrations yet: clients connect their Pages through Facebook Login");
        return Ok(());
    }
    println!("{:<20} {:<24} {:<13} {:<22} {:<20} KEY", "PAGE ID", "CLIENT", "STATUS", "TOKEN EXPIRES", "INSTAGRAM");
    for l in &listed {
        let i = l.integration;
        let expires =
            i.token_expires_at.map_or_else(|| "never".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        let ig = i.instagram_account_id.as_ref().map_or("-", |ig| ig.as_str());
        println!(
            "{:<20} {:<24} {:<13} {:<22} {:<20} {}",
            i.page_id,
            i.client_slug,
            i.status,
            expires,
            ig,
            l.token_key_id.unwrap_or("-")
        );
    }
    Ok(())
}

fn parse_page(raw: &str) -> anyhow::Result<PageId> {
    Ok(PageId::parse(raw).map_err(|e| UsageError(format!("page id {raw:?}: {e}")))?)
}

async fn disconnect(settings: &Settings, page_id: &str) -> anyhow::Result<()> {
    let page = parse_page(page_id)?;
    let tools = super::Tools::open(settings).await?;
    match tools.onboarding.disconnect(&page, None, Actor::Cli, "disconnected by an operator").await {
        Ok(warning) => {
            println!("page {page} disconnected: token erased, status revoked");
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            Ok(())
        }
        Err(StoreError::NotFound(_)) => Err(UsageError(format!("no integration for page {page}")).into()),
        Err(StoreError::Conflict(m)) => Err(UsageError(m).into()),
        Err(e) => Err(e.into()),
    }
}

async fn check(settings: &Settings, page_id: Option<&str>) -> anyhow::Result<()> {
    let tools = super::Tools::open(settings).await?;
    let pages = match page_id {
        Some(raw) => vec![parse_page(raw)?],
        None => tools
            .onboarding
            .store()
            .list_integrations()
            .await?
            .into_iter()
            .filter(|i| i.status == crate::store::IntegrationStatus::Connected)
            .map(|i| i.page_id)
            .collect(),
    };
    let mut problems = 0;
    for page in pages {
        let result = tools.onboarding.check(&page).await?;
        let line = match &result {
            CheckResult::Healthy => "healthy".to_owned(),
            CheckResult::Resubscribed => "was unsubscribed by Meta; subscribed again".to_owned(),
            CheckResult::NeedsReauth(reason) => {
                problems += 1;
                format!("needs reconnection: {reason}")
            }
            CheckResult::Skipped(reason) => format!("not checked: {reason}"),
        };
        println!("{page}: {line}");
    }
    if problems > 0 {
        anyhow::bail!("{problems} page(s) need the client to reconnect");
    }
    Ok(())
}
