//! Meta's error envelope, `{"error": {message, type, code, error_subcode, fbtrace_id}}`, and the errors
//! the stand-in returns. Codes follow `meta-platform.md` §6; the messages paraphrase Meta's.

use serde::Serialize;
use serde_json::json;
use warp::http::StatusCode;

/// One Graph API error, ready to be sent.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GraphError {
    #[serde(skip)]
    pub status: u16,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_transient: Option<bool>,
}

impl GraphError {
    fn new(status: u16, kind: &'static str, code: u32, subcode: Option<u32>, message: &str) -> Self {
        Self { status, message: message.to_owned(), kind, code, error_subcode: subcode, is_transient: None }
    }

    /// 190 with a subcode: the token is dead (460 password changed, 458 app removed, 463 expired, 467 invalid).
    pub fn invalid_token(subcode: u32) -> Self {
        let message = match subcode {
            460 => {
                "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons."
            }
            458 => "Error validating access token: The user has not authorized application.",
            463 => "Error validating access token: Session has expired.",
            _ => "Invalid OAuth access token - Cannot parse access token",
        };
        Self::new(400, "OAuthException", 190, Some(subcode), message)
    }

    pub fn no_token() -> Self {
        Self::new(
            400,
            "OAuthException",
            2500,
            None,
            "An active access token must be used to query information about the current user.",
        )
    }

    pub fn bad_proof() -> Self {
        Self::new(400, "GraphMethodException", 100, None, "Invalid appsecret_proof provided in the API argument")
    }

    pub fn missing_proof() -> Self {
        Self::new(
            400,
            "GraphMethodException",
            100,
            None,
            "API calls from the server require an appsecret_proof argument",
        )
    }

    pub fn invalid_parameter(message: &str) -> Self {
        Self::new(400, "OAuthException", 100, None, message)
    }

    pub fn permission(code: u32, message: &str) -> Self {
        Self::new(403, "OAuthException", code, None, message)
    }

    pub fn outside_window() -> Self {
        Self::new(400, "OAuthException", 10, Some(2_018_278), "(#10) This message is sent outside of allowed window.")
    }

    pub fn unavailable_recipient() -> Self {
        Self::new(400, "OAuthException", 551, Some(1_545_041), "This person isn't available right now.")
    }

    /// A throttling error (4, 17, 32, 613, 80001–80006).
    pub fn throttled(code: u32) -> Self {
        let mut e = Self::new(
            400,
            "OAuthException",
            code,
            None,
            "(#80006) There have been too many messages sent to this Page. Please wait a while before trying again.",
        );
        if code != 80006 {
            e.message = format!("(#{code}) Calls to this api have exceeded the rate limit.");
        }
        e.is_transient = Some(true);
        e
    }

    /// 2: Meta's "temporary downtime, retry later", answered with a 500.
    pub fn transient() -> Self {
        let mut e = Self::new(
            500,
            "OAuthException",
            2,
            None,
            "An unexpected error has occurred. Please retry your request later.",
        );
        e.is_transient = Some(true);
        e
    }

    pub fn oauth(code: u32, subcode: Option<u32>, message: &str) -> Self {
        Self::new(400, "OAuthException", code, subcode, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            404,
            "GraphMethodException",
            100,
            Some(33),
            &format!(
                "Unsupported request - object with ID '{what}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"
            ),
        )
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    /// The JSON body Meta sends, with a fresh `fbtrace_id`.
    pub fn body(&self) -> serde_json::Value {
        let mut value = json!({ "error": self });
        value["error"]["fbtrace_id"] = json!(crate::ids::random_token("A", 11));
        value
    }
}
