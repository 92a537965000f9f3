//! A client's settings in the portal: how long a person's answer silences the bot (the client's users and
//! operators), and, for operators only, which bot answers (the client's rules, or its own bot over the relay,
//! with a URL and a secret entered once and never shown again) and how fast its Pages may send. Every change
//! is audited and reaches the client's running tenants, on whichever node, from their next message.

use std::time::Duration;

use secrecy::SecretString;

use maud::html;
use warp::http::StatusCode;
use warp::reply::Response;

use super::access::{Page, Principal, Signed, signed_in};
use super::{Notice, PortalState};
use crate::domain::ClientSlug;
use crate::http::PageError;
use crate::http::error::see_other;
use crate::http::html;
use crate::store::{Client, ResponderSetting};

/// What the settings page shows.
pub struct SettingsView {
    pub client: Client,
    /// Operators see (and change) the responder and the rate too.
    pub operator: bool,
    pub relay: bool,
    /// The client's Pages answer with AI (chosen with the CLI, which takes the knowledge file).
    pub ai: bool,
    pub relay_url: Option<String>,
    pub rate: Option<u32>,
    pub default_rate: u32,
    pub pause: Option<u32>,
    pub default_pause: Duration,
    /// What was wrong with the last change (the page is then a 422).
    pub problem: Option<String>,
    pub saved: bool,
}

/// The settings forms: `what` names the setting changed (`pause`, `rate` or `responder`), and its fields.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct SettingsForm {
    csrf: String,
    what: String,
    pause: String,
    rate: String,
    /// The responder: `rules` or `relay` (with its URL and secret).
    kind: String,
    url: String,
    secret: Option<SecretString>,
}

/// `GET /portal/clients/{slug}/settings`.
pub(super) async fn page(slug: &str, q: &Notice, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let (client, operator) = allowed(&g, slug, s).await?;
    let saved = q.notice.as_deref() == Some("saved");
    Ok(settings_page(&g.session.csrf_token, &view(client, operator, None, saved, s).await?))
}

/// `POST /portal/clients/{slug}/settings`: `what` names the setting changed (`pause`, `rate` or `responder`).
pub(super) async fn post(slug: &str, form: SettingsForm, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?;
    let (client, operator) = allowed(&g, slug, s).await?;
    let what = form.what.as_str();
    if matches!(what, "rate" | "responder") && !operator {
        return Err(PageError::Forbidden("Only an operator changes a client's bot and send rate."));
    }
    let who = g.actor();
    match what {
        "pause" => match crate::config::client_human_pause(form.pause.trim()) {
            Ok(secs) => s.clients.set_human_pause(who, client.id, secs).await?,
            Err(problem) => return refused(&g, client, operator, problem, s).await,
        },
        "rate" => match crate::config::client_send_rate(form.rate.trim()) {
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
    form: SettingsForm,
    s: &PortalState,
) -> Result<Result<ResponderSetting, String>, PageError> {
    match form.kind.as_str() {
        "rules" => {
            let rules_json = s.store.client_rules_json(client.id).await?.unwrap_or_else(|| "{}".to_owned());
            Ok(Ok(ResponderSetting::Rules { rules_json }))
        }
        "relay" => {
            let url = form.url.trim();
            let url = match crate::adapters::relay::check_url(url, s.relay_allow_private) {
                Ok(url) => url,
                Err(problem) => return Ok(Err(format!("The relay URL {problem}."))),
            };
            let secret = form.secret.unwrap_or_else(|| SecretString::from(String::new()));
            if let Err(problem) = crate::adapters::relay::check_secret(&secret) {
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
    Ok(settings_page(&g.session.csrf_token, &view(client, operator, Some(problem), false, s).await?))
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
        ai: matches!(stored.as_ref().map(|c| &c.responder), Some(ResponderSetting::Ai(_))),
        relay_url,
        rate: stored.as_ref().and_then(|c| c.send_rate_per_second),
        default_rate: s.send_rate,
        pause: stored.as_ref().and_then(|c| c.human_pause_secs),
        default_pause: s.human_pause,
        problem,
        saved,
    })
}

fn pause_words(secs: u32) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs.into())).to_string()
}

/// A client's settings: the pause after a person answers; for operators also the bot and the send rate.
fn settings_page(csrf: &str, v: &SettingsView) -> Response {
    let c = &v.client;
    let action = format!("/portal/clients/{}/settings", c.slug);
    let default_pause = pause_words(u32::try_from(v.default_pause.as_secs()).unwrap_or(u32::MAX));
    let status = if v.problem.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    html::page(
        status,
        "Settings",
        html! {
            h1 { "Settings of " (c.name) }
            @if let Some(p) = &v.problem { p class="banner err" id="problem" { (p) " Nothing was changed." } }
            @if v.saved { p class="banner ok" id="saved" { "Saved. Your Pages use it from their next message." } }
            section class="card" id="pause" {
                h2 class="tight" { "When a person answers" }
                p { "After someone at your business answers a customer in the Page Inbox or the Instagram Inbox, the bot stays silent in that conversation for "
                    strong { @if let Some(p) = v.pause { (pause_words(p)) } @else { (default_pause) " (the default)" } } "." }
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="what" value="pause";
                    label { "Stay silent for (like 30m, 2h or 1d; from 1m to 7d; or default) " br;
                        input type="text" name="pause" required value=(v.pause.map(pause_words).unwrap_or_else(|| "default".to_owned())); }
                    " " button type="submit" id="save-pause" { "Save" }
                }
            }
            @if v.operator {
                section class="card" id="responder" {
                    h2 class="tight" { "Which bot answers" }
                    p { "Now: " strong { @if v.relay { "the client's own bot at " (v.relay_url.clone().unwrap_or_default()) } @else if v.ai { "AI answers from the client's knowledge, with its rules as the fallback (`switchboard client set-responder SLUG ai` sets the knowledge and budget)" } @else { "the client's rules (edited by the client in the portal)" } } "." }
                    form method="post" action=(action) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="what" value="responder";
                        p { label { input type="radio" name="kind" value="rules" checked[!v.relay]; " The client's rules" } }
                        p { label { input type="radio" name="kind" value="relay" checked[v.relay]; " The client's own bot (relay)" } }
                        p { label { "Relay URL (https)" br; input type="url" class="wide" name="url" value=(v.relay_url.clone().unwrap_or_default()); } }
                        p { label { "Relay secret (16 characters or more; stored sealed and never shown again: type it each time you set the relay)" br;
                            input type="password" class="wide" name="secret" autocomplete="new-password"; } }
                        button type="submit" id="save-responder" { "Save" }
                    }
                }
                section class="card" id="rate" {
                    h2 class="tight" { "Send rate" }
                    p { "Each Page sends at most " strong { (v.rate.unwrap_or(v.default_rate)) } " calls per second"
                        @if v.rate.is_none() { " (the default)" } "." }
                    form method="post" action=(action) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="what" value="rate";
                        label { "Calls per second (1 to 1000, or default) " br;
                            input type="text" name="rate" required value=(v.rate.map(|r| r.to_string()).unwrap_or_else(|| "default".to_owned())); }
                        " " button type="submit" id="save-rate" { "Save" }
                    }
                }
            }
            p { a href="/portal" { "Back" } }
        },
    )
}
