//! The `meta-sim` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use meta_sim::sender::{self, SendPlan};
use meta_sim::webhook::{GenConfig, GenPage, Generator, Kind};
use meta_sim::{Sim, SimConfig};

#[derive(Debug, Parser)]
#[command(name = "meta-sim", version, about = "A stand-in for Meta's Graph API, Login dialog and webhooks")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Graph API, the Login dialog, chat completions (/v1) and the /_sim control API.
    Serve(ServeArgs),
    /// Post signed webhook events to a webhook URL and report acknowledgements and latency.
    Send(SendArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    bind: SocketAddr,
    /// A JSON file with the full configuration (see SimConfig); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    app_id: Option<String>,
    #[arg(long, env = "META_APP_SECRET")]
    app_secret: Option<String>,
    /// A valid OAuth redirect URI (repeatable), e.g. http://127.0.0.1:8080/api/auth/facebook/callback.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Send API calls per second per Page (0 = unlimited).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Accept calls without appsecret_proof.
    #[arg(long)]
    no_require_proof: bool,
    /// The API key POST /v1/chat/completions requires as `Authorization: Bearer <key>` (default: none, any call
    /// is answered).
    #[arg(long, env = "META_SIM_AI_KEY")]
    ai_key: Option<String>,
}

#[derive(Debug, clap::Args)]
struct SendArgs {
    /// The webhook URL, e.g. http://127.0.0.1:8080/api/facebook-webhook.
    #[arg(long)]
    target: String,
    #[arg(long, env = "META_APP_SECRET")]
    app_secret: String,
    /// Page ids, comma-separated; `PAGE:IGID` adds the page's Instagram account.
    #[arg(long, value_delimiter = ',', default_value = "104711112233445")]
    pages: Vec<String>,
    /// Users per page.
    #[arg(long, default_value_t = 10)]
    users: usize,
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Requests per second (default: as fast as --concurrency allows).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "text")]
    kinds: Vec<Kind>,
    /// Entries (pages) per POST.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Fraction of bodies that repeat an earlier one exactly.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A running meta-sim to tell which generated users are Instagram users (its base URL).
    #[arg(long)]
    sim: Option<String>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Send(args) => send(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a valid configuration", path.display()))?
        }
        None => SimConfig::default(),
    };
    if let Some(id) = args.app_id {
        config.app_id = id;
    }
    if let Some(secret) = args.app_secret {
        config.app_secret = secret;
    }
    config.redirect_uris.extend(args.redirect_uris);
    if let Some(rate) = args.rate_limit {
        config.rate_limit_per_page = rate;
    }
    if args.no_require_proof {
        config.require_appsecret_proof = false;
    }
    if let Some(key) = args.ai_key {
        config.ai_key = Some(key);
    }
    let listener =
        tokio::net::TcpListener::bind(args.bind).await.with_context(|| format!("cannot listen on {}", args.bind))?;
    tracing::info!(addr = %listener.local_addr()?, app_id = %config.app_id, "meta-sim listening");
    let sim = std::sync::Arc::new(Sim::new(config));
    meta_sim::serve(listener, sim, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    anyhow::ensure!((0.0..=1.0).contains(&args.duplicates), "--duplicates must be between 0 and 1");
    let pages = args
        .pages
        .iter()
        .map(|p| match p.split_once(':') {
            Some((id, ig)) => GenPage { id: id.to_owned(), instagram: Some(ig.to_owned()) },
            None => GenPage { id: p.clone(), instagram: None },
        })
        .collect::<Vec<_>>();
    if args.kinds.contains(&Kind::Instagram) {
        anyhow::ensure!(
            pages.iter().any(|p| p.instagram.is_some()),
            "--kinds instagram needs a page given as PAGE:IGID"
        );
    }
    let mut generator = Generator::new(GenConfig {
        pages,
        users: args.users.max(1),
        kinds: args.kinds,
        batch: args.batch.max(1),
        duplicate_rate: args.duplicates,
        seed: args.seed,
        ..GenConfig::default()
    });
    if let Some(sim) = &args.sim {
        let client = reqwest::Client::new();
        for id in generator.instagram_users() {
            client
                .post(format!("{sim}/_sim/recipients/{id}"))
                .json(&serde_json::json!({ "channel": "instagram" }))
                .send()
                .await
                .with_context(|| format!("cannot reach meta-sim at {sim}"))?;
        }
    }
    let plan = SendPlan {
        target: args.target,
        app_secret: args.app_secret,
        count: args.count,
        rate: args.rate,
        concurrency: args.concurrency,
        timeout: Duration::from_secs(20),
    };
    let report = sender::run(&plan, || generator.next_body()).await;
    print!("{}", report.table());
    Ok(())
}
