//! AI answers: a client's third responder. Each customer text is answered by one chat completion from the
//! client's knowledge and the conversation so far, within the client's monthly token budget; whenever the
//! model cannot answer (no budget left, an error, a timeout, an unusable answer) the client's rules answer,
//! within `ai.timeout_secs`, and the event's outcome says why.
//!
//! - [`Ai`] is the deployment's model server (one [`wire::ChatClient`]) and the budget ledger, shared by every
//!   tenant and by the portal's "Try it";
//! - [`AiResponder`] is one Page's responder: a bound on its calls in flight, and its client's rules as the
//!   fallback;
//! - `prompt` is what the model is told and what of its answer is sent; `wire` is the HTTP API.
//!
//! A call runs as its own task: the tenant's batch waits for it at most `ai.timeout_secs`, and the task still
//! settles its reservation with what the call used, even when the batch stopped waiting.

pub mod prompt;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use switchboard_actors::{BotAnswer, BotError, EventKind, InboundEvent, Responder, RulesResponder};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::prompt::{Exchange, chars_to_tokens};
use self::wire::{ChatClient, ModelError};
use crate::config::AiSettings;
use crate::domain::ClientId;
use crate::store::{AiSetting, Reservation, Store};

pub const CALLS: &str = "switchboard_ai_calls_total";
pub const TOKENS: &str = "switchboard_ai_tokens_total";
pub const FAILURES: &str = "switchboard_ai_failures_total";
pub const FALLBACKS: &str = "switchboard_ai_fallbacks_total";
pub const LATENCY: &str = "switchboard_ai_call_seconds";
pub const SETTLE_FAILURES: &str = "switchboard_ai_settle_failures_total";

/// Fallback reasons (a fixed set: the metric's label values).
pub const FALLBACK_REASONS: &[&str] = &["budget", "model_failed", "timeout", "storage"];

/// A configuration problem with the model server is logged at most this often.
static CONFIG_PROBLEM_LOGGED: crate::telemetry::Sometimes = crate::telemetry::Sometimes::every(Duration::from_secs(60));
static SETTLE_PROBLEM_LOGGED: crate::telemetry::Sometimes = crate::telemetry::Sometimes::every(Duration::from_secs(10));

/// A client's knowledge as given (a file, a form): UTF-8 text, not empty, at most `max_bytes`.
pub fn check_knowledge(bytes: Vec<u8>, max_bytes: usize) -> Result<String, String> {
    if bytes.len() > max_bytes {
        return Err(format!("is {} bytes; at most {max_bytes} are accepted (ai.max_knowledge_bytes)", bytes.len()));
    }
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    if text.trim().is_empty() {
        return Err("is empty: the model would have nothing to answer from".to_owned());
    }
    if text.contains('\0') {
        return Err("holds a NUL byte: give plain text or Markdown".to_owned());
    }
    Ok(text.replace("\r\n", "\n"))
}

/// The calendar month (UTC) a call counts in, as stored: `2026-12`.
pub fn this_month() -> String {
    crate::clock::now().format("%Y-%m").to_string()
}

/// Who a call is for: the client, and the label its metrics carry (a Page id, or `portal` for "Try it").
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: ClientId,
    pub client_slug: Arc<str>,
    pub page: Arc<str>,
    /// The conversation store is read only from here on: when this client connected the Page (a Page another
    /// client had before keeps that client's conversations out of this one's prompts).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// A model's answer, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub hand_over: bool,
    /// Tokens counted against the month.
    pub tokens: u64,
}

/// Why the model did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoAnswer {
    #[error("this month's AI budget is used up")]
    Budget,
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("cannot check the AI budget: storage is unavailable")]
    Storage,
}

impl NoAnswer {
    /// The fallback metric's reason.
    fn reason(&self) -> &'static str {
        match self {
            Self::Budget => "budget",
            Self::Model(ModelError::Timeout(_)) => "timeout",
            Self::Model(_) => "model_failed",
            Self::Storage => "storage",
        }
    }
}

/// The deployment's model server and budget ledger.
pub struct Ai {
    pub settings: AiSettings,
    chat: ChatClient,
    store: Store,
}

impl std::fmt::Debug for Ai {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ai").field("chat", &self.chat).finish_non_exhaustive()
    }
}

impl Ai {
    pub fn new(settings: AiSettings, store: Store) -> Self {
        let loopback = match settings.base_url.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if settings.base_url.scheme() == "http" && settings.api_key.is_some() && !loopback {
            tracing::warn!(base_url = %settings.base_url, "ai.base_url is plain http to another host: the API key travels in clear");
        }
        Self { chat: ChatClient::new(&settings), settings, store }
    }

    /// The budget of a client's month: its own, or the deployment's default.
    pub fn budget(&self, setting: &AiSetting) -> u64 {
        setting.monthly_tokens.unwrap_or(self.settings.default_monthly_tokens)
    }

