//! The OpenAI-compatible chat completions API, as AI answers use it: one non-streamed call per answer, with
//! what servers differ on handled (the token cap's two names, a missing `usage`, a null `content`) and every
//! error mapped to a kind. Nothing here logs a prompt, an answer, a server's error message or the key.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::AiSettings;

/// The most bytes of a model server's answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// One message of a conversation with the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: String) -> Self {
        Self { role: "system", content }
    }
    pub fn user(content: String) -> Self {
        Self { role: "user", content }
    }
    pub fn assistant(content: String) -> Self {
        Self { role: "assistant", content }
    }
}

/// Tokens a call used, as the server reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub content: String,
    /// `length`: cut at the token cap.
    pub finish_reason: Option<String>,
    /// `None` when the server did not report it (a gateway, an old server).
    pub usage: Option<TokenUsage>,
}

/// Why a call gave no usable answer. Its `Display` is for people and the event's outcome: never the
/// server's message (it can echo the prompt), never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("the model did not answer within {0} s")]
    Timeout(u64),
    #[error("the model server is rate limiting Switchboard")]
    RateLimited,
    #[error("the model account has no quota left (insufficient_quota)")]
    Quota,
    #[error("the model server refused the API key (HTTP {0})")]
    Auth(u16),
    #[error("the model server refused the request (HTTP 400{})", .0.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    BadRequest(Option<String>),
    #[error("the model server does not know this model or path (HTTP 404)")]
    NotFound,
    #[error("the model server failed (HTTP {0})")]
    Server(u16),
    #[error("the model server is unreachable")]
    Transport,
    #[error("the model gave no usable answer ({0})")]
    Unusable(String),
    #[error("the model server asked to wait (rate limited a moment ago)")]
    CoolingDown,
}

impl ModelError {
    /// The metric label: a fixed set.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::RateLimited => "rate_limited",
            Self::Quota => "quota",
            Self::Auth(_) => "auth",
            Self::BadRequest(_) => "bad_request",
            Self::NotFound => "not_found",
            Self::Server(_) => "server_error",
            Self::Transport => "unreachable",
            Self::Unusable(_) => "unusable",
            Self::CoolingDown => "cooling_down",
        }
    }

    /// Whether the call may have been billed although no answer came.
    pub fn may_have_used_tokens(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Unusable(_))
    }

    /// An operator's problem (the key, the account, the model name), not a customer's: worth a WARN.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Auth(_) | Self::Quota | Self::NotFound | Self::BadRequest(_))
    }
}

/// The chat completions endpoint of one model server.
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    model: String,
    key: Option<SecretString>,
    max_answer_tokens: u32,
    /// Whether the token cap goes as `max_completion_tokens` (else `max_tokens`); flipped once by a 400 that
    /// names the parameter.
    completion_tokens_name: AtomicBool,
    /// A 429 said to wait: no call until then.
    cooldown_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient").field("url", &self.url).field("model", &self.model).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    stream: bool,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

/// `{"error": {"code": …, "param": …, "message": …}}`: only the code and the parameter are used.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ErrorDetail {
    /// The error code, kept to `[a-z0-9_]` and 64 characters (it goes into an event's outcome and the portal).
    fn code(&self) -> Option<String> {
        let raw = match &self.code {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return None,
        };
        let code: String = raw
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        (!code.is_empty()).then_some(code)
    }

    /// The 400 names the token cap's parameter: the server wants the other name.
    fn names_token_parameter(&self) -> bool {
        let named = |text: &str| text.contains("max_tokens") || text.contains("max_completion_tokens");
        self.param.as_deref().is_some_and(named) || self.message.as_deref().is_some_and(named)
    }
}

/// What one attempt came to.
enum Attempt {
    Answer(Completion),
    Retry(ModelError),
    SwapTokenName(ModelError),
    Fail(ModelError),
}

