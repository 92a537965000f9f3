//! `user add`: portal users. The password is read from standard input (never from argv, where it would
//! land in shell history and `ps`).

use super::UsageError;
use crate::config::Settings;
use crate::domain::{Actor, AuditAction, ClientSlug, Email, Role};
use crate::secrets::password;
use crate::startup;
use crate::store::{AuditEntry, NewUser, StoreError};

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a portal user; the password is read from standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: Role,
        /// The client a `client` user belongs to (its slug).
        #[arg(long = "client", value_name = "SLUG")]
        client: Option<String>,
    },
}

pub async fn run(settings: &Settings, cmd: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Add { email, role, client } = cmd;
    let email = Email::parse(&email).map_err(|e| UsageError(format!("--email: {e}")))?;
    let slug = match (role, client) {
        (Role::Client, Some(raw)) => Some(ClientSlug::parse(&raw).map_err(|e| UsageError(format!("--client: {e}")))?),
        (Role::Client, None) => return Err(UsageError("a client user needs --client SLUG".to_owned()).into()),
        (Role::Operator, Some(_)) => {
            return Err(UsageError("an operator sees every client; drop --client".to_owned()).into());
        }
        (Role::Operator, None) => None,
    };
    let password = super::read_secret_line("password")?;
    password::check_policy(&password).map_err(|e| UsageError(e.to_string()))?;

    let store = startup::open_store(settings).await?;
    let client = match &slug {
        Some(slug) => {
            Some(store.client_by_slug(slug).await?.ok_or_else(|| UsageError(format!("no client with slug {slug}")))?)
        }
        None => None,
    };
    let password_hash = password::hash(password).await?;
    let user = store
        // The operator typed it on stdin for the user, who may keep it: no forced change.
        .create_user(&NewUser {
            email,
            password_hash,
            role,
            client_id: client.as_ref().map(|c| c.id),
            must_change_password: false,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(msg) => anyhow::Error::new(UsageError(msg)),
            other => other.into(),
        })?;
    store
        .append_audit(&AuditEntry {
            actor: Actor::Cli,
            action: AuditAction::UserCreated,
            client_id: user.client_id,
            page_id: None,
            detail: format!("{} ({})", user.email, user.role),
        })
        .await?;
    match client {
        Some(c) => println!("created {} user {} for client {}", user.role, user.email, c.slug),
        None => println!("created {} user {}", user.role, user.email),
    }
    Ok(())
}