    /// One answer to `question`, from `setting`'s knowledge and `history`, counted against the caller's month,
    /// by `deadline`. Reserves its estimate first (no call when the month has nothing left), and settles with
    /// the usage after.
    pub async fn answer(
        &self,
        caller: &Caller,
        setting: &AiSetting,
        history: &[Exchange],
        question: &str,
        end_user: Option<&str>,
        deadline: Instant,
    ) -> Result<Answer, NoAnswer> {
        if self.chat.cooling_down() {
            return Err(self.failed(caller, ModelError::CoolingDown));
        }
        if Instant::now() >= deadline {
            return Err(NoAnswer::Model(ModelError::Timeout(self.settings.timeout.as_secs())));
        }
        let messages = prompt::messages(&setting.knowledge, history, question);
        let estimate = prompt::estimate(&messages, self.chat.max_answer_tokens());
        let expires = crate::clock::now()
            + chrono::Duration::from_std(self.settings.timeout + Duration::from_secs(60)).unwrap_or_default();
        let reservation = self
            .store
            .ai_reserve(caller.client_id, &this_month(), self.budget(setting), estimate, expires)
            .await
            .map_err(|e| {
                tracing::warn!(client = %caller.client_slug, error = %e, "cannot reserve AI tokens; the rules answer");
                NoAnswer::Storage
            })?
            .ok_or(NoAnswer::Budget)?;
        let started = Instant::now();
        let result = self.chat.complete(&messages, end_user, deadline, self.settings.timeout).await;
        metrics::histogram!(LATENCY, "client" => caller.client_slug.to_string(), "page" => caller.page.to_string())
            .record(started.elapsed().as_secs_f64());
        let completion = match result {
            Ok(completion) => completion,
            Err(problem) => {
                let used = if problem.may_have_used_tokens() { reservation.tokens } else { 0 };
                self.settle(caller, &reservation, used).await;
                if used > 0 {
                    metrics::counter!(TOKENS, "client" => caller.client_slug.to_string(), "page" => caller.page.to_string(), "kind" => "estimated")
                        .increment(used);
                }
                return Err(self.failed(caller, problem));
            }
        };
        let (used, kind) = match completion.usage {
            Some(u) => (u.prompt + u.completion, "reported"),
            None => {
                (prompt::prompt_estimate(&messages) + chars_to_tokens(completion.content.chars().count()), "estimated")
            }
        };
        self.settle(caller, &reservation, used).await;
        let labels = [("client", caller.client_slug.to_string()), ("page", caller.page.to_string())];
        metrics::counter!(TOKENS, &[labels[0].clone(), labels[1].clone(), ("kind", kind.to_owned())]).increment(used);
        let cut = completion.finish_reason.as_deref() == Some("length");
        let Some(cleaned) = prompt::clean(&completion.content, cut, &setting.knowledge, setting.known_links_only)
        else {
            return Err(self.failed(caller, ModelError::Unusable("nothing sendable in the answer".to_owned())));
        };
        let outcome = if cleaned.hand_over { "hand_over" } else { "answered" };
        metrics::counter!(CALLS, &[labels[0].clone(), labels[1].clone(), ("outcome", outcome.to_owned())]).increment(1);
        Ok(Answer { text: cleaned.text, hand_over: cleaned.hand_over, tokens: used })
    }

    /// Counts a failed call (and logs an operator's problem, at most once a minute).
    fn failed(&self, caller: &Caller, problem: ModelError) -> NoAnswer {
        let (client, page) = (caller.client_slug.to_string(), caller.page.to_string());
        metrics::counter!(FAILURES, "client" => client.clone(), "page" => page.clone(), "kind" => problem.kind())
            .increment(1);
        if !matches!(problem, ModelError::CoolingDown) {
            metrics::counter!(CALLS, "client" => client, "page" => page, "outcome" => "failed").increment(1);
        }
        if problem.is_configuration() && CONFIG_PROBLEM_LOGGED.ready() {
            tracing::warn!(model = %self.settings.model, %problem, "the model server refuses AI answers; the rules answer until it is fixed");
        }
        NoAnswer::Model(problem)
    }

    /// Settles a reservation with what the call used; a write that keeps failing is logged and counted (the
    /// reservation then expires, and the month does not count the call).
    async fn settle(&self, caller: &Caller, reservation: &Reservation, used: u64) {
        for attempt in 0..3u32 {
            match self.store.ai_settle(caller.client_id, reservation, used, true).await {
                Ok(()) => return,
                Err(_) if attempt < 2 => tokio::time::sleep(Duration::from_millis(200 << attempt)).await,
                Err(e) => {
                    metrics::counter!(SETTLE_FAILURES, "client" => caller.client_slug.to_string()).increment(1);
                    if SETTLE_PROBLEM_LOGGED.ready() {
                        tracing::warn!(client = %caller.client_slug, error = %e, used, "cannot count an AI call's tokens");
                    }
                }
            }
        }
    }

