//! A client edits its bot in the portal: keyword rules (words or phrases → reply), answers to postback and
//! quick-reply payloads, and the fallback. One plain form (no JavaScript): "Try it" shows which rule answers a
//! message and what it says, with the rules as typed (saved or not); "Save" checks them, stores them as the
//! next version (refused if someone else saved meanwhile), audits who did it, and every Page of the client
//! answers with them from its next message.

use std::collections::BTreeMap;

use switchboard_actors::bot::split::{INSTAGRAM_MAX_BYTES, MESSENGER_MAX_CHARS};
use switchboard_actors::{Answered, KeywordRule, Rules, RulesResponder};

use maud::html;
use warp::http::StatusCode;
use warp::reply::Response;

use super::access::{Page, Principal, Signed, signed_in};
use super::{Notice, PortalState};
use crate::domain::ClientId;
use crate::http::PageError;
use crate::http::error::see_other;
use crate::http::html;
use crate::store::{ResponderSetting, StoreError};

/// Rows the form offers beyond the rules already there.
const BLANK_ROWS: usize = 2;

/// What the editor shows: the rules as typed, the version they are based on, problems, and a tried message.
pub struct Editor {
    pub rules: Rules,
    pub version: i64,
    pub rows: usize,
    pub postback_rows: usize,
    pub problems: Vec<String>,
    pub tried: Option<Tried>,
    pub saved: bool,
    /// The client's bot is its own (relay): these rules answer only when it is switched back to rules.
    pub relay: bool,
    /// The client's Pages answer with AI: its part, above the rules (which answer when the model cannot).
    pub ai: Option<super::ai::AiPart>,
}

/// "Try it": the message, which part of the rules answered, and the reply.
pub struct Tried {
    pub message: String,
    pub answered: String,
    pub reply: String,
}

/// The editor's form: the version the rules were based on, "Try it" or "Save", the message to try, the
/// fallback, and the rows (`words_N`/`reply_N` for rules, `payload_N`/`payload_reply_N` for button answers),
/// however many the editor drew.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct RulesForm {
    csrf: String,
    version: String,
    action: String,
    #[serde(rename = "try")]
    message: String,
    fallback: String,
    #[serde(flatten)]
    rows: std::collections::HashMap<String, String>,
}

pub(super) async fn page(signed: Option<Signed>, q: &Notice, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let client_id = client_of(&g)?;
    let mut ai = super::ai::part(s, client_id).await?;
    if let Some(part) = ai.as_mut() {
        part.links_saved = q.notice.as_deref() == Some("links");
    }
    shown(&g, s, client_id, q.notice.as_deref() == Some("saved"), ai).await
}

/// The bot page as stored, with the AI answers part as given (after "Try it").
pub(super) async fn page_with_ai(g: &Signed, s: &PortalState, client_id: ClientId, ai: super::ai::AiPart) -> Page {
    shown(g, s, client_id, false, Some(ai)).await
}

async fn shown(g: &Signed, s: &PortalState, client_id: ClientId, saved: bool, ai: Option<super::ai::AiPart>) -> Page {
    let (version, relay) = match s.store.client_settings(client_id).await? {
        Some(c) => (c.rules_version, matches!(c.responder, ResponderSetting::Relay { .. })),
        None => (0, false),
    };
    let rules = stored_rules(s, client_id).await?;
    let mut e = editor(rules, version, Vec::new(), None, saved, relay);
    e.ai = ai;
    Ok(editor_page(&g.session.csrf_token, &e))
}

