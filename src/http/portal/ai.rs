//! "Your bot" → AI answers: what a client whose Pages answer with a language model sees. Its knowledge, this
//! month's tokens against the budget its operator set (in plain words when it is used up: the rules answer
//! until the month ends), and "Try it", which asks the model for real and says that it counts.

use chrono::{Datelike as _, NaiveDate};
use maud::{Markup, html};
use tokio::time::Instant;

use super::PortalState;
use super::access::{Page, Signed, signed_in};
use crate::adapters::ai::{Caller, NoAnswer, this_month};
use crate::domain::ClientId;
use crate::http::PageError;
use crate::store::{AiMonth, AiSetting, ResponderSetting};

/// The longest message "Try it" sends, in characters.
const MAX_TRY_CHARS: usize = 2000;

/// The AI answers part of the bot page, when the client's responder is `ai`.
pub struct AiPart {
    pub setting: AiSetting,
    pub month: AiMonth,
    pub budget: u64,
    /// No model server is configured: the rules answer every message.
    pub unconfigured: bool,
    pub tried: Option<TriedAi>,
    /// The links setting was just saved.
    pub links_saved: bool,
}

/// "Try it" with the model: the message, and the answer or why there was none.
pub struct TriedAi {
    pub message: String,
    pub outcome: Result<(String, bool, u64), String>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct TryForm {
    csrf: String,
    message: String,
}

/// The links setting: `known_links_only` is present (`on`) when the box is ticked.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct LinksForm {
    csrf: String,
    known_links_only: Option<String>,
}

/// The client chooses whether answers keep only the links its knowledge contains.
pub(super) async fn set_links(signed: Option<Signed>, form: &LinksForm, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?;
    let client_id = super::bot::client_of(&g)?;
    match s.clients.set_ai_known_links_only(g.actor(), client_id, form.known_links_only.is_some()).await {
        Ok(()) => Ok(crate::http::error::see_other("/portal/bot?notice=links#ai")),
        Err(crate::store::StoreError::Conflict(m)) => Err(PageError::Conflict(m)),
        Err(e) => Err(e.into()),
    }
}

/// The client's AI answers part, if its responder is `ai`.
pub(super) async fn part(s: &PortalState, client_id: ClientId) -> Result<Option<AiPart>, PageError> {
    let Some(ResponderSetting::Ai(setting)) = s.store.client_settings(client_id).await?.map(|c| c.responder) else {
        return Ok(None);
    };
    let month = s.store.ai_month(client_id, &this_month()).await?;
    let budget = s.ai.as_ref().map_or(0, |ai| ai.budget(&setting));
    Ok(Some(AiPart { setting, month, budget, unconfigured: s.ai.is_none(), tried: None, links_saved: false }))
}

/// "Try it": one real model call with the client's knowledge, counted against its month.
pub(super) async fn try_it(signed: Option<Signed>, form: &TryForm, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?;
    let client_id = super::bot::client_of(&g)?;
    let message = form.message.trim().to_owned();
    if message.is_empty() || message.chars().count() > MAX_TRY_CHARS {
        return Err(PageError::BadRequest(format!(
            "Type a message of 1 to {MAX_TRY_CHARS} characters to try the AI answers."
        )));
    }
    let Some(mut part) = part(s, client_id).await? else {
        return Err(PageError::Conflict("Your Pages do not answer with AI: there is nothing to try here.".to_owned()));
    };
    let Some(ai) = s.ai.as_ref() else {
        return Err(PageError::Conflict("No model server is configured; ask your operator.".to_owned()));
    };
    let client = s.store.client_by_id(client_id).await?.ok_or(PageError::NotFound("client"))?;
    let caller = Caller { client_id, client_slug: client.slug.as_str().into(), page: "portal".into(), since: None };
    let deadline = Instant::now() + ai.settings.timeout;
    // Its own task: the call settles its reservation even if the browser gives up on the page.
    let (ai, setting, asked) = (ai.clone(), part.setting.clone(), message.clone());
    let call = tokio::spawn(async move { ai.answer(&caller, &setting, &[], &asked, None, deadline).await });
    let outcome = match call.await.map_err(|_| NoAnswer::Storage) {
        Ok(Ok(answer)) => Ok((answer.text, answer.hand_over, answer.tokens)),
        Ok(Err(NoAnswer::Budget)) => Err("This month's AI budget is used up, so no call was made.".to_owned()),
        Ok(Err(why)) | Err(why) => Err(format!("The model did not answer: {why}.")),
    };
    part.month = s.store.ai_month(client_id, &this_month()).await?;
    part.tried = Some(TriedAi { message, outcome });
    super::bot::page_with_ai(&g, s, client_id, part).await
}