impl ChatClient {
    pub fn new(settings: &AiSettings) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout)
            .build()
            .expect("a plain HTTP client builds");
        Self {
            http,
            url: format!("{}/chat/completions", settings.base_url.as_str().trim_end_matches('/')),
            model: settings.model.clone(),
            key: settings.api_key.clone(),
            max_answer_tokens: settings.max_answer_tokens,
            completion_tokens_name: AtomicBool::new(settings.completion_tokens_name),
            cooldown_until: Mutex::new(None),
        }
    }

    /// The most tokens an answer may take.
    pub fn max_answer_tokens(&self) -> u32 {
        self.max_answer_tokens
    }

    /// Whether a 429 asked to wait and the wait is not over.
    pub fn cooling_down(&self) -> bool {
        let until = *self.cooldown_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_some_and(|at| Instant::now() < at)
    }

    /// One answer to `messages`, by `deadline`: a server error or a lost connection is tried once more if time
    /// is left, and a 400 naming the token cap is tried once with its other name; nothing else is retried.
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        user: Option<&str>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Completion, ModelError> {
        if self.cooling_down() {
            return Err(ModelError::CoolingDown);
        }
        let (mut retried, mut swapped) = (false, false);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ModelError::Timeout(timeout.as_secs()));
            }
            let attempt = match tokio::time::timeout(left, self.attempt(messages, user, left)).await {
                Ok(attempt) => attempt,
                Err(_) => Attempt::Fail(ModelError::Timeout(timeout.as_secs())),
            };
            match attempt {
                Attempt::Answer(completion) => return Ok(completion),
                Attempt::Retry(_) if !retried => retried = true,
                Attempt::SwapTokenName(_) if !swapped => {
                    swapped = true;
                    self.completion_tokens_name.fetch_xor(true, Ordering::Relaxed);
                }
                Attempt::Retry(problem) | Attempt::SwapTokenName(problem) | Attempt::Fail(problem) => {
                    return Err(problem);
                }
            }
        }
    }

    async fn attempt(&self, messages: &[ChatMessage], user: Option<&str>, left: Duration) -> Attempt {
        let cap = Some(self.max_answer_tokens);
        let new_name = self.completion_tokens_name.load(Ordering::Relaxed);
        let body = Request {
            model: &self.model,
            messages,
            max_completion_tokens: cap.filter(|_| new_name),
            max_tokens: cap.filter(|_| !new_name),
            user,
            stream: false,
        };
        let mut request = self.http.post(&self.url).timeout(left).json(&body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose_secret());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Attempt::Fail(ModelError::Timeout(left.as_secs())),
            Err(_) => return Attempt::Retry(ModelError::Transport),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_ANSWER_BYTES => bytes.extend_from_slice(&chunk),
                Ok(Some(_)) => return Attempt::Fail(ModelError::Unusable("the answer is too large".to_owned())),
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Attempt::Fail(ModelError::Timeout(left.as_secs())),
                // The server answered and may have billed the call: not tried again.
                Err(_) => return Attempt::Fail(ModelError::Unusable("the answer was cut off".to_owned())),
            }
        }
        match status {
            200..=299 => parse_answer(&bytes),
            429 => {
                let detail = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_default().error.unwrap_or_default();
                if detail.code().as_deref() == Some("insufficient_quota") {
                    return Attempt::Fail(ModelError::Quota);
                }
                let wait = retry_after.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(300));
                *self.cooldown_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Instant::now() + wait);
                Attempt::Fail(ModelError::RateLimited)
            }
            400 => {
                let detail = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_default().error.unwrap_or_default();
                let problem = ModelError::BadRequest(detail.code());
                if detail.names_token_parameter() { Attempt::SwapTokenName(problem) } else { Attempt::Fail(problem) }
            }
            401 | 403 => Attempt::Fail(ModelError::Auth(status)),
            404 => Attempt::Fail(ModelError::NotFound),
            500..=599 => Attempt::Retry(ModelError::Server(status)),
            other => Attempt::Fail(ModelError::Server(other)),
        }
    }
}

/// A 200's body: the first choice's text (null or blank is no answer), its finish reason and the usage.
fn parse_answer(bytes: &[u8]) -> Attempt {
    let Ok(response) = serde_json::from_slice::<Response>(bytes) else {
        return Attempt::Fail(ModelError::Unusable("the answer is not a chat completion".to_owned()));
    };
    let Some(choice) = response.choices.into_iter().next() else {
        return Attempt::Fail(ModelError::Unusable("the answer has no choices".to_owned()));
    };
    let content = match choice.message.and_then(|m| m.content) {
        Some(serde_json::Value::String(text)) => text,
        // Content as a list of parts: the text parts, joined.
        Some(serde_json::Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    };
    if content.trim().is_empty() {
        let why = choice.finish_reason.as_deref().unwrap_or("none");
        return Attempt::Fail(ModelError::Unusable(format!("empty answer, finish_reason {why}")));
    }
    let usage = response.usage.and_then(|u| match (u.prompt_tokens, u.completion_tokens, u.total_tokens) {
        (Some(prompt), Some(completion), _) => Some(TokenUsage { prompt, completion }),
        (_, _, Some(total)) => Some(TokenUsage { prompt: total, completion: 0 }),
        _ => None,
    });
    Attempt::Answer(Completion { content, finish_reason: choice.finish_reason, usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Result<Completion, ModelError> {
        match parse_answer(json.as_bytes()) {
            Attempt::Answer(c) => Ok(c),
            Attempt::Fail(e) | Attempt::Retry(e) | Attempt::SwapTokenName(e) => Err(e),
        }
    }

    #[test]
    fn a_null_or_blank_content_is_no_answer_and_a_missing_usage_is_none() {
        let filtered =
            r#"{"choices":[{"message":{"role":"assistant","content":null},"finish_reason":"content_filter"}]}"#;
        assert!(matches!(answer(filtered), Err(ModelError::Unusable(why)) if why.contains("content_filter")));
        assert!(answer(r#"{"choices":[{"message":{"content":"  "}}]}"#).is_err());
        assert!(answer(r#"{"choices":[]}"#).is_err());
        assert!(answer("not json").is_err());
        let plain = answer(r#"{"choices":[{"message":{"content":"Open 9 to 5."},"finish_reason":"stop"}]}"#).unwrap();
        assert_eq!((plain.content.as_str(), plain.usage), ("Open 9 to 5.", None));
        let parts = answer(
            r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}],
                "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        )
        .unwrap();
        assert_eq!((parts.content.as_str(), parts.usage), ("ab", Some(TokenUsage { prompt: 3, completion: 2 })));
    }

    #[test]
    fn no_error_description_quotes_the_servers_message() {
        for e in [ModelError::BadRequest(Some("context_length_exceeded".into())), ModelError::Auth(401)] {
            assert!(!e.to_string().contains("sk-"), "{e}");
        }
        assert_eq!(ModelError::BadRequest(None).to_string(), "the model server refused the request (HTTP 400)");
    }
}
