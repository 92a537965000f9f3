//! The stand-in's memory: issued tokens and codes, Page subscriptions, per-Page rate windows, injected
//! faults (Graph API and chat completions), and everything it recorded for tests to assert on. All rules Meta enforces on a call (token
//! valid, proof valid, rate, text limits) are methods here; `routes` only translates HTTP to them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::SimConfig;
use crate::graph_error::GraphError;
use crate::ids::{random_token, unix_now, unix_now_ms};

mod ai;
mod conversations;
mod handover;
mod oauth;
mod pages;
mod send;

pub use ai::{AiFault, AiFaultSwitch, AiRequests, DEFAULT_SLOW_MS};
pub use pages::PAGE_FIELDS;

/// A long-lived user token lives about 60 days (`expires_in` Meta reports).
pub const LONG_LIVED_SECS: i64 = 5_183_944;
/// A short-lived user token from the code exchange.
pub const SHORT_LIVED_SECS: i64 = 5_400;
/// How old a timestamped `appsecret_proof` may be.
const PROOF_MAX_AGE_SECS: i64 = 300;

/// Faults to inject into Graph API calls (not into the control API or the dialog).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Fraction of calls answered with a 500 and error code 2.
    pub error_rate: f64,
    /// Fraction of calls held for `timeout_hold_secs` and then answered with a 500.
    pub timeout_rate: f64,
    /// Added to every call.
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    User { long_lived: bool },
    Page { page_id: String },
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub kind: TokenKind,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub declined: Vec<String>,
    /// The Pages the user ticked in the dialog.
    pub pages: Vec<String>,
    pub issued_at: i64,
    /// `None`: no expiry (Page tokens derived from a long-lived user token).
    pub expires_at: Option<i64>,
    /// Set when the token was invalidated (the 190 subcode to answer with).
    pub revoked: Option<u32>,
}

struct CodeInfo {
    user_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    declined: Vec<String>,
    pages: Vec<String>,
    created: Instant,
    used: bool,
}

/// How a recipient answers sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    Ok,
    /// 10/2018278: outside the 24-hour window.
    WindowClosed,
    /// 551/1545041: blocked or deactivated.
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Messenger,
    Instagram,
}

/// A message the Send API accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SentMessage {
    pub page_id: String,
    pub channel: Channel,
    /// The Page or Instagram account id the call was addressed to (`me` resolved).
    pub account_id: String,
    pub recipient_id: String,
    pub text: Option<String>,
    pub sender_action: Option<String>,
    pub messaging_type: Option<String>,
    pub message_id: String,
    pub at_ms: i64,
    /// When it was accepted, in microseconds since the Unix epoch (for latency measurements).
    pub at_us: i64,
}

/// One Send API call, accepted or not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallRecord {
    pub at_ms: i64,
    pub page_id: Option<String>,
    /// `ok`, or the error code.
    pub outcome: String,
}

/// An error the stand-in answered with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReturnedError {
    pub at_ms: i64,
    pub route: String,
    pub page_id: Option<String>,
    pub status: u16,
    pub code: u32,
    pub subcode: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Throttle {
    until: Instant,
    code: u32,
}

/// Usage figures for the `X-Business-Use-Case-Usage` header.
#[derive(Debug, Clone)]
pub struct Usage {
    pub account_id: String,
    pub channel: Channel,
    pub call_count_pct: u32,
    pub regain_minutes: u64,
}

impl Usage {
    /// The header value: `{"<id>":[{type, call_count, total_cputime, total_time, estimated_time_to_regain_access}]}`.
    pub fn header_value(&self) -> String {
        let kind = match self.channel {
            Channel::Messenger => "messenger",
            Channel::Instagram => "instagram",
        };
        json!({ &self.account_id: [{
            "type": kind,
            "call_count": self.call_count_pct,
            "total_cputime": self.call_count_pct / 4,
            "total_time": self.call_count_pct / 3,
            "estimated_time_to_regain_access": self.regain_minutes,
        }]})
        .to_string()
    }
}

