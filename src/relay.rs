//! The `relay` responder: POSTs each normalized event to the client's own bot and sends the replies it
//! returns, so any existing bot can plug in.
//!
//! Request: `POST {url}` with JSON `{"client": slug, "event": {…}}` and
//! `X-Switchboard-Signature-256: sha256=<hex HMAC-SHA256(client's relay secret, body)>`.
//! Answer: 2xx with `{"replies": ["text", …]}` (an empty list answers nothing).

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use switchboard_actors::{InboundEvent, Responder};

pub const SIGNATURE_HEADER: &str = "x-switchboard-signature-256";

pub struct RelayResponder {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
    client_slug: String,
}

#[derive(Deserialize)]
struct RelayAnswer {
    #[serde(default)]
    replies: Vec<String>,
}

impl RelayResponder {
    pub fn new(http: reqwest::Client, url: String, secret: SecretString, client_slug: &str) -> Self {
        Self { http, url, secret, client_slug: client_slug.to_owned() }
    }
}

/// `sha256=<hex>` of `body` under `secret`: what a relay bot checks.
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Responder for RelayResponder {
    async fn respond(&self, event: &InboundEvent) -> Result<Vec<String>, String> {
        let body = serde_json::to_vec(&serde_json::json!({ "client": self.client_slug, "event": event }))
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sign(&self.secret, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("relay bot unreachable: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("relay bot answered {status}"));
        }
        let answer: RelayAnswer =
            response.json().await.map_err(|e| format!("relay bot answer is not valid: {}", e.without_url()))?;
        Ok(answer.replies.into_iter().filter(|r| !r.trim().is_empty()).collect())
    }
}