pub(super) async fn post(signed: Option<Signed>, form: &RulesForm, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?;
    let client_id = client_of(&g)?;
    let version =
        form.version.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
            PageError::BadRequest("The form lacks the version of the rules it was based on.".to_owned())
        })?;
    let relay =
        matches!(s.store.client_settings(client_id).await?.map(|c| c.responder), Some(ResponderSetting::Relay { .. }));
    let pages = s.clients.pages(client_id).await?;
    let instagram = pages.iter().any(|i| i.instagram_account_id.is_some());
    let (mut rules, mut problems) = read(form, instagram);
    // What the form does not edit (asking for a person) stays as stored.
    rules.person = stored_rules(s, client_id).await?.person;
    let csrf = &g.session.csrf_token;
    if form.action == "try" {
        let message = form.message.trim().to_owned();
        if message.is_empty() {
            problems.push("Type a message to try.".to_owned());
            return Ok(editor_page(csrf, &editor(rules, version, problems, None, false, relay)));
        }
        let fallback = s.fallback_reply.clone();
        let (answered, reply) = RulesResponder::new(rules.clone(), fallback).try_text(&message);
        let answered = match answered {
            Answered::Rule(at) => format!("rule {}", at + 1),
            Answered::Person => "asking for a person".to_owned(),
            Answered::Fallback => "the fallback (no rule matched)".to_owned(),
        };
        let tried = Tried { message, answered, reply };
        return Ok(editor_page(csrf, &editor(rules, version, problems, Some(tried), false, relay)));
    }
    if !problems.is_empty() {
        return Ok(editor_page(csrf, &editor(rules, version, problems, None, false, relay)));
    }
    let json = serde_json::to_string(&rules).map_err(|e| PageError::Internal(e.to_string()))?;
    match s.clients.save_rules(g.actor(), client_id, &json, version).await {
        Ok(_) => {}
        Err(StoreError::Conflict(m)) => return Err(PageError::Conflict(m)),
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/portal/bot?notice=saved"))
}

/// The rules the client keeps, also while its relay answers. Rules that do not parse are an error, never an
/// empty editor (a save would erase them).
async fn stored_rules(s: &PortalState, client_id: ClientId) -> Result<Rules, PageError> {
    match s.store.client_rules_json(client_id).await? {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| PageError::Internal(format!("client {client_id}: stored rules are not valid: {e}"))),
        None => Ok(Rules::default()),
    }
}

/// The row numbers the form carries fields of (`words_0`, `reply_0`, …), in order: every row, however many the
/// editor drew (the form's size bounds them).
fn rows(form: &RulesForm, prefixes: [&str; 2]) -> std::collections::BTreeSet<usize> {
    form.rows.keys().filter_map(|k| prefixes.iter().find_map(|p| k.strip_prefix(p)?.parse::<usize>().ok())).collect()
}

pub(super) fn client_of(g: &Signed) -> Result<ClientId, PageError> {
    match g.principal()? {
        Principal::Client(client_id) => Ok(client_id),
        Principal::Operator => Err(PageError::Forbidden("A client's bot is edited by the client's users.")),
    }
}

fn editor(rules: Rules, version: i64, problems: Vec<String>, tried: Option<Tried>, saved: bool, relay: bool) -> Editor {
    let rows = rules.keywords.len() + BLANK_ROWS;
    let postback_rows = rules.postbacks.len() + BLANK_ROWS;
    Editor { rules, version, rows, postback_rows, problems, tried, saved, relay, ai: None }
}

/// The rules a form holds, and what is wrong with them, in plain words.
fn read(form: &RulesForm, instagram: bool) -> (Rules, Vec<String>) {
    let field = |name: String| form.rows.get(&name).map(|v| v.trim().to_owned()).unwrap_or_default();
    let mut problems = Vec::new();
    let too_long = |what: &str, reply: &str| {
        if reply.chars().count() > MESSENGER_MAX_CHARS {
            Some(format!(
                "{what}: the reply is {} characters; Messenger takes at most {MESSENGER_MAX_CHARS}.",
                reply.chars().count()
            ))
        } else if instagram && reply.len() > INSTAGRAM_MAX_BYTES {
            Some(format!("{what}: the reply is {} bytes; Instagram takes at most {INSTAGRAM_MAX_BYTES}.", reply.len()))
        } else {
            None
        }
    };
    let mut rules = Rules::default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for i in rows(form, ["words_", "reply_"]) {
        let (words, reply) = (field(format!("words_{i}")), field(format!("reply_{i}")));
        if words.is_empty() && reply.is_empty() {
            continue;
        }
        let n = rules.keywords.len() + 1;
        let words: Vec<String> = words.split(',').map(|w| w.trim().to_owned()).filter(|w| !w.is_empty()).collect();
        if words.is_empty() {
            problems.push(format!("Rule {n} has a reply but no word or phrase to match."));
        }
        if reply.is_empty() {
            problems.push(format!("Rule {n} has words but an empty reply."));
        }
        for word in &words {
            if let Some(first) = seen.insert(word.to_lowercase(), n).filter(|first| *first != n) {
                duplicates
                    .push(format!("\"{word}\" is in rule {first} and rule {n}: only the first would ever answer."));
            }
        }
        problems.extend(too_long(&format!("Rule {n}"), &reply));
        rules.keywords.push(KeywordRule { keywords: words, reply });
    }
    problems.extend(duplicates);
    for i in rows(form, ["payload_", "payload_reply_"]) {
        let (payload, reply) = (field(format!("payload_{i}")), field(format!("payload_reply_{i}")));
        if payload.is_empty() && reply.is_empty() {
            continue;
        }
        if payload.is_empty() || reply.is_empty() {
            problems
                .push(format!("Button answer {}: fill in both the payload and the reply.", rules.postbacks.len() + 1));
        }
        problems.extend(too_long(&format!("Button answer for {payload:?}"), &reply));
        if rules.postbacks.insert(payload.clone(), reply).is_some() {
            problems.push(format!("The payload {payload:?} is answered twice."));
        }
    }
    let fallback = form.fallback.trim().to_owned();
    problems.extend(too_long("The fallback", &fallback));
    rules.fallback = (!fallback.is_empty()).then_some(fallback);
    // What the form reader does not word itself, the one check every stored rule set passes.
    if problems.is_empty()
        && let Err(problem) = rules.validate()
    {
        problems.push(problem);
    }
    (rules, problems)
}