/// A parsed Send API request.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// The id in the path, or `None` for `/me/messages`.
    pub path_id: Option<String>,
    pub token: Option<String>,
    pub proof: Option<String>,
    pub proof_time: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Counters {
    send_calls: u64,
    messages_sent: u64,
    calls_while_throttled: u64,
    errors_returned: u64,
    violations: BTreeMap<String, u64>,
    conversation_calls: u64,
    /// Conversations API calls over 2 a second for one Page or Instagram account.
    conversation_violations: u64,
}

struct State {
    config: SimConfig,
    faults: Faults,
    tokens: HashMap<String, TokenInfo>,
    codes: HashMap<String, CodeInfo>,
    subscriptions: BTreeMap<String, Vec<String>>,
    windows: HashMap<String, VecDeque<Instant>>,
    /// Conversations API calls in the last second, per Page or Instagram account.
    conversation_windows: HashMap<String, VecDeque<Instant>>,
    throttles: HashMap<String, Throttle>,
    recipients: HashMap<String, RecipientState>,
    instagram_users: HashSet<String>,
    messages: Vec<SentMessage>,
    calls: Vec<CallRecord>,
    errors: Vec<ReturnedError>,
    counters: Counters,
    /// Conversations passed through the Handover Protocol: "page:recipient" → the app that owns it now.
    threads: BTreeMap<String, String>,
    /// The chat completions stand-in's fault switch and received calls.
    ai: ai::AiDesk,
}

/// The stand-in. Cheap to share behind an `Arc`; every method takes the lock briefly and never awaits
/// while holding it.
pub struct Sim {
    state: Mutex<State>,
}

