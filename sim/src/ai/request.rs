//! A chat completion request as the stand-in reads it: the JSON body parsed into a `ChatRequest`, or the
//! `AiError` (400) OpenAI answers a body with. Past this point a request always has a model and at least
//! one message.

use serde::Deserialize;
use serde_json::Value;

use super::error::AiError;

/// A request the stand-in can answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatRequest {
    /// The model asked for, echoed in the answer.
    pub model: String,
    /// The conversation, oldest first; never empty.
    pub messages: Vec<ChatMessage>,
    /// Whether the body named `max_tokens` (the `strict_tokens` fault rejects it).
    pub has_max_tokens: bool,
}

/// One message of the conversation, with its content flattened to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The body as sent. Unknown fields (`stream`, `tools`, …) are ignored, as self-hosted servers do.
#[derive(Deserialize)]
struct WireRequest {
    model: Option<String>,
    messages: Option<Vec<WireMessage>>,
    #[expect(dead_code, reason = "read only so that a wrongly typed value is rejected")]
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    #[expect(dead_code, reason = "read only so that a wrongly typed value is rejected")]
    temperature: Option<f64>,
    #[expect(dead_code, reason = "read only so that a wrongly typed value is rejected")]
    user: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<WireContent>,
}

/// `content` is a string, a list of parts (`{"type": "text", "text": …}`), or null (tool calls).
#[derive(Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Deserialize)]
struct WirePart {
    #[serde(default)]
    text: Option<String>,
}

impl WireContent {
    /// The text of the content; text parts are joined by newlines, other parts (images) are skipped.
    fn into_text(self) -> String {
        match self {
            Self::Text(text) => text,
            Self::Parts(parts) => parts.into_iter().filter_map(|p| p.text).collect::<Vec<_>>().join("\n"),
        }
    }
}

impl TryFrom<Option<Value>> for ChatRequest {
    type Error = AiError;

    /// `None` is a body that was not JSON at all.
    fn try_from(body: Option<Value>) -> Result<Self, AiError> {
        let body = body.ok_or(AiError::NotJson)?;
        let wire: WireRequest = serde_json::from_value(body).map_err(|e| AiError::BadBody(e.to_string()))?;
        let model = wire.model.filter(|m| !m.is_empty()).ok_or(AiError::MissingModel)?;
        let messages = wire.messages.ok_or(AiError::MissingMessages)?;
        if messages.is_empty() {
            return Err(AiError::EmptyMessages);
        }
        let messages = messages
            .into_iter()
            .map(|m| ChatMessage { role: m.role, content: m.content.map(WireContent::into_text).unwrap_or_default() })
            .collect();
        Ok(Self { model, messages, has_max_tokens: wire.max_tokens.is_some() })
    }
}

impl ChatRequest {
    /// Characters in all messages' contents: the base of the prompt token estimate.
    pub fn prompt_chars(&self) -> usize {
        self.messages.iter().map(|m| m.content.chars().count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<ChatRequest, AiError> {
        ChatRequest::try_from(Some(body))
    }

    #[test]
    fn a_body_without_model_or_messages_is_rejected() {
        let message = json!([{ "role": "user", "content": "hi" }]);
        assert!(matches!(parse(json!({ "messages": message })), Err(AiError::MissingModel)));
        assert!(matches!(parse(json!({ "model": "", "messages": message })), Err(AiError::MissingModel)));
        assert!(matches!(parse(json!({ "model": "m" })), Err(AiError::MissingMessages)));
        assert!(matches!(parse(json!({ "model": "m", "messages": [] })), Err(AiError::EmptyMessages)));
        assert!(matches!(parse(json!(["not", "an", "object"])), Err(AiError::BadBody(_))));
        assert!(matches!(parse(json!({ "model": "m", "messages": "hi" })), Err(AiError::BadBody(_))));
        assert!(matches!(ChatRequest::try_from(None), Err(AiError::NotJson)));
    }

    #[test]
    fn wrongly_typed_optional_fields_are_rejected() {
        let base = json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }] });
        for (field, value) in
            [("max_completion_tokens", json!("ten")), ("temperature", json!("hot")), ("user", json!(7))]
        {
            let mut body = base.clone();
            body[field] = value;
            assert!(matches!(parse(body), Err(AiError::BadBody(_))), "{field}");
        }
    }

    #[test]
    fn content_parts_and_null_content_are_read_as_text() {
        let request = parse(json!({ "model": "m", "max_tokens": 5, "messages": [
            { "role": "user", "content": [{ "type": "text", "text": "one" }, { "type": "image_url" }, { "type": "text", "text": "two" }] },
            { "role": "assistant", "content": null },
        ] }))
        .unwrap();
        assert_eq!(request.messages[0].content, "one\ntwo");
        assert_eq!(request.messages[1].content, "");
        assert!(request.has_max_tokens);
        assert_eq!(request.prompt_chars(), 7);
    }
}
