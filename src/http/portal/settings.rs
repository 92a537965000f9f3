//! A client's settings in the portal: how long a person's answer silences the bot (the client's users and
//! operators), and, for operators only, which bot answers (the client's rules, or its own bot over the relay,
//! with a URL and a secret entered once and never shown again) and how fast its Pages may send. Every change
//! is audited and reaches the client's running tenants, on whichever node, from their next message.

use std::time::Duration;

use secrecy::SecretString;

use super::access::{Page, Principal, Signed, signed_in};
use super::{Form, PortalState, views};
use crate::domain::ClientSlug;
use crate::http::PageError;
use crate::http::error::see_other;
use crate::store::{Client, ResponderSetting};

/// What the settings page shows.
pub struct SettingsView {
    pub client: Client,
    /// Operators see (and change) the responder and the rate too.
    pub operator: bool,
    pub relay: bool,
    pub relay_url: Option<String>,
    pub rate: Option<u32>,
    pub default_rate: u32,
    pub pause: Option<u32>,
    pub default_pause: Duration,
    /// What was wrong with the last change (the page is then a 422).
    pub problem: Option<String>,
    pub saved: bool,
}

/// `GET /portal/clients/{slug}/settings`.
pub(super) async fn page(slug: &str, q: &Form, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let (client, operator) = allowed(&g, slug, s).await?;
    let saved = q.get("notice").map(String::as_str) == Some("saved");
    Ok(views::settings(&g.session.csrf_token, &view(client, operator, None, saved, s).await?))
}

/// `POST /portal/clients/{slug}/settings`: `what` names the setting changed (`pause`, `rate` or `responder`).
pub(super) async fn post(slug: &str, form: &Form, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(form)?;
    let (client, operator) = allowed(&g, slug, s).await?;
    let field = |name: &str| form.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
    let what = form.get("what").map(String::as_str).unwrap_or_default();
    if matches!(what, "rate" | "responder") && !operator {
        return Err(PageError::Forbidden("Only an operator changes a client's bot and send rate."));
    }
    let who = g.actor();
    match what {
        "pause" => match crate::config::client_human_pause(&field("pause")) {
            Ok(secs) => s.clients.set_human_pause(who, client.id, secs).await?,
            Err(problem) => return refused(&g, client, operator, problem, s).await,
        },
        "rate" => match crate::config::client_send_rate(&field("rate")) {
            Ok(rate) => s.clients.set_rate(who, client.id, rate).await?,
            Err(problem) => return refused(&g, client, operator, problem, s).await,
        },
        "responder" => match responder(&client, form, s).await? {
            Ok(responder) => s.clients.set_responder(who, client.id, &responder).await?,
            Err(problem) => return refused(&g, client, operator, problem, s).await,
        },
        _ => return Err(PageError::BadRequest("The form names no setting to change.".to_owned())),
    }
    Ok(see_other(&format!("/portal/clients/{}/settings?notice=saved", client.slug)))
}

/// The responder the form asks for, or what is wrong with it in plain words. The relay's secret is sealed at
/// once and never shown again; switching to rules keeps the client's stored rules (and the relay's settings).
async fn responder(
    client: &Client,
    form: &Form,
    s: &PortalState,
) -> Result<Result<ResponderSetting, String>, PageError> {
    match form.get("kind").map(String::as_str) {
        Some("rules") => {
            let rules_json = s.store.client_rules_json(client.id).await?.unwrap_or_else(|| "{}".to_owned());
            Ok(Ok(ResponderSetting::Rules { rules_json }))
        }
        Some("relay") => {
            let url = form.get("url").map(|u| u.trim()).unwrap_or_default();
            let url = match crate::engine::relay::check_url(url, s.relay_allow_private) {
                Ok(url) => url,
                Err(problem) => return Ok(Err(format!("The relay URL {problem}."))),
            };
            let secret = SecretString::from(form.get("secret").cloned().unwrap_or_default());
            if let Err(problem) = crate::engine::relay::check_secret(&secret) {
                let mut chars = problem.chars();
                let sentence: String = chars.next().into_iter().flat_map(char::to_uppercase).chain(chars).collect();
                return Ok(Err(format!("{sentence}.")));
            }
            let sealed = s
                .onboarding
                .keys()
                .seal_relay_secret(client.id, &secret)
                .map_err(|e| PageError::Internal(e.to_string()))?;
            Ok(Ok(ResponderSetting::Relay { url: url.to_string(), secret: sealed }))
        }
        _ => Ok(Err("Choose the client's rules or its own bot (relay).".to_owned())),
    }
}

/// The settings page again, with the problem, as a 422; nothing was stored.
async fn refused(g: &Signed, client: Client, operator: bool, problem: String, s: &PortalState) -> Page {
    Ok(views::settings(&g.session.csrf_token, &view(client, operator, Some(problem), false, s).await?))
}

/// The client named by `slug`, if this user may see its settings: operators any, a client user its own (any
/// other is a 404, as if it did not exist).
async fn allowed(g: &Signed, slug: &str, s: &PortalState) -> Result<(Client, bool), PageError> {
    let not_found = || PageError::NotFound("No such client.");
    let slug = ClientSlug::parse(slug).map_err(|_| not_found())?;
    let client = s.store.client_by_slug(&slug).await?.ok_or_else(not_found)?;
    match g.principal()? {
        Principal::Operator => Ok((client, true)),
        Principal::Client(id) if id == client.id => Ok((client, false)),
        Principal::Client(_) => Err(not_found()),
    }
}

async fn view(
    client: Client,
    operator: bool,
    problem: Option<String>,
    saved: bool,
    s: &PortalState,
) -> Result<SettingsView, PageError> {
    let stored = s.store.client_settings(client.id).await?;
    let (relay, relay_url) = match stored.as_ref().map(|c| &c.responder) {
        Some(ResponderSetting::Relay { url, .. }) => (true, Some(url.clone())),
        _ => (false, None),
    };
    Ok(SettingsView {
        client,
        operator,
        relay,
        relay_url,
        rate: stored.as_ref().and_then(|c| c.send_rate_per_second),
        default_rate: s.send_rate,
        pause: stored.as_ref().and_then(|c| c.human_pause_secs),
        default_pause: s.human_pause,
        problem,
        saved,
    })
}