/// The first day of next month (UTC), when a used-up budget starts again.
fn next_month() -> String {
    let today = crate::clock::now().date_naive();
    let (y, m) = if today.month() == 12 { (today.year() + 1, 1) } else { (today.year(), today.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).map_or_else(String::new, |d| d.format("%-d %B %Y").to_string())
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The part as HTML: status, budget, knowledge and "Try it".
pub(super) fn render(csrf: &str, part: &AiPart) -> Markup {
    let used = part.month.used_tokens + part.month.reserved_tokens;
    let used_up = part.budget > 0 && used >= part.budget || part.budget == 0;
    let pct = if part.budget == 0 { 100.0 } else { (used as f64 * 100.0 / part.budget as f64).min(100.0) };
    html! {
        section class="card" id="ai" {
            h2 { "AI answers" }
            @if part.unconfigured {
                p class="banner err" id="ai-unconfigured" { "AI answers are chosen, but no model server is configured: your rules answer every message. Ask your operator." }
            } @else {
                p { "A language model answers your customers' messages from the knowledge below. When it cannot (no answer in time, the model failing, or the month's budget used up), your rules below answer instead. Asking for a person always goes to your inbox." }
            }
            p id="ai-budget" {
                "This month (UTC): " strong { (thousands(used)) } " of " (thousands(part.budget)) " tokens used ("
                (format!("{pct:.0}")) " %), " (part.month.calls) @if part.month.calls == 1 { " model call." } @else { " model calls." }
            }
            meter min="0" max=(part.budget.max(1)) value=(used.min(part.budget)) { (format!("{pct:.0} %")) }
            @if used_up {
                p class="banner warn" id="ai-used-up" {
                    "This month's AI budget is used up: your rules answer your customers until " (next_month()) " (UTC). Your operator can raise the budget."
                }
            }
            h3 { "Knowledge the model answers from" }
            pre id="ai-knowledge" class="knowledge" { (part.setting.knowledge) }
            form method="post" action="/portal/bot/ai/links" {
                input type="hidden" name="csrf" value=(csrf);
                p { label { input type="checkbox" name="known_links_only" id="ai-links" checked[part.setting.known_links_only];
                    " Remove links from answers unless the knowledge above contains them" } }
                button type="submit" id="ai-links-save" { "Save" }
            }
            @if part.links_saved { p class="banner ok" id="ai-links-saved" { "Saved. Answers from the next message on follow it." } }
            h3 { "Try it" }
            form method="post" action="/portal/bot/ai" {
                input type="hidden" name="csrf" value=(csrf);
                p { label { "A customer's message" br; input type="text" name="message" class="wide" maxlength=(MAX_TRY_CHARS)
                    value=(part.tried.as_ref().map(|t| t.message.as_str()).unwrap_or_default()); } }
                p class="hint" { "This asks the model for real: it counts against this month's budget." }
                button type="submit" id="ai-try" { "Try it with AI" }
            }
            @if let Some(t) = &part.tried {
                @match &t.outcome {
                    Ok((text, hand_over, tokens)) => {
                        p class="banner ok" id="ai-tried" { "The model answered: " q { (text) } }
                        @if *hand_over { p id="ai-hand-over" { "The model asked for a person: the conversation would go to your inbox." } }
                        p id="ai-counted" { "This counted " (thousands(*tokens)) " tokens against this month's budget." }
                    }
                    Err(why) => {
                        p class="banner warn" id="ai-tried" { (why) " Your customers would get your rules' answer." }
                    }
                }
            }
        }
    }
}
