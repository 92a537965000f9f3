//! The Conversations API (meta-platform.md §5.4): a Page's conversation with one person, and its messages
//! newest first, at most 2 calls a second per Page or Instagram account. The stand-in knows the messages it
//! accepted through the Send API, which is what a sender reads back to settle whether a reply was delivered.

use serde_json::{Value, json};

use super::*;

/// Meta's limit on Conversations API calls, per Page or Instagram account.
const CALLS_PER_SECOND: usize = 2;

impl Sim {
    /// `GET /{account-id}/conversations?platform=messenger|instagram&user_id=…`: the conversation with one
    /// person (none if the Page never wrote to them).
    pub fn conversations(&self, account: &str, token: &str, platform: &str, user: &str) -> Result<Value, GraphError> {
        let mut state = self.lock();
        state.conversation_call(token, account, platform)?;
        let found = state.messages.iter().any(|m| m.account_id == account && m.recipient_id == user);
        let data = if found { vec![json!({ "id": conversation_id(account, user) })] } else { Vec::new() };
        Ok(json!({ "data": data }))
    }

    /// `GET /{conversation-id}?fields=messages{id,created_time,from,to,message}`: its messages, newest first.
    pub fn conversation(&self, conversation: &str, token: &str) -> Result<Value, GraphError> {
        let (account, user) = parse_conversation_id(conversation).ok_or_else(|| GraphError::not_found(conversation))?;
        let mut state = self.lock();
        state.conversation_call(token, account, "")?;
        let mut messages: Vec<&SentMessage> =
            state.messages.iter().filter(|m| m.account_id == account && m.recipient_id == user).collect();
        messages.sort_by_key(|m| std::cmp::Reverse(m.at_us));
        let data: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "id": m.message_id,
                    "created_time": created_time(m.at_ms),
                    "from": { "id": account },
                    "to": { "data": [{ "id": user }] },
                    "message": m.text.clone().unwrap_or_default(),
                })
            })
            .collect();
        Ok(json!({ "id": conversation, "messages": { "data": data } }))
    }
}

impl State {
    /// A Conversations API call with `token` for `account`: a valid Page token of that Page (or of the Page
    /// its Instagram account belongs to), a known platform, and within 2 calls a second.
    fn conversation_call(&mut self, token: &str, account: &str, platform: &str) -> Result<(), GraphError> {
        let info = self.valid_token(token)?;
        let TokenKind::Page { page_id } = &info.kind else {
            return Err(GraphError::permission(
                210,
                "(#210) A page access token is required to request this resource.",
            ));
        };
        let page = self.config.page(page_id).ok_or_else(|| GraphError::not_found(page_id))?;
        if page.id != account && page.instagram_business_account.as_deref() != Some(account) {
            return Err(GraphError::not_found(account));
        }
        if !matches!(platform, "" | "messenger" | "instagram") {
            return Err(GraphError::invalid_parameter("(#100) platform must be one of messenger, instagram"));
        }
        self.counters.conversation_calls += 1;
        let now = Instant::now();
        let window = self.conversation_windows.entry(account.to_owned()).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            window.pop_front();
        }
        if window.len() >= CALLS_PER_SECOND {
            self.counters.conversation_violations += 1;
            return Err(GraphError::throttled(613));
        }
        window.push_back(now);
        Ok(())
    }
}

fn conversation_id(account: &str, user: &str) -> String {
    format!("t_{account}_{user}")
}

fn parse_conversation_id(id: &str) -> Option<(&str, &str)> {
    id.strip_prefix("t_")?.split_once('_')
}

/// Meta's timestamp form: `2026-11-30T08:00:00+0000`.
fn created_time(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_in_metas_form() {
        assert_eq!(created_time(0), "1970-01-01T00:00:00+0000");
        assert_eq!(created_time(1_764_489_600_000), "2025-11-30T08:00:00+0000");
        assert_eq!(parse_conversation_id("t_104711112233445_7001"), Some(("104711112233445", "7001")));
    }
}
