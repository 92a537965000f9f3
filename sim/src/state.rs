//! The stand-in's memory: issued tokens and codes, Page subscriptions, per-Page rate windows, injected
//! faults, and everything it recorded for tests to assert on. All rules Meta enforces on a call (token
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
}

struct State {
    config: SimConfig,
    faults: Faults,
    tokens: HashMap<String, TokenInfo>,
    codes: HashMap<String, CodeInfo>,
    subscriptions: BTreeMap<String, Vec<String>>,
    windows: HashMap<String, VecDeque<Instant>>,
    throttles: HashMap<String, Throttle>,
    recipients: HashMap<String, RecipientState>,
    instagram_users: HashSet<String>,
    messages: Vec<SentMessage>,
    calls: Vec<CallRecord>,
    errors: Vec<ReturnedError>,
    counters: Counters,
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
                throttles: HashMap::new(),
                recipients: HashMap::new(),
                instagram_users: HashSet::new(),
                messages: Vec::new(),
                calls: Vec::new(),
                errors: Vec::new(),
                counters: Counters::default(),
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

    // ---- OAuth -------------------------------------------------------------------------------

    /// Checks what the dialog is given: the app id and a registered redirect URI.
    pub fn check_dialog(&self, client_id: &str, redirect_uri: &str) -> Result<SimConfigView, String> {
        let state = self.lock();
        if client_id != state.config.app_id {
            return Err("Invalid App ID: the provided app ID does not look like a valid app ID.".to_owned());
        }
        if !state.config.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err("URL blocked: this redirect failed because the redirect URI is not whitelisted in the app's client OAuth settings.".to_owned());
        }
        let user = state.config.user(&state.config.active_user).cloned();
        Ok(SimConfigView { user })
    }

    /// The user decided in the dialog: a code to redirect with, or `None` for Cancel.
    pub fn decide(&self, redirect_uri: &str, requested: &[String], decision: Decision) -> Option<String> {
        let Decision::Continue { scopes, pages } = decision else { return None };
        let mut state = self.lock();
        let user_id = state.config.active_user.clone();
        let granted: Vec<String> = requested.iter().filter(|s| scopes.contains(s)).cloned().collect();
        let declined: Vec<String> = requested.iter().filter(|s| !scopes.contains(s)).cloned().collect();
        let owned: Vec<String> =
            state.config.user(&user_id).map(|u| u.pages.iter().map(|p| p.id.clone()).collect()).unwrap_or_default();
        let pages = pages.into_iter().filter(|p| owned.contains(p)).collect();
        let code = random_token("AQ", 48);
        state.codes.insert(
            code.clone(),
            CodeInfo {
                user_id,
                redirect_uri: redirect_uri.to_owned(),
                scopes: granted,
                declined,
                pages,
                created: Instant::now(),
                used: false,
            },
        );
        Some(code)
    }

    /// `GET /oauth/access_token` with a code: a short-lived user token.
    pub fn exchange_code(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        code: &str,
    ) -> Result<Value, GraphError> {
        let mut state = self.lock();
        check_client(&state.config, client_id, client_secret)?;
        let ttl = Duration::from_secs(state.config.code_ttl_secs);
        let info = state
            .codes
            .get_mut(code)
            .ok_or_else(|| GraphError::oauth(100, Some(36_009), "Invalid verification code format."))?;
        if info.used {
            return Err(GraphError::oauth(100, Some(36_009), "This authorization code has been used."));
        }
        if info.created.elapsed() > ttl {
            return Err(GraphError::oauth(100, Some(36_007), "This authorization code has expired."));
        }
        if info.redirect_uri != redirect_uri {
            return Err(GraphError::oauth(
                100,
                Some(36_008),
                "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
            ));
        }
        info.used = true;
        let token = TokenInfo {
            kind: TokenKind::User { long_lived: false },
            user_id: info.user_id.clone(),
            scopes: info.scopes.clone(),
            declined: info.declined.clone(),
            pages: info.pages.clone(),
            issued_at: unix_now(),
            expires_at: Some(unix_now() + SHORT_LIVED_SECS),
            revoked: None,
        };
        let access_token = random_token("EAAU", 64);
        state.tokens.insert(access_token.clone(), token);
        Ok(json!({ "access_token": access_token, "token_type": "bearer", "expires_in": SHORT_LIVED_SECS }))
    }

    /// `grant_type=fb_exchange_token`: a long-lived user token (a different string) for a valid one.
    pub fn exchange_long_lived(&self, client_id: &str, client_secret: &str, token: &str) -> Result<Value, GraphError> {
        let mut state = self.lock();
        check_client(&state.config, client_id, client_secret)?;
        let info = state.valid_token(token)?.clone();
        if !matches!(info.kind, TokenKind::User { .. }) {
            return Err(GraphError::oauth(100, None, "fb_exchange_token must be a user access token"));
        }
        let access_token = random_token("EAAL", 64);
        state.tokens.insert(
            access_token.clone(),
            TokenInfo {
                kind: TokenKind::User { long_lived: true },
                issued_at: unix_now(),
                expires_at: Some(unix_now() + LONG_LIVED_SECS),
                ..info
            },
        );
        Ok(json!({ "access_token": access_token, "token_type": "bearer", "expires_in": LONG_LIVED_SECS }))
    }

    /// `GET /debug_token`: `access_token` must be the app token `{app-id}|{app-secret}`.
    pub fn debug_token(&self, app_token: Option<&str>, input: &str) -> Result<Value, GraphError> {
        let state = self.lock();
        let expected = format!("{}|{}", state.config.app_id, state.config.app_secret);
        if app_token != Some(expected.as_str()) {
            return Err(GraphError::invalid_token(467));
        }
        let Some(info) = state.tokens.get(input) else {
            return Ok(json!({ "data": {
                "error": { "code": 190, "message": "Invalid OAuth access token." },
                "is_valid": false, "scopes": [] } }));
        };
        let (kind, profile) = match &info.kind {
            TokenKind::User { .. } => ("USER", None),
            TokenKind::Page { page_id } => ("PAGE", Some(page_id.clone())),
        };
        let granular: Vec<Value> = info
            .scopes
            .iter()
            .map(|scope| {
                if scope.starts_with("pages_") || scope.starts_with("instagram_") {
                    json!({ "scope": scope, "target_ids": info.pages })
                } else {
                    json!({ "scope": scope })
                }
            })
            .collect();
        let mut data = json!({
            "app_id": state.config.app_id,
            "type": kind,
            "application": "Switchboard (meta-sim)",
            "data_access_expires_at": info.issued_at + 90 * 86_400,
            "expires_at": info.expires_at.unwrap_or(0),
            "is_valid": state.validity(info).is_ok(),
            "issued_at": info.issued_at,
            "scopes": info.scopes,
            "granular_scopes": granular,
            "user_id": info.user_id,
        });
        if let Some(page) = profile {
            data["profile_id"] = json!(page);
        }
        if let Err(e) = state.validity(info) {
            data["error"] = json!({ "code": e.code, "subcode": e.error_subcode, "message": e.message });
        }
        Ok(json!({ "data": data }))
    }

    /// `GET /me/permissions` with a user token.
    pub fn permissions(&self, token: &str) -> Result<Value, GraphError> {
        let state = self.lock();
        let info = state.valid_token(token)?;
        let granted = info.scopes.iter().map(|p| json!({ "permission": p, "status": "granted" }));
        let declined = info.declined.iter().map(|p| json!({ "permission": p, "status": "declined" }));
        Ok(json!({ "data": granted.chain(declined).collect::<Vec<_>>() }))
    }

    /// `GET /me/accounts`: the Pages the user granted, each with a Page token, a page of results at a time.
    pub fn accounts(
        &self,
        token: &str,
        after: Option<&str>,
        limit: Option<usize>,
        next_base: &str,
    ) -> Result<Value, GraphError> {
        let mut state = self.lock();
        let info = state.valid_token(token)?.clone();
        let TokenKind::User { long_lived } = info.kind else {
            return Err(GraphError::oauth(
                100,
                None,
                "(#100) Tried accessing nonexisting field (accounts) on node type (Page)",
            ));
        };
        if !info.scopes.iter().any(|s| s == "pages_show_list") {
            return Err(GraphError::permission(200, "(#200) Requires pages_show_list permission"));
        }
        let size = limit.unwrap_or(state.config.accounts_page_size).clamp(1, 100);
        let start = match after {
            Some(cursor) => {
                decode_cursor(cursor).ok_or_else(|| GraphError::invalid_parameter("(#100) Invalid cursor"))?
            }
            None => 0,
        };
        let user = state.config.user(&info.user_id).cloned();
        let pages: Vec<_> =
            user.map(|u| u.pages.into_iter().filter(|p| info.pages.contains(&p.id)).collect()).unwrap_or_default();
        let mut data = Vec::new();
        for page in pages.iter().skip(start).take(size) {
            let page_token = random_token("EAAP", 64);
            state.tokens.insert(
                page_token.clone(),
                TokenInfo {
                    kind: TokenKind::Page { page_id: page.id.clone() },
                    issued_at: unix_now(),
                    // A Page token from a long-lived user token has no expiry; from a short-lived one it
                    // dies with it.
                    expires_at: if long_lived { None } else { info.expires_at },
                    ..info.clone()
                },
            );
            data.push(json!({
                "access_token": page_token,
                "category": "Retail Company",
                "category_list": [{ "id": "2500", "name": "Retail Company" }],
                "name": page.name,
                "id": page.id,
                "tasks": page.tasks,
            }));
        }
        let end = start + data.len();
        let mut paging = json!({ "cursors": { "before": encode_cursor(start), "after": encode_cursor(end) } });
        if end < pages.len() {
            paging["next"] =
                json!(format!("{next_base}?access_token={token}&limit={size}&after={}", encode_cursor(end)));
        }
        Ok(json!({ "data": data, "paging": paging }))
    }

    /// `GET /{page-id}?fields=…`: the Page's id, name and linked Instagram account.
    pub fn page_fields(&self, page_id: &str, token: &str, fields: &str) -> Result<Value, GraphError> {
        let state = self.lock();
        let info = state.valid_token(token)?;
        let allowed = match &info.kind {
            TokenKind::Page { page_id: own } => own == page_id,
            TokenKind::User { .. } => info.pages.iter().any(|p| p == page_id),
        };
        let page = state.config.page(page_id).filter(|p| p.id == page_id && allowed);
        let Some(page) = page else { return Err(GraphError::not_found(page_id)) };
        let mut out = json!({ "id": page.id });
        for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            match field {
                "id" => {}
                "name" => out["name"] = json!(page.name),
                "instagram_business_account" => {
                    if !info.scopes.iter().any(|s| s == "instagram_basic") {
                        return Err(GraphError::permission(10, "(#10) Requires instagram_basic permission"));
                    }
                    if let Some(ig) = &page.instagram_business_account {
                        out["instagram_business_account"] = json!({ "id": ig });
                    }
                }
                other => {
                    return Err(GraphError::invalid_parameter(&format!(
                        "(#100) Tried accessing nonexisting field ({other}) on node type (Page)"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Checks an `appsecret_proof` for `token` (required when "Require App Secret" is on).
    pub fn check_proof(&self, token: &str, proof: Option<&str>, time: Option<&str>) -> Result<(), GraphError> {
        self.lock().check_proof(token, proof, time)
    }

    // ---- Page subscriptions ---------------------------------------------------------------------

    /// Checks a Page token for `/{page-id}/subscribed_apps`: its own page, and pages_manage_metadata.
    fn subscription_token(state: &State, page_id: &str, token: &str) -> Result<(), GraphError> {
        let info = state.valid_token(token)?;
        match &info.kind {
            TokenKind::Page { page_id: own } if own == page_id => {}
            TokenKind::Page { .. } => return Err(GraphError::not_found(page_id)),
            TokenKind::User { .. } => {
                return Err(GraphError::permission(
                    210,
                    "(#210) A page access token is required to request this resource.",
                ));
            }
        }
        if !info.scopes.iter().any(|s| s == "pages_manage_metadata") {
            return Err(GraphError::permission(
                200,
                "(#200) Requires pages_manage_metadata permission to manage the object",
            ));
        }
        Ok(())
    }

    pub fn subscribe(&self, page_id: &str, token: &str, fields: &str) -> Result<Value, GraphError> {
        let mut state = self.lock();
        Self::subscription_token(&state, page_id, token)?;
        let fields: Vec<String> =
            fields.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned).collect();
        if fields.is_empty() {
            return Err(GraphError::invalid_parameter("(#100) The parameter subscribed_fields is required"));
        }
        if let Some(bad) = fields.iter().find(|f| !PAGE_FIELDS.contains(&f.as_str())) {
            return Err(GraphError::invalid_parameter(&format!(
                "(#100) Param subscribed_fields[{bad}] must be one of {{{}}}",
                PAGE_FIELDS.join(", ")
            )));
        }
        state.subscriptions.insert(page_id.to_owned(), fields);
        Ok(json!({ "success": true }))
    }

    pub fn subscribed_apps(&self, page_id: &str, token: &str) -> Result<Value, GraphError> {
        let state = self.lock();
        Self::subscription_token(&state, page_id, token)?;
        let data: Vec<Value> = state
            .subscriptions
            .get(page_id)
            .map(|fields| {
                vec![json!({
                    "category": "Business",
                    "link": "https://switchboard.invalid/",
                    "name": "Switchboard",
                    "id": state.config.app_id,
                    "subscribed_fields": fields,
                })]
            })
            .unwrap_or_default();
        Ok(json!({ "data": data }))
    }

    pub fn unsubscribe(&self, page_id: &str, token: &str) -> Result<Value, GraphError> {
        let mut state = self.lock();
        Self::subscription_token(&state, page_id, token)?;
        state.subscriptions.remove(page_id);
        Ok(json!({ "success": true }))
    }

    // ---- Send API -------------------------------------------------------------------------------

    /// `POST /me/messages` or `/{id}/messages`: every check Meta makes, then the message is recorded.
    pub fn send(&self, req: &SendRequest) -> Result<(Value, Usage), (GraphError, Option<Usage>)> {
        let mut state = self.lock();
        state.counters.send_calls += 1;
        let outcome = state.send_checked(req);
        let page_id = outcome.as_ref().map(|(m, _)| Some(m.page_id.clone())).unwrap_or_else(|(_, p, _)| p.clone());
        let record = CallRecord {
            at_ms: unix_now_ms(),
            page_id,
            outcome: match &outcome {
                Ok(_) => "ok".to_owned(),
                Err((e, _, _)) => e.code.to_string(),
            },
        };
        state.push_call(record);
        match outcome {
            Ok((message, usage)) => {
                state.counters.messages_sent += 1;
                let reply = json!({ "recipient_id": message.recipient_id, "message_id": message.message_id });
                state.push_message(message);
                Ok((reply, usage))
            }
            Err((e, _, usage)) => Err((e, usage)),
        }
    }

    // ---- faults and inspection --------------------------------------------------------------------

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

    /// Forgets recorded traffic, faults, throttles and recipient states; keeps config, tokens and
    /// subscriptions.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.faults = Faults::default();
        state.windows.clear();
        state.throttles.clear();
        state.recipients.clear();
        state.messages.clear();
        state.calls.clear();
        state.errors.clear();
        state.counters = Counters::default();
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
            },
        })
    }
}