/// The result of the OAuth dialog.
pub enum Decision {
    Continue { scopes: Vec<String>, pages: Vec<String> },
    Cancel,
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        Self {
            state: Mutex::new(State {
                config,
                faults: Faults::default(),
                tokens: HashMap::new(),
                codes: HashMap::new(),
                subscriptions: BTreeMap::new(),
                windows: HashMap::new(),
                conversation_windows: HashMap::new(),
                throttles: HashMap::new(),
                recipients: HashMap::new(),
                instagram_users: HashSet::new(),
                messages: Vec::new(),
                calls: Vec::new(),
                errors: Vec::new(),
                counters: Counters::default(),
                threads: BTreeMap::new(),
                ai: ai::AiDesk::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters to a
        // test double; keep serving.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn config(&self) -> SimConfig {
        self.lock().config.clone()
    }

    pub fn set_config(&self, config: SimConfig) {
        self.lock().config = config;
    }

    /// Merges a partial JSON object into the configuration.
    pub fn merge_config(&self, patch: &Value) -> Result<SimConfig, String> {
        let mut state = self.lock();
        let mut current = serde_json::to_value(&state.config).map_err(|e| e.to_string())?;
        let (Value::Object(target), Value::Object(source)) = (&mut current, patch) else {
            return Err("the configuration patch must be a JSON object".to_owned());
        };
        for (k, v) in source {
            if !target.contains_key(k) {
                return Err(format!("unknown configuration key {k:?}"));
            }
            target.insert(k.clone(), v.clone());
        }
        let merged: SimConfig = serde_json::from_value(current).map_err(|e| e.to_string())?;
        state.config = merged.clone();
        Ok(merged)
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Adds `redirect_uri` to the app's valid OAuth redirect URIs.
    pub fn register_redirect_uri(&self, uri: &str) {
        let mut state = self.lock();
        if !state.config.redirect_uris.iter().any(|u| u == uri) {
            state.config.redirect_uris.push(uri.to_owned());
        }
    }

    /// Invalidates every token of `page_id` (and its Instagram account) with a 190 subcode.
    pub fn invalidate_page_tokens(&self, page_id: &str, subcode: u32) -> usize {
        let mut state = self.lock();
        let mut n = 0;
        for info in state.tokens.values_mut() {
            if matches!(&info.kind, TokenKind::Page { page_id: p } if p == page_id) {
                info.revoked = Some(subcode);
                n += 1;
            }
        }
        n
    }

    /// Answers this Page's (or Instagram account's) Send API calls with `code` for `seconds`.
    pub fn throttle(&self, account_id: &str, seconds: u64, code: u32) {
        self.lock()
            .throttles
            .insert(account_id.to_owned(), Throttle { until: Instant::now() + Duration::from_secs(seconds), code });
    }

    pub fn set_recipient(&self, recipient: &str, state_: RecipientState, channel: Option<Channel>) {
        let mut state = self.lock();
        state.recipients.insert(recipient.to_owned(), state_);
        if channel == Some(Channel::Instagram) {
            state.instagram_users.insert(recipient.to_owned());
        }
    }

    /// A person at the business answers `recipient` in the Page Inbox (or the Instagram Inbox, for an Instagram
    /// user): the webhook body Meta sends for it (an echo naming the inbox app) and its signature, or why not.
    pub fn person_answers(&self, page_id: &str, recipient: &str, text: &str) -> Result<(Vec<u8>, String), String> {
        let state = self.lock();
        let page = state.config.page(page_id).ok_or_else(|| format!("no page {page_id}"))?;
        let instagram = state.instagram_users.contains(recipient);
        let (object, account, app) = match (&page.instagram_business_account, instagram) {
            (Some(ig), true) => ("instagram", ig.clone(), crate::webhook::INSTAGRAM_INBOX_APP_ID),
            (None, true) => return Err(format!("page {page_id} has no Instagram account for {recipient}")),
            (_, false) => ("page", page.id.clone(), crate::webhook::PAGE_INBOX_APP_ID),
        };
        let ts = unix_now_ms();
        let mid = random_token("m_", 40);
        let messaging = crate::webhook::echo(&account, recipient, ts, mid, app, text);
        let body = crate::webhook::to_meta_json(&crate::webhook::Envelope {
            object,
            entry: vec![crate::webhook::Entry { id: account, time: ts, messaging: vec![messaging] }],
        });
        let signature = crate::webhook::signature(&state.config.app_secret, &body);
        Ok((body, signature))
    }

    /// Marks ids as Instagram-scoped users (IGSIDs), so sends to them are Instagram sends.
    pub fn register_instagram_users<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut state = self.lock();
        state.instagram_users.extend(ids.into_iter().map(str::to_owned));
    }

    /// Meta unsubscribing a Page after long delivery failures.
    pub fn drop_subscription(&self, page_id: &str) -> bool {
        self.lock().subscriptions.remove(page_id).is_some()
    }

    pub fn subscriptions(&self) -> BTreeMap<String, Vec<String>> {
        self.lock().subscriptions.clone()
    }

    /// How many messages the Send API accepted (cheap: no copy of the records).
    pub fn messages_sent(&self) -> u64 {
        self.lock().counters.messages_sent
    }

    /// Returns once the Send API has accepted no message for `quiet`, or `Err` with the count still moving
    /// after `within` (a sender that does not stop).
    pub async fn until_quiet(&self, quiet: std::time::Duration, within: std::time::Duration) -> Result<u64, u64> {
        let started = tokio::time::Instant::now();
        let mut seen = self.messages_sent();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.messages_sent();
            if now == seen {
                return Ok(now);
            }
            if started.elapsed() >= within {
                return Err(now);
            }
            seen = now;
        }
    }

    pub fn messages(&self) -> Vec<SentMessage> {
        self.lock().messages.clone()
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.clone()
    }

    pub fn errors(&self) -> Vec<ReturnedError> {
        self.lock().errors.clone()
    }

    /// Calls that arrived while their Page was over the configured rate, per Page.
    pub fn violations(&self) -> BTreeMap<String, u64> {
        self.lock().counters.violations.clone()
    }

    pub fn record_error(&self, route: &str, page_id: Option<&str>, e: &GraphError) {
        let mut state = self.lock();
        state.counters.errors_returned += 1;
        let entry = ReturnedError {
            at_ms: unix_now_ms(),
            route: route.to_owned(),
            page_id: page_id.map(str::to_owned),
            status: e.status,
            code: e.code,
            subcode: e.error_subcode,
        };
        if state.errors.len() < state.config.max_recorded {
            state.errors.push(entry);
        }
    }

    /// Forgets recorded traffic, faults, throttles and recipient states (chat completions included); keeps
    /// config (the AI key too), tokens and subscriptions.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.faults = Faults::default();
        state.windows.clear();
        state.conversation_windows.clear();
        state.throttles.clear();
        state.recipients.clear();
        state.messages.clear();
        state.calls.clear();
        state.errors.clear();
        state.counters = Counters::default();
        state.threads.clear();
        state.ai.reset();
    }

