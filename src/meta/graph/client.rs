//! The Graph API client.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, RequestBuilder, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard_actors::{
    AccessToken, Channel, DeliveredMessage, GraphApi, GraphFailure, OutgoingMessage, PageId, SendOk,
};
use url::Url;

use super::usage::parse_usage;

/// Which `appsecret_proof` form to send. Meta documents both: the classic `HMAC(secret, token)` and the
/// time-stamped `HMAC(secret, token|time)` with `appsecret_time` (meta-platform.md §10). Configured as
/// `meta.appsecret_proof = "classic" | "timestamped"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProofMode {
    Classic,
    Timestamped,
}

/// One shared client (its connection pool is reused by every tenant).
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    version: String,
    app_id: String,
    app_secret: SecretString,
    proof: ProofMode,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base.as_str())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    pub fn new(
        base: Url,
        version: &str,
        app_id: &str,
        app_secret: SecretString,
        proof: ProofMode,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, base, version: version.to_owned(), app_id: app_id.to_owned(), app_secret, proof })
    }

    /// `{base}/{version}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base.as_str().trim_end_matches('/'), self.version, path.trim_start_matches('/'))
    }

    /// A request authenticated with `token` and its `appsecret_proof`.
    pub fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        let builder = self.http.request(method, self.url(path)).query(&[("access_token", token)]);
        match self.proof {
            ProofMode::Classic => builder.query(&[("appsecret_proof", self.proof_for(token, None))]),
            ProofMode::Timestamped => {
                let time = chrono::Utc::now().timestamp().to_string();
                builder.query(&[("appsecret_proof", self.proof_for(token, Some(&time))), ("appsecret_time", time)])
            }
        }
    }

    /// An unauthenticated request (the OAuth code exchange authenticates with client_secret instead).
    pub fn plain(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The app token (`{app-id}|{app-secret}`) for debug_token.
    pub fn app_token(&self) -> SecretString {
        SecretString::from(format!("{}|{}", self.app_id, self.app_secret.expose_secret()))
    }

    pub fn app_secret(&self) -> &SecretString {
        &self.app_secret
    }

    fn proof_for(&self, token: &str, time: Option<&str>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.app_secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(token.as_bytes());
        if let Some(t) = time {
            mac.update(b"|");
            mac.update(t.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Sends `request` and decodes a 2xx JSON answer, or Meta's error envelope into a `GraphFailure`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<(T, Option<switchboard_actors::Usage>), GraphFailure> {
        let response = request.send().await.map_err(transport_failure)?;
        let usage = parse_usage(response.headers());
        if !response.status().is_success() {
            return Err(failure(response, usage).await);
        }
        let value = response.json::<T>().await.map_err(|e| GraphFailure {
            http_status: Some(200),
            message: format!("unexpected answer from the Graph API: {}", e.without_url()),
            usage,
            ..GraphFailure::default()
        })?;
        Ok((value, usage))
    }
}

/// A request that got no answer. The URL (which holds the token) is removed from the error first.
fn transport_failure(err: reqwest::Error) -> GraphFailure {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    GraphFailure {
        http_status: None,
        message: format!("Graph API request {kind}: {}", err.without_url()),
        ..GraphFailure::default()
    }
}

async fn failure(response: Response, usage: Option<switchboard_actors::Usage>) -> GraphFailure {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = &body["error"];
    let code = error["code"].as_u64().and_then(|c| u32::try_from(c).ok());
    GraphFailure {
        http_status: Some(status),
        code,
        subcode: error["error_subcode"].as_u64().and_then(|c| u32::try_from(c).ok()),
        message: error["message"].as_str().unwrap_or("no error message").chars().take(300).collect(),
        usage,
    }
}

#[async_trait]
impl GraphApi for GraphClient {
    async fn send_message(&self, token: &AccessToken, message: &OutgoingMessage) -> Result<SendOk, GraphFailure> {
        let body = json!({
            "recipient": { "id": message.recipient },
            "messaging_type": "RESPONSE",
            "message": { "text": message.text },
        });
        // Messenger and Instagram (linked to the Page) both use the Page's endpoint and Page token; Meta
        // tells them apart by the recipient (PSID or IGSID).
        let request = self.request(Method::POST, &format!("{}/messages", message.page_id), token.expose()).json(&body);
        let (value, usage) = self.call::<Value>(request).await?;
        let message_id = value["message_id"].as_str().unwrap_or_default().to_owned();
        Ok(SendOk { message_id, usage })
    }

    async fn pass_thread_control(
        &self,
        token: &AccessToken,
        page: &PageId,
        recipient: &str,
        target_app_id: &str,
    ) -> Result<(), GraphFailure> {
        let body = json!({ "recipient": { "id": recipient }, "target_app_id": target_app_id,
            "metadata": "The customer asked for a person" });
        let request = self.request(Method::POST, &format!("{page}/pass_thread_control"), token.expose()).json(&body);
        self.call::<Value>(request).await.map(|_| ())
    }

    async fn conversation(
        &self,
        token: &AccessToken,
        page: &PageId,
        channel: Channel,
        recipient: &str,
    ) -> Result<Option<String>, GraphFailure> {
        let platform = match channel {
            Channel::Messenger => "messenger",
            Channel::Instagram => "instagram",
        };
        let find = self
            .request(Method::GET, &format!("{page}/conversations"), token.expose())
            .query(&[("platform", platform), ("user_id", recipient)]);
        let (found, _) = self.call::<Value>(find).await?;
        Ok(found["data"].get(0).and_then(|c| c["id"].as_str()).map(str::to_owned))
    }

    async fn sent_in(
        &self,
        token: &AccessToken,
        _page: &PageId,
        conversation: &str,
        recipient: &str,
    ) -> Result<Vec<DeliveredMessage>, GraphFailure> {
        let read = self
            .request(Method::GET, conversation, token.expose())
            .query(&[("fields", "messages.limit(100){id,created_time,from,message}")]);
        let (value, _) = self.call::<Value>(read).await?;
        let messages = value["messages"]["data"].as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(messages
            .iter()
            // The business's messages (from the Page, or on Instagram its account), not the person's.
            .filter(|m| m["from"]["id"].as_str().is_some_and(|from| from != recipient))
            .filter_map(|m| {
                Some(DeliveredMessage {
                    message_id: m["id"].as_str()?.to_owned(),
                    text: m["message"].as_str().unwrap_or_default().to_owned(),
                    created_unix: chrono::DateTime::parse_from_str(m["created_time"].as_str()?, "%Y-%m-%dT%H:%M:%S%z")
                        .ok()?
                        .timestamp(),
                })
            })
            .collect())
    }
}