/// What the dialog shows.
pub struct SimConfigView {
    pub user: Option<crate::config::SimUser>,
}

/// Fields a Page can subscribe the app to (Instagram fields such as `messaging_seen` live on the app's
/// `instagram` object and are refused here, as Meta refuses them).
pub const PAGE_FIELDS: &[&str] = &[
    "messages",
    "messaging_postbacks",
    "messaging_optins",
    "message_deliveries",
    "message_reads",
    "message_echoes",
    "messaging_referrals",
    "message_reactions",
    "message_edits",
    "messaging_handovers",
    "messaging_policy_enforcement",
    "standby",
    "feed",
];

fn check_client(config: &SimConfig, client_id: &str, client_secret: &str) -> Result<(), GraphError> {
    if client_id != config.app_id {
        return Err(GraphError::oauth(101, None, "Error validating application. Invalid application ID."));
    }
    if client_secret != config.app_secret {
        return Err(GraphError::oauth(1, None, "Error validating client secret."));
    }
    Ok(())
}

fn encode_cursor(index: usize) -> String {
    hex::encode(format!("cursor:{index}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let raw = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    raw.strip_prefix("cursor:")?.parse().ok()
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

    /// Admits one Send API call for `account` against the throttles and the per-second rate.
    fn admit(&mut self, account: &str, channel: Channel) -> Result<Usage, (GraphError, Usage)> {
        let now = Instant::now();
        let limit = self.config.rate_limit_per_page;
        if let Some(t) = self.throttles.get(account).copied() {
            if t.until > now {
                self.counters.calls_while_throttled += 1;
                let minutes = t.until.duration_since(now).as_secs().div_ceil(60).max(1);
                let usage =
                    Usage { account_id: account.to_owned(), channel, call_count_pct: 100, regain_minutes: minutes };
                return Err((GraphError::throttled(t.code), usage));
            }
            self.throttles.remove(account);
        }
        let window = self.windows.entry(account.to_owned()).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            window.pop_front();
        }
        if limit > 0 && window.len() >= limit as usize {
            *self.counters.violations.entry(account.to_owned()).or_default() += 1;
            let usage = Usage { account_id: account.to_owned(), channel, call_count_pct: 100, regain_minutes: 1 };
            let code = if channel == Channel::Instagram { 80002 } else { 80006 };
            return Err((GraphError::throttled(code), usage));
        }
        window.push_back(now);
        let pct = if limit == 0 { 1 } else { (window.len() as u64 * 100 / u64::from(limit)).min(100) as u32 };
        Ok(Usage { account_id: account.to_owned(), channel, call_count_pct: pct, regain_minutes: 0 })
    }

    #[allow(clippy::type_complexity)]
    fn send_checked(
        &mut self,
        req: &SendRequest,
    ) -> Result<(SentMessage, Usage), (GraphError, Option<String>, Option<Usage>)> {
        let plain = |e: GraphError| (e, None, None);
        let token = req.token.as_deref().ok_or_else(|| plain(GraphError::no_token()))?;
        // A known but dead token still tells whose it was: record the page with the error.
        let owner = match self.tokens.get(token).map(|t| &t.kind) {
            Some(TokenKind::Page { page_id }) => Some(page_id.clone()),
            _ => None,
        };
        let info = self.valid_token(token).map_err(|e| (e, owner, None))?.clone();
        let TokenKind::Page { page_id } = &info.kind else {
            return Err(plain(GraphError::permission(
                210,
                "(#210) A page access token is required to request this resource.",
            )));
        };
        let on_page = |e: GraphError| (e, Some(page_id.clone()), None);
        self.check_proof(token, req.proof.as_deref(), req.proof_time.as_deref()).map_err(on_page)?;
        let page = self.config.page(page_id).cloned().ok_or_else(|| on_page(GraphError::not_found(page_id)))?;
        let account = match req.path_id.as_deref() {
            None => page.id.clone(),
            Some(id) if id == page.id || page.instagram_business_account.as_deref() == Some(id) => id.to_owned(),
            Some(other) => return Err(on_page(GraphError::not_found(other))),
        };

        let body = &req.body;
        let recipient = body["recipient"]["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| body["recipient"]["id"].as_u64().map(|n| n.to_string()));
        let Some(recipient) = recipient.filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())) else {
            return Err(on_page(GraphError::invalid_parameter(
                "(#100) The parameter recipient is required and must be {id: <PSID or IGSID>}",
            )));
        };
        let instagram = page.instagram_business_account.as_deref() == Some(account.as_str())
            || self.instagram_users.contains(&recipient);
        let channel = if instagram { Channel::Instagram } else { Channel::Messenger };
        let scope = if instagram { "instagram_manage_messages" } else { "pages_messaging" };
        if !info.scopes.iter().any(|s| s == scope) {
            let code = if instagram { 200 } else { 230 };
            return Err(on_page(GraphError::permission(
                code,
                &format!("(#{code}) Requires {scope} permission to manage the object"),
            )));
        }
        let rate_account = if instagram {
            page.instagram_business_account.clone().unwrap_or(page.id.clone())
        } else {
            page.id.clone()
        };
        let usage = self.admit(&rate_account, channel).map_err(|(e, u)| (e, Some(page_id.clone()), Some(u)))?;
        let with_usage = |e: GraphError| (e, Some(page_id.clone()), Some(usage.clone()));

        let message = body.get("message").filter(|m| !m.is_null());
        let action = body.get("sender_action").and_then(Value::as_str);
        let text = match (message, action) {
            (Some(_), Some(_)) => {
                return Err(with_usage(GraphError::invalid_parameter(
                    "(#100) sender_action must be sent without message",
                )));
            }
            (None, None) => {
                return Err(with_usage(GraphError::invalid_parameter(
                    "(#100) Either message or sender_action must be provided",
                )));
            }
            (Some(m), None) => {
                let messaging_type = body.get("messaging_type").and_then(Value::as_str);
                match messaging_type {
                    Some("RESPONSE" | "UPDATE") => {}
                    Some("MESSAGE_TAG") if body.get("tag").and_then(Value::as_str).is_some() => {}
                    Some("MESSAGE_TAG") => {
                        return Err(with_usage(GraphError::invalid_parameter(
                            "(#100) tag is required with MESSAGE_TAG",
                        )));
                    }
                    _ => {
                        return Err(with_usage(GraphError::invalid_parameter(
                            "(#100) messaging_type must be one of RESPONSE, UPDATE, MESSAGE_TAG",
                        )));
                    }
                }
                let text = m.get("text").and_then(Value::as_str);
                if text.is_none() && m.get("attachment").is_none() {
                    return Err(with_usage(GraphError::invalid_parameter(
                        "(#100) message must have text or attachment",
                    )));
                }
                if let Some(t) = text {
                    // Messenger: "UTF-8, under 2000 characters"; Instagram: "1000 bytes or less".
                    let too_long = if instagram { t.len() > 1000 } else { t.chars().count() >= 2000 };
                    if t.is_empty() || too_long {
                        let limit = if instagram { "at most 1000 bytes" } else { "under 2000 characters" };
                        return Err(with_usage(GraphError::invalid_parameter(&format!(
                            "(#100) Param message[text] must be non-empty UTF-8 and {limit}"
                        ))));
                    }
                }
                text.map(str::to_owned)
            }
            (None, Some(a)) => {
                if !matches!(a, "typing_on" | "typing_off" | "mark_seen" | "react" | "unreact") {
                    return Err(with_usage(GraphError::invalid_parameter("(#100) Invalid sender_action")));
                }
                None
            }
        };
        match self.recipients.get(&recipient).copied().unwrap_or(RecipientState::Ok) {
            RecipientState::Ok => {}
            RecipientState::WindowClosed => return Err(with_usage(GraphError::outside_window())),
            RecipientState::Unavailable => return Err(with_usage(GraphError::unavailable_recipient())),
        }
        let sent = SentMessage {
            page_id: page.id.clone(),
            channel,
            account_id: account,
            recipient_id: recipient,
            text,
            sender_action: action.map(str::to_owned),
            messaging_type: body.get("messaging_type").and_then(Value::as_str).map(str::to_owned),
            message_id: random_token("m_", 40),
            at_ms: unix_now_ms(),
            at_us: crate::ids::unix_now_us(),
        };
        Ok((sent, usage))
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