    /// A summary for `GET /_sim/state`.
    pub fn summary(&self) -> Value {
        let state = self.lock();
        let now = Instant::now();
        let throttles: BTreeMap<&String, u64> = state
            .throttles
            .iter()
            .filter(|(_, t)| t.until > now)
            .map(|(k, t)| (k, t.until.duration_since(now).as_secs()))
            .collect();
        json!({
            "app_id": state.config.app_id,
            "faults": state.faults,
            "rate_limit_per_page": state.config.rate_limit_per_page,
            "require_appsecret_proof": state.config.require_appsecret_proof,
            "subscriptions": state.subscriptions,
            "throttled_seconds_left": throttles,
            "counters": {
                "send_calls": state.counters.send_calls,
                "messages_sent": state.counters.messages_sent,
                "calls_while_throttled": state.counters.calls_while_throttled,
                "errors_returned": state.counters.errors_returned,
                "violations": state.counters.violations,
                "violations_total": state.counters.violations.values().sum::<u64>(),
                "conversation_calls": state.counters.conversation_calls,
                "conversation_violations": state.counters.conversation_violations,
            },
            "ai": state.ai.summary(state.config.ai_key.as_deref().is_some_and(|k| !k.is_empty())),
        })
    }
}

/// What the dialog shows.
pub struct SimConfigView {
    pub user: Option<crate::config::SimUser>,
}

impl State {
    fn validity(&self, info: &TokenInfo) -> Result<(), GraphError> {
        if let Some(subcode) = info.revoked {
            return Err(GraphError::invalid_token(subcode));
        }
        if info.expires_at.is_some_and(|t| t <= unix_now()) {
            return Err(GraphError::invalid_token(463));
        }
        Ok(())
    }

    fn valid_token(&self, token: &str) -> Result<&TokenInfo, GraphError> {
        let info = self.tokens.get(token).ok_or_else(|| GraphError::invalid_token(467))?;
        self.validity(info)?;
        Ok(info)
    }

    /// Classic `hex(HMAC(secret, token))` or the time-stamped `hex(HMAC(secret, token|time))` with
    /// `appsecret_time` within 5 minutes: Meta documents both (meta-platform.md §10), so both pass.
    fn check_proof(&self, token: &str, proof: Option<&str>, time: Option<&str>) -> Result<(), GraphError> {
        let Some(proof) = proof else {
            return if self.config.require_appsecret_proof { Err(GraphError::missing_proof()) } else { Ok(()) };
        };
        let Ok(proof) = hex::decode(proof) else { return Err(GraphError::bad_proof()) };
        let message = match time {
            Some(t) => {
                let ts: i64 = t.parse().map_err(|_| GraphError::bad_proof())?;
                if (unix_now() - ts).abs() > PROOF_MAX_AGE_SECS {
                    return Err(GraphError::bad_proof());
                }
                format!("{token}|{t}")
            }
            None => token.to_owned(),
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.config.app_secret.as_bytes()).map_err(|_| GraphError::bad_proof())?;
        mac.update(message.as_bytes());
        mac.verify_slice(&proof).map_err(|_| GraphError::bad_proof())
    }

    fn push_message(&mut self, m: SentMessage) {
        if self.messages.len() < self.config.max_recorded {
            self.messages.push(m);
        }
    }

    fn push_call(&mut self, c: CallRecord) {
        if self.calls.len() < self.config.max_recorded {
            self.calls.push(c);
        }
    }
}