/// The bot editor: rules, button answers and the fallback as one form, "Try it" and "Save".
fn editor_page(csrf: &str, e: &Editor) -> Response {
    let status = if e.problems.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let rule = |i: usize| e.rules.keywords.get(i);
    let postbacks: Vec<(&String, &String)> = e.rules.postbacks.iter().collect();
    html::page(
        status,
        "Your bot",
        html! {
            h1 { "Your bot" }
            @if e.saved && e.ai.is_none() { p class="banner ok" id="saved" { "Saved. Your Pages answer with these rules from their next message." } }
            @if e.saved && e.ai.is_some() { p class="banner ok" id="saved" { "Saved. From their next message, your Pages use these rules whenever the model cannot answer." } }
            @if e.relay { p class="banner warn" { "Your own bot (relay) answers your Pages; these rules are kept for when you switch back." } }
            @if let Some(ai) = &e.ai { (super::ai::render(csrf, ai)) }
            @if e.ai.is_some() { p { "The rules below answer whenever the model cannot, and always answer buttons and quick replies." } }
            @if !e.problems.is_empty() {
                div class="banner err" id="problems" { p { "Nothing was saved:" } ul { @for p in &e.problems { li { (p) } } } }
            }
            form method="post" action="/portal/bot" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="version" value=(e.version);
                h2 { "Keyword rules" }
                p { "The first rule with a word or phrase found in the customer's message answers (capital letters do not matter). Separate words and phrases with commas." }
                @for i in 0..e.rows {
                    fieldset class="rule card" {
                        legend { "Rule " (i + 1) }
                        p { label { "Words or phrases" br; input type="text" name={"words_" (i)} maxlength="2000"
                            value=(rule(i).map(|r| r.keywords.join(", ")).unwrap_or_default()); } }
                        p { label { "Reply" br; textarea name={"reply_" (i)} rows="2" maxlength="4000" {
                            (rule(i).map(|r| r.reply.clone()).unwrap_or_default()) } } }
                    }
                }
                h2 { "Button and quick-reply answers" }
                @for i in 0..e.postback_rows {
                    fieldset class="postback card" {
                        legend { "Button answer " (i + 1) }
                        p { label { "Payload" br; input type="text" name={"payload_" (i)} maxlength="1000"
                            value=(postbacks.get(i).map(|(k, _)| k.as_str()).unwrap_or_default()); } }
                        p { label { "Reply" br; textarea name={"payload_reply_" (i)} rows="2" maxlength="4000" {
                            (postbacks.get(i).map(|(_, v)| v.as_str()).unwrap_or_default()) } } }
                    }
                }
                h2 { "Fallback" }
                p { label { "The reply when no rule matches" br; textarea name="fallback" rows="2" maxlength="4000" {
                    (e.rules.fallback.clone().unwrap_or_default()) } } }
                h2 { "Try it" }
                p { label { "A customer's message" br; input type="text" name="try" maxlength="2000"
                    value=(e.tried.as_ref().map(|t| t.message.as_str()).unwrap_or_default()); } }
                @if let Some(t) = &e.tried {
                    p class="banner ok" id="tried" { "Answered by " (t.answered) ": " q { (t.reply) } }
                }
                button type="submit" name="action" value="try" id="try" { "Try it" }
                " "
                button type="submit" name="action" value="save" id="save" { "Save" }
                " " a href="/portal" { "Back to your Pages" }
            }
        },
    )
}
