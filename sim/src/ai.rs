//! The OpenAI-compatible chat completions stand-in: `POST /v1/chat/completions` (a client's `base_url` is
//! `http://127.0.0.1:PORT/v1`), answered deterministically from the client's knowledge in the system message
//! (`answer`), behind the optional API key and the fault switch the `/_sim/ai` control API sets. Shapes
//! follow `shared/ai-chat-completions.md`. It never calls a real model, and it keeps what it received in
//! `Sim` (`state/ai.rs`) for tests to read.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::AUTHORIZATION;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use crate::ids::unix_now;
use crate::reply::json_reply;
use crate::state::{AiFault, Sim};

mod answer;
mod error;
mod request;
#[cfg(test)]
mod tests;

use error::AiError;
use request::ChatRequest;

/// The marker the real service's model ends an answer with to ask for a hand-over to a person; the
/// stand-in's hand-over reply ends with it.
pub const HANDOVER_MARKER: &str = "[[handover]]";

/// The largest body accepted: a prompt carrying a client's whole knowledge fits many times over, while a
/// runaway client cannot make the stand-in buffer without bound. Larger bodies get a 413.
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// `POST /v1/chat/completions`. Every failure on this path, a wrong method or size included, is answered
/// with OpenAI's error envelope rather than the Graph API's.
pub(crate) fn routes(sim: Arc<Sim>) -> BoxedFilter<(Response,)> {
    let with_sim = warp::any().map(move || sim.clone());
    let call = warp::post()
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and(with_sim)
        .then(|headers: HeaderMap, body: bytes::Bytes, sim: Arc<Sim>| async move {
            chat_completion(&sim, &headers, &body).await
        })
        .recover(rejected)
        .unify();
    warp::path!("v1" / "chat" / "completions").and(call).boxed()
}

/// A refused call on this path (wrong method, body too large or without a length) as an OpenAI error.
async fn rejected(rejection: warp::Rejection) -> Result<Response, warp::Rejection> {
    let error = if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        AiError::MethodNotAllowed
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        AiError::TooLarge
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        AiError::LengthRequired
    } else {
        return Err(rejection);
    };
    Ok(error.into_response())
}

/// One call: recorded as it arrived, then answered or refused.
async fn chat_completion(sim: &Sim, headers: &HeaderMap, body: &[u8]) -> Response {
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Option<Value> = serde_json::from_slice(body).ok();
    sim.record_ai_call(body.clone().unwrap_or(Value::Null), authorization.clone());
    match answer_call(sim, authorization.as_deref(), body).await {
        Ok(completion) => json_reply(&completion, StatusCode::OK),
        Err(e) => e.into_response(),
    }
}

/// Verified (the key), parsed (the body), then the fault switch, then the answer. A call refused for its
/// key or body does not use up one of the switch's `times`.
async fn answer_call(sim: &Sim, authorization: Option<&str>, body: Option<Value>) -> Result<Value, AiError> {
    if !sim.ai_key_accepts(authorization.and_then(bearer)) {
        return Err(AiError::InvalidKey);
    }
    let request = ChatRequest::try_from(body)?;
    let switch = sim.take_ai_fault();
    match switch.mode {
        AiFault::RateLimited => Err(AiError::RateLimited),
        AiFault::Quota => Err(AiError::Quota),
        AiFault::ServerError => Err(AiError::Server),
        AiFault::StrictTokens if request.has_max_tokens => Err(AiError::MaxTokensUnsupported),
        AiFault::Empty => Ok(completion(sim, &request, None, "content_filter", true)),
        AiFault::NoUsage => Ok(completion(sim, &request, Some(answer::reply(&request.messages)), "stop", false)),
        AiFault::Slow => {
            tokio::time::sleep(Duration::from_millis(switch.slow_ms)).await;
            Ok(completion(sim, &request, Some(answer::reply(&request.messages)), "stop", true))
        }
        AiFault::None | AiFault::StrictTokens => {
            Ok(completion(sim, &request, Some(answer::reply(&request.messages)), "stop", true))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `chat.completion` body: one choice with `content` (null when withheld) and, unless left out, usage.
fn completion(sim: &Sim, request: &ChatRequest, content: Option<String>, finish_reason: &str, usage: bool) -> Value {
    let completion_chars = content.as_deref().map_or(0, |c| c.chars().count());
    let mut body = json!({
        "id": format!("chatcmpl-sim-{}", sim.next_completion()),
        "object": "chat.completion",
        "created": unix_now(),
        "model": request.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": finish_reason,
        }],
    });
    if usage {
        body["usage"] = token_usage(request.prompt_chars(), completion_chars);
    }
    body
}

/// Token counts estimated as a quarter of the characters, rounded up, at least 1 each.
fn token_usage(prompt_chars: usize, completion_chars: usize) -> Value {
    let tokens = |chars: usize| chars.div_ceil(4).max(1);
    let (prompt, completion) = (tokens(prompt_chars), tokens(completion_chars));
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}
