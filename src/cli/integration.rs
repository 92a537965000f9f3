//! `integration list`: page id, client, status, expiry. Never a token, sealed or not.

use crate::config::Settings;
use crate::startup;
use crate::store::Integration;

#[derive(Debug, clap::Subcommand)]
pub enum IntegrationCommand {
    /// List page integrations.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(serde::Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    integration: &'a Integration,
    /// The key that sealed the token (useful while rotating), or null once the token is wiped.
    token_key_id: Option<&'a str>,
}

pub async fn run(settings: &Settings, cmd: IntegrationCommand) -> anyhow::Result<()> {
    let IntegrationCommand::List { json } = cmd;
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
