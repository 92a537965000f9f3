//! The command line: parse, load settings, run one command, map failures to one line and an exit code.
//!
//! Exit codes: 0 success; 2 a configuration or usage problem (the same code clap uses for bad arguments);
//! 1 anything else (database unreachable, a command that failed part-way).

mod client;
mod cluster;
mod inbox;
mod integration;
mod keys;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Settings};
use crate::startup::{self, Application};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "Multi-tenant Messenger and Instagram platform")]
pub struct Cli {
    /// A TOML file overlaid on the built-in defaults (see config/default.toml).
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrates the database first).
    Serve,
    /// Run the whole loop on this machine: Switchboard, the Meta stand-in, a demo client and portal user.
    Demo,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print a new encryption key entry (id:base64) for SWITCHBOARD_ENCRYPTION_KEYS.
    Keygen(keys::KeygenArgs),
    /// Re-encrypt every stored token under the current (first) key.
    RotateKeys(keys::RotateArgs),
    /// Manage clients (tenants).
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Manage portal users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Inspect page integrations.
    #[command(subcommand)]
    Integration(integration::IntegrationCommand),
    /// The durable webhook inbox.
    #[command(subcommand)]
    Inbox(inbox::InboxCommand),
    /// The nodes of a cluster (cluster.mode = "postgres") and who owns each Page.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// A problem with what the user asked for (exit code 2), as opposed to a failure while doing it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let usage = err.downcast_ref::<ConfigError>().is_some() || err.downcast_ref::<UsageError>().is_some();
            eprintln!("error: {err:#}");
            if usage { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    if let Command::Keygen(args) = &cli.command {
        return keys::keygen(args);
    }
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log);
    match cli.command {
        Command::Serve => {
            let app = Application::build(&settings).await?;
            app.run_until_stopped(startup::shutdown_signal()).await
        }
        Command::Demo => crate::demo::run(settings).await,
        Command::Migrate => {
            startup::open_store(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keygen(_) => unreachable!("handled above"),
        Command::RotateKeys(args) => keys::rotate(&settings, &args).await,
        Command::Client(cmd) => client::run(&settings, cmd).await,
        Command::User(cmd) => user::run(&settings, cmd).await,
        Command::Integration(cmd) => integration::run(&settings, cmd).await,
        Command::Inbox(cmd) => inbox::run(&settings, cmd).await,
        Command::Cluster(cmd) => cluster::run(&settings, cmd).await,
    }
}

/// One line from stdin (prompted without echo on a terminal); the trailing newline is not part of it.
/// Secrets are read this way, never from argv (where shell history and `ps` would keep them).
fn read_secret_line(what: &str) -> anyhow::Result<secrecy::SecretString> {
    use std::io::{BufRead as _, IsTerminal as _};

    use anyhow::Context as _;
    use zeroize::Zeroizing;

    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password(format!("{what}: ")).with_context(|| format!("cannot read the {what}"))?,
        )
    } else {
        let mut line = Zeroizing::new(String::new());
        stdin.lock().read_line(&mut line).with_context(|| format!("cannot read the {what} from standard input"))?;
        line
    };
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        return Err(UsageError(format!("no {what} on standard input (pipe it in: `… | switchboard …`)")).into());
    }
    Ok(secrecy::SecretString::from(trimmed.to_owned()))
}

/// What commands that talk to Meta need: the store, the vault and the Graph client, without an engine.
struct Tools {
    onboarding: crate::onboarding::Onboarding,
}

impl Tools {
    async fn open(settings: &Settings) -> anyhow::Result<Self> {
        settings.require_for_serve()?;
        let store = startup::open_store(settings).await?;
        let keys = std::sync::Arc::new(startup::open_vault(settings, &store).await?);
        let graph = std::sync::Arc::new(startup::graph_client(settings)?);
        Ok(Self { onboarding: crate::onboarding::Onboarding::new(settings, store, keys, graph, None) })
    }
}
