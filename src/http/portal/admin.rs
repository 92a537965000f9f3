//! What operators do in the portal: add clients, make onboarding links, invite users.

use std::time::Duration;

use maud::html;
use secrecy::SecretString;

use super::access::{Page, Signed, signed_in};
use super::chrome::show_once;
use super::{Button, PortalState};
use crate::domain::{AuditAction, ClientName, ClientSlug, Email, Role};
use crate::http::PageError;
use crate::http::error::see_other;
use crate::secrets::password;
use crate::secrets::tokens::random_token;
use crate::store::{Client, NewUser, StoreError};

/// Adding a client: its name.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct NewClient {
    csrf: String,
    name: String,
}

/// Inviting a user: the e-mail, the role, and (for a client user) the client's slug.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Invitation {
    csrf: String,
    email: String,
    role: String,
    client: String,
}

pub(super) async fn add_client(signed: Option<Signed>, form: &NewClient, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?.operator()?;
    let invalid = || bad("A client needs a name of 1 to 200 characters with letters or digits.");
    let name = ClientName::parse(&form.name).map_err(|_| invalid())?;
    let slug = ClientSlug::from_name(name.as_str()).map_err(|_| invalid())?;
    match s.clients.create(g.actor(), &name, &slug).await {
        Ok(_) => Ok(see_other("/portal?notice=client-added")),
        Err(StoreError::Conflict(m)) => Err(PageError::Conflict(m)),
        Err(e) => Err(e.into()),
    }
}

/// An onboarding link for a client, valid for a day, shown once.
pub(super) async fn onboard_link(slug: &str, signed: Option<Signed>, form: &Button, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?.operator()?;
    let c = client(slug, s).await?.ok_or(PageError::NotFound("No such client."))?;
    let link = s.onboarding.send_onboard_link(g.actor(), &c, Duration::from_secs(86_400)).await;
    Ok(show_once(
        "Onboarding link",
        html! {
            p { "Send this link to " (c.name) ". It works for 24 hours." }
            p { input type="text" class="wide" readonly value=(link) id="link"; }
        },
    ))
}

async fn client(slug: &str, s: &PortalState) -> Result<Option<Client>, StoreError> {
    match ClientSlug::parse(slug) {
        Ok(slug) => s.store.client_by_slug(&slug).await,
        Err(_) => Ok(None),
    }
}

/// Invites a user: the role must be chosen (there is no default), a client user names its client and an
/// operator names none. The one-time password is shown once, and must be replaced at the first sign-in.
pub(super) async fn invite(signed: Option<Signed>, form: &Invitation, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?.operator()?;
    let email = Email::parse(&form.email).map_err(|e| PageError::BadRequest(e.to_string()))?;
    let client_slug = Some(form.client.as_str()).filter(|c| !c.is_empty());
    let role = match (Some(form.role.as_str()).filter(|r| !r.is_empty()), client_slug) {
        (Some("client"), Some(_)) => Role::Client,
        (Some("operator"), None) => Role::Operator,
        (Some("client"), None) => return Err(bad("A client user needs a client: choose which one.")),
        (Some("operator"), Some(_)) => return Err(bad("An operator sees every client: leave the client empty.")),
        _ => return Err(bad("Choose whether the new user is an operator (every client) or a client user.")),
    };
    let client = match client_slug {
        None => None,
        Some(slug) => Some(client(slug, s).await?.ok_or_else(|| bad("No such client."))?),
    };
    let one_time = random_token()[..20].to_owned();
    let hash =
        password::hash(SecretString::from(one_time.clone())).await.map_err(|e| PageError::Internal(e.to_string()))?;
    let new = NewUser {
        email,
        password_hash: hash,
        role,
        client_id: client.as_ref().map(|c| c.id),
        must_change_password: true,
    };
    match s.store.create_user(&new).await {
        Ok(u) => {
            g.audit(s, AuditAction::UserCreated, u.client_id, format!("{} ({})", u.email, u.role)).await;
            Ok(show_once(
                "User invited",
                html! {
                    p { "Give " strong { (u.email) } " this one-time password; it is not shown again. They choose their own at their first sign-in:" }
                    p { code id="password" { (one_time) } }
                },
            ))
        }
        Err(StoreError::Conflict(m)) => Err(PageError::Conflict(m)),
        Err(e) => Err(e.into()),
    }
}

fn bad(problem: &str) -> PageError {
    PageError::BadRequest(problem.to_owned())
}
