//! OpenAI's error envelope, `{"error": {message, type, param, code}}`, and every error the chat completions
//! stand-in answers with. The HTTP status of each is decided here and nowhere else. No message ever holds
//! the API key a caller sent.

use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::http::header::RETRY_AFTER;
use warp::reply::Response;

use crate::reply::json_reply;

/// One chat completions error, ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AiError {
    #[error(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
    )]
    NotJson,
    #[error("Invalid request body: {0}")]
    BadBody(String),
    #[error("You must provide a model parameter.")]
    MissingModel,
    #[error("Missing required parameter: 'messages'.")]
    MissingMessages,
    #[error(
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."
    )]
    EmptyMessages,
    #[error("Incorrect API key provided")]
    InvalidKey,
    #[error("Rate limit reached for requests. Please try again in 1s.")]
    RateLimited,
    #[error("You exceeded your current quota, please check your plan and billing details.")]
    Quota,
    #[error("The server had an error while processing your request. Sorry about that!")]
    Server,
    #[error(
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
    )]
    MaxTokensUnsupported,
    #[error("Method not allowed: only POST is supported at this path.")]
    MethodNotAllowed,
    #[error("The request body is too large.")]
    TooLarge,
    #[error("A Content-Length header is required.")]
    LengthRequired,
}

impl AiError {
    /// The HTTP status OpenAI answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidKey => StatusCode::UNAUTHORIZED,
            Self::RateLimited | Self::Quota => StatusCode::TOO_MANY_REQUESTS,
            Self::Server => StatusCode::INTERNAL_SERVER_ERROR,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The error's `type`.
    fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited => "requests",
            Self::Quota => "insufficient_quota",
            Self::Server => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The error's `code`, the field a client branches on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson => "invalid_json",
            Self::BadBody(_) => "invalid_type",
            Self::MissingModel | Self::MissingMessages => "missing_required_parameter",
            Self::EmptyMessages => "empty_array",
            Self::InvalidKey => "invalid_api_key",
            Self::RateLimited => "rate_limit_exceeded",
            Self::Quota => "insufficient_quota",
            Self::Server => "server_error",
            Self::MaxTokensUnsupported => "unsupported_parameter",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooLarge => "request_too_large",
            Self::LengthRequired => "length_required",
        }
    }

    /// The request parameter the error is about, if one.
    fn param(&self) -> Option<&'static str> {
        match self {
            Self::MissingModel => Some("model"),
            Self::MissingMessages | Self::EmptyMessages => Some("messages"),
            Self::MaxTokensUnsupported => Some("max_tokens"),
            _ => None,
        }
    }

    /// The JSON body OpenAI sends.
    pub fn body(&self) -> Value {
        json!({ "error": {
            "message": self.to_string(),
            "type": self.kind(),
            "param": self.param(),
            "code": self.code(),
        }})
    }

    /// The response: the body with its status, and `Retry-After: 1` on a rate limit.
    pub fn into_response(self) -> Response {
        let mut response = json_reply(&self.body(), self.status());
        if self == Self::RateLimited {
            response.headers_mut().insert(RETRY_AFTER, warp::http::HeaderValue::from_static("1"));
        }
        response
    }
}
