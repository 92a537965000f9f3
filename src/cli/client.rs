//! `client add` and `client list`.

use super::UsageError;
use crate::clients::Clients;
use crate::config::Settings;
use crate::domain::{Actor, ClientName, ClientSlug};
use crate::startup;
use crate::store::{AiSetting, Client, ResponderSetting, Store, StoreError};

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
    /// Choose how the client's pages answer: keyword rules, relay to the client's own bot, or AI answers.
    SetResponder {
        /// The client's slug.
        slug: String,
        #[command(subcommand)]
        responder: ResponderArgs,
    },
    /// Set the client's Send API calls per second per page (or `default` for the configured default).
    SetRate { slug: String, rate: String },
    /// How long the bot stays silent in a conversation after a person at the business answered in the Page
    /// Inbox or the Instagram Inbox (e.g. 30m, 2h; 1m to 7d), or `default` for engine.human_pause_secs.
    SetHumanPause { slug: String, pause: String },
    /// Print a signed, expiring link that starts "Connect with Facebook" for this client.
    OnboardLink {
        slug: String,
        /// How long the link works (e.g. 24h, 7d; at most 30d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ResponderArgs {
    /// Keyword rules from a JSON file: {"keywords":[{"match":["hours"],"reply":"…"}],"postbacks":{"PAYLOAD":"…"},"fallback":"…"}
    Rules {
        #[arg(long, value_name = "PATH")]
        file: std::path::PathBuf,
    },
    /// POST each event to URL, signed with a secret read from standard input.
    Relay {
        #[arg(long)]
        url: String,
    },
    /// A language model answers customers' texts from the client's knowledge (needs ai.base_url); the
    /// client's rules answer whatever the model cannot (budget used up, the model failing or slow).
    Ai {
        /// The client's knowledge: plain text or Markdown (hours, locations, policies, products, tone).
        #[arg(long, value_name = "FILE")]
        knowledge: std::path::PathBuf,
        /// Tokens the client's AI answers may use each calendar month (UTC); default: ai.default_monthly_tokens.
        #[arg(long, value_name = "N")]
        monthly_tokens: Option<u64>,
        /// Remove links from answers unless the knowledge contains them.
        #[arg(long)]
        known_links_only: bool,
    },
}

