//! The Send API: every check Meta makes on a call (token, proof, page, recipient, permission, rate, body),
//! then the message is recorded.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::config::SimPage;

impl Sim {
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
}

impl State {
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

    fn send_checked(&mut self, req: &SendRequest) -> Result<(SentMessage, Usage), Refused> {
        let (info, page, account) = self.sender(req)?;
        let on_page = |e: GraphError| (e, Some(page.id.clone()), None);
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
        let usage = self.admit(&rate_account, channel).map_err(|(e, u)| (e, Some(page.id.clone()), Some(u)))?;
        let with_usage = |e: GraphError| (e, Some(page.id.clone()), Some(usage.clone()));
        let (text, action) = content(body, instagram).map_err(with_usage)?;
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
            sender_action: action,
            messaging_type: body.get("messaging_type").and_then(Value::as_str).map(str::to_owned),
            message_id: random_token("m_", 40),
            at_ms: unix_now_ms(),
            at_us: crate::ids::unix_now_us(),
        };
        Ok((sent, usage))
    }

    /// Who sends: a valid Page token (with a valid proof), its Page, and the account addressed (the Page, or
    /// its Instagram account).
    fn sender(&self, req: &SendRequest) -> Result<(TokenInfo, SimPage, String), Refused> {
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
        Ok((info, page, account))
    }
}

/// A refused call: Meta's error, the Page it was for (when known), and the usage to report (when it counted).
type Refused = (GraphError, Option<String>, Option<Usage>);

/// What a call sends: a message's text (none for an attachment) or a sender action, as Meta checks them.
fn content(body: &Value, instagram: bool) -> Result<(Option<String>, Option<String>), GraphError> {
    let message = body.get("message").filter(|m| !m.is_null());
    let action = body.get("sender_action").and_then(Value::as_str);
    match (message, action) {
        (Some(_), Some(_)) => Err(GraphError::invalid_parameter("(#100) sender_action must be sent without message")),
        (None, None) => Err(GraphError::invalid_parameter("(#100) Either message or sender_action must be provided")),
        (Some(m), None) => {
            match body.get("messaging_type").and_then(Value::as_str) {
                Some("RESPONSE" | "UPDATE") => {}
                Some("MESSAGE_TAG") if body.get("tag").and_then(Value::as_str).is_some() => {}
                Some("MESSAGE_TAG") => {
                    return Err(GraphError::invalid_parameter("(#100) tag is required with MESSAGE_TAG"));
                }
                _ => {
                    return Err(GraphError::invalid_parameter(
                        "(#100) messaging_type must be one of RESPONSE, UPDATE, MESSAGE_TAG",
                    ));
                }
            }
            let text = m.get("text").and_then(Value::as_str);
            if text.is_none() && m.get("attachment").is_none() {
                return Err(GraphError::invalid_parameter("(#100) message must have text or attachment"));
            }
            if let Some(t) = text {
                // Messenger: "UTF-8, under 2000 characters"; Instagram: "1000 bytes or less".
                let too_long = if instagram { t.len() > 1000 } else { t.chars().count() >= 2000 };
                if t.is_empty() || too_long {
                    let limit = if instagram { "at most 1000 bytes" } else { "under 2000 characters" };
                    return Err(GraphError::invalid_parameter(&format!(
                        "(#100) Param message[text] must be non-empty UTF-8 and {limit}"
                    )));
                }
            }
            Ok((text.map(str::to_owned), None))
        }
        (None, Some(a)) if matches!(a, "typing_on" | "typing_off" | "mark_seen" | "react" | "unreact") => {
            Ok((None, Some(a.to_owned())))
        }
        (None, Some(_)) => Err(GraphError::invalid_parameter("(#100) Invalid sender_action")),
    }
}