    /// The earlier exchanges of `event`'s conversation (before it) on the tenant `page` (an Instagram event's
    /// conversation is stored under its Facebook Page), oldest first, at most `ai.history_turns`, from the
    /// conversation store. Nothing when the event is not stored (memory inbox).
    async fn history(&self, caller: &Caller, event: &InboundEvent) -> Vec<Exchange> {
        let page = caller.page.as_ref();
        let (Some(id), turns) = (event.inbox_id, self.settings.history_turns) else { return Vec::new() };
        if turns == 0 {
            return Vec::new();
        }
        // Rows that are not a customer's text (buttons, what a person wrote) are left out below: read more.
        let limit = i64::try_from(turns * 2).unwrap_or(100);
        let entries = match self.store.conversation(page, &event.sender, Some(id.0), limit).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(%page, error = %e, "cannot read the conversation; answering without it");
                return Vec::new();
            }
        };
        let mut exchanges: Vec<Exchange> = entries
            .into_iter()
            .filter(|entry| caller.since.is_none_or(|since| entry.received_at >= since))
            .filter_map(|entry| {
                let earlier: InboundEvent = serde_json::from_str(&entry.event).ok()?;
                let customer = customer_text(&earlier)?.to_owned();
                // What the bot recorded as its answer (sent, or on its way).
                let replies = entry.replies.into_iter().map(|r| r.body).collect();
                Some(Exchange { customer, replies })
            })
            .collect();
        exchanges.truncate(turns);
        exchanges.reverse();
        exchanges
    }
}

/// The text of a customer's message the model may answer (not an echo, not a quick reply's payload).
fn customer_text(event: &InboundEvent) -> Option<&str> {
    match &event.kind {
        EventKind::Message { text: Some(text), is_echo: false, .. } if !text.trim().is_empty() => Some(text),
        _ => None,
    }
}

/// An id for the provider's abuse tracking that names no one: a hash of the Page and the customer.
fn end_user(event: &InboundEvent) -> String {
    let digest = Sha256::digest(format!("{}:{}", event.account_id, event.sender));
    hex::encode(&digest[..12])
}

/// One Page's AI answers: its client's knowledge and budget, a bound on its calls in flight, and its rules
/// for whatever the model does not answer.
pub struct AiResponder {
    ai: Arc<Ai>,
    caller: Caller,
    setting: AiSetting,
    rules: RulesResponder,
    /// The answer to a customer who asks for a person, for a hand-over the model asked for without words.
    person_reply: String,
    slots: Arc<Semaphore>,
}

impl AiResponder {
    pub fn new(ai: Arc<Ai>, caller: Caller, setting: AiSetting, rules: RulesResponder, person_reply: String) -> Self {
        let slots = Arc::new(Semaphore::new(ai.settings.max_concurrent_per_page));
        Self { ai, caller, setting, rules, person_reply, slots }
    }

    /// The rules' answer, noting why the model did not answer.
    async fn fallback(&self, event: &InboundEvent, why: &NoAnswer) -> Result<BotAnswer, BotError> {
        metrics::counter!(FALLBACKS, "client" => self.caller.client_slug.to_string(), "page" => self.caller.page.to_string(), "reason" => why.reason())
            .increment(1);
        let mut answer = self.rules.respond(event).await?;
        answer.note = Some(format!("answered by the rules: {why}"));
        Ok(answer)
    }
}

#[async_trait]
impl Responder for AiResponder {
    async fn respond(&self, event: &InboundEvent) -> Result<BotAnswer, BotError> {
        let Some(question) = customer_text(event).map(str::to_owned) else {
            // Postbacks, quick replies and attachments are the rules' (their payloads are the client's).
            return self.rules.respond(event).await;
        };
        if matches!(&event.kind, EventKind::Message { quick_reply: Some(_), .. }) {
            return self.rules.respond(event).await;
        }
        // The customer gets an answer within the timeout of the message's arrival: time spent waiting behind
        // the Page's other calls (or the conversation's earlier messages) counts.
        let timeout = self.ai.settings.timeout;
        let deadline = event.received.unwrap_or_else(Instant::now) + timeout;
        if Instant::now() >= deadline {
            return self.fallback(event, &NoAnswer::Model(ModelError::Timeout(timeout.as_secs()))).await;
        }
        let (ai, caller, setting, slots, event_copy) =
            (self.ai.clone(), self.caller.clone(), self.setting.clone(), self.slots.clone(), event.clone());
        // Its own task: the call settles its reservation even if this batch stops waiting for it.
        let call = tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.map_err(|_| NoAnswer::Model(ModelError::Timeout(0)))?;
            let history = ai.history(&caller, &event_copy).await;
            let user = end_user(&event_copy);
            ai.answer(&caller, &setting, &history, &question, Some(&user), deadline).await
        });
        let outcome = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_panicked)) => Err(NoAnswer::Model(ModelError::Unusable("the call failed".to_owned()))),
            Err(_) => Err(NoAnswer::Model(ModelError::Timeout(timeout.as_secs()))),
        };
        match outcome {
            Ok(answer) => {
                let text = if answer.text.is_empty() { self.person_reply.clone() } else { answer.text };
                Ok(BotAnswer {
                    replies: vec![text],
                    hand_over: answer.hand_over,
                    note: Some(format!("answered by AI ({} tokens)", answer.tokens)),
                })
            }
            Err(why) => self.fallback(event, &why).await,
        }
    }

    /// Each customer text is its own call: a slow one holds up only its own conversation.
    fn parallel(&self) -> usize {
        self.ai.settings.max_concurrent_per_page
    }
}