pub async fn run(settings: &Settings, cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add { name, slug } => {
            let name = ClientName::parse(&name).map_err(|e| UsageError(format!("--name {e}")))?;
            let slug = match slug {
                Some(raw) => ClientSlug::parse(&raw).map_err(|e| UsageError(format!("--slug: {e}")))?,
                None => ClientSlug::from_name(name.as_str()).map_err(|e| UsageError(e.to_string()))?,
            };
            let clients = clients(settings).await?;
            let client = clients.create(Actor::Cli, &name, &slug).await.map_err(|e| match e {
                StoreError::Conflict(msg) => anyhow::Error::new(UsageError(msg)),
                other => other.into(),
            })?;
            println!("created client {} with slug {}", client.id, client.slug);
            Ok(())
        }
        ClientCommand::SetResponder { slug, responder } => set_responder(settings, &slug, responder).await,
        ClientCommand::SetRate { slug, rate } => {
            let rate = crate::config::client_send_rate(&rate).map_err(UsageError)?;
            let (clients, client) = client(settings, &slug).await?;
            clients.set_rate(Actor::Cli, client.id, rate).await?;
            match rate {
                Some(r) => println!("client {} now sends at most {r} calls per second per page", client.slug),
                None => println!("client {} now uses the default send rate", client.slug),
            }
            Ok(())
        }
        ClientCommand::SetHumanPause { slug, pause } => {
            let secs = crate::config::client_human_pause(&pause).map_err(UsageError)?;
            let (clients, client) = client(settings, &slug).await?;
            clients.set_human_pause(Actor::Cli, client.id, secs).await?;
            match secs {
                Some(s) => println!(
                    "client {}: the bot stays silent for {} after a person answers",
                    client.slug,
                    humantime::format_duration(std::time::Duration::from_secs(s.into()))
                ),
                None => println!("client {} now uses the default pause after a person answers", client.slug),
            }
            Ok(())
        }
        ClientCommand::OnboardLink { slug, ttl } => {
            if ttl.is_zero() || ttl > std::time::Duration::from_secs(30 * 86_400) {
                return Err(UsageError("--ttl must be more than 0 and at most 30d".to_owned()).into());
            }
            let tools = super::Tools::open(settings).await?;
            let client = find_client(tools.onboarding.store(), &slug).await?;
            println!("{}", tools.onboarding.send_onboard_link(Actor::Cli, &client, ttl).await);
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

/// The client business steps over the configured store (no engine in this process: running nodes are told).
async fn clients(settings: &Settings) -> anyhow::Result<Clients> {
    Ok(Clients::new(startup::open_store(settings).await?, None))
}

/// The business steps and the client named by `slug` (an unknown slug is a usage error).
async fn client(settings: &Settings, slug: &str) -> anyhow::Result<(Clients, Client)> {
    let clients = clients(settings).await?;
    let client = find_client(clients.store(), slug).await?;
    Ok((clients, client))
}

async fn find_client(store: &Store, slug: &str) -> anyhow::Result<Client> {
    let slug = ClientSlug::parse(slug).map_err(|e| UsageError(format!("slug: {e}")))?;
    Ok(store.client_by_slug(&slug).await?.ok_or_else(|| UsageError(format!("no client with slug {slug}")))?)
}

async fn set_responder(settings: &Settings, slug: &str, args: ResponderArgs) -> anyhow::Result<()> {
    let setting = match &args {
        ResponderArgs::Rules { file } => {
            let text =
                std::fs::read_to_string(file).map_err(|e| UsageError(format!("--file {}: {e}", file.display())))?;
            let rules: switchboard_actors::Rules = serde_json::from_str(&text)
                .map_err(|e| UsageError(format!("--file {}: not valid rules: {e}", file.display())))?;
            rules.validate().map_err(|e| UsageError(format!("--file {}: {e}", file.display())))?;
            Some(serde_json::to_string(&rules)?)
        }
        ResponderArgs::Relay { url } => {
            crate::adapters::relay::check_url(url, settings.engine.relay.allow_private)
                .map_err(|e| UsageError(format!("--url {e}")))?;
            None
        }
        ResponderArgs::Ai { knowledge, .. } => {
            let Some(ai) = &settings.ai else {
                return Err(UsageError(
                    "the ai responder needs a model server: set ai.base_url (SWITCHBOARD__AI__BASE_URL) and ai.model"
                        .to_owned(),
                )
                .into());
            };
            let bytes = std::fs::read(knowledge)
                .map_err(|e| UsageError(format!("--knowledge {}: {e}", knowledge.display())))?;
            let text = crate::adapters::ai::check_knowledge(bytes, ai.max_knowledge_bytes)
                .map_err(|e| UsageError(format!("--knowledge {}: {e}", knowledge.display())))?;
            Some(text)
        }
    };
    let (clients, client) = client(settings, slug).await?;
    let responder = match (args, setting) {
        (ResponderArgs::Rules { .. }, Some(rules_json)) => ResponderSetting::Rules { rules_json },
        (ResponderArgs::Relay { url }, _) => {
            let secret = super::read_secret_line("relay secret")?;
            crate::adapters::relay::check_secret(&secret).map_err(UsageError)?;
            let keys = startup::open_vault(settings, clients.store()).await?;
            ResponderSetting::Relay { url, secret: keys.seal_relay_secret(client.id, &secret)? }
        }
        (ResponderArgs::Ai { monthly_tokens, known_links_only, .. }, Some(knowledge)) => {
            ResponderSetting::Ai(AiSetting { knowledge, monthly_tokens, known_links_only })
        }
        (ResponderArgs::Rules { .. } | ResponderArgs::Ai { .. }, None) => unreachable!("read above"),
    };
    clients.set_responder(Actor::Cli, client.id, &responder).await?;
    println!(
        "client {} now answers with {}; a cluster's nodes reload its tenants now, a single server when they next start",
        client.slug,
        responder.kind()
    );
    Ok(())
}
