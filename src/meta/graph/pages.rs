//! The Graph calls of onboarding and token health: the OAuth code exchange, the long-lived token,
//! debug_token, the user's Pages and their Instagram accounts, and Page webhook subscriptions.

use reqwest::Method;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use serde_json::Value;
use switchboard_actors::{AccessToken, GraphFailure};

use super::GraphClient;

/// What `debug_token` says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub is_valid: bool,
    /// The app-scoped id of the user the token belongs to.
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    /// Unix seconds; `None` when Meta says 0 (never).
    pub expires_at: Option<i64>,
    /// Why it is invalid, when it is (e.g. `190/460: …`).
    pub problem: Option<String>,
}

/// A Page the user manages, with its Page token.
#[derive(Debug)]
pub struct PageAccount {
    pub id: String,
    pub name: String,
    pub token: AccessToken,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// The fields Switchboard subscribes each Page to.
/// `message_echoes` tells a person's answer in the Page Inbox from the bot's; `messaging_handovers` and `standby`
/// tell who has the conversation (see "A person can take over").
pub const PAGE_FIELDS: &str = "messages,messaging_postbacks,messaging_optins,message_reactions,messaging_referrals,\
                               message_echoes,messaging_handovers,standby";

impl GraphClient {
    /// `GET /oauth/access_token?code=…`: the (short-lived) user token. Single-shot: never retried.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<(AccessToken, Option<i64>), GraphFailure> {
        let request = self.plain(Method::GET, "oauth/access_token").query(&[
            ("client_id", self.app_id()),
            ("redirect_uri", redirect_uri),
            ("client_secret", self.app_secret().expose_secret()),
            ("code", code),
        ]);
        let (answer, _) = self.call::<TokenAnswer>(request).await?;
        Ok((AccessToken::new(answer.access_token), answer.expires_in))
    }

    /// `grant_type=fb_exchange_token`: the long-lived (about 60 days) user token.
    pub async fn long_lived(&self, user_token: &AccessToken) -> Result<(AccessToken, Option<i64>), GraphFailure> {
        let request = self.plain(Method::GET, "oauth/access_token").query(&[
            ("grant_type", "fb_exchange_token"),
            ("client_id", self.app_id()),
            ("client_secret", self.app_secret().expose_secret()),
            ("fb_exchange_token", user_token.expose()),
        ]);
        let (answer, _) = self.call::<TokenAnswer>(request).await?;
        Ok((AccessToken::new(answer.access_token), answer.expires_in))
    }

    /// `GET /debug_token` with the app token.
    pub async fn debug_token(&self, token: &AccessToken) -> Result<TokenInfo, GraphFailure> {
        let app_token = self.app_token();
        let request = self
            .plain(Method::GET, "debug_token")
            .query(&[("input_token", token.expose()), ("access_token", app_token.expose_secret())]);
        let (value, _) = self.call::<Value>(request).await?;
        let data = &value["data"];
        let problem = data.get("error").map(|e| {
            let code = e["code"].as_u64().unwrap_or_default();
            let sub = e["subcode"].as_u64().map(|s| format!("/{s}")).unwrap_or_default();
            format!("{code}{sub}: {}", e["message"].as_str().unwrap_or("invalid token"))
        });
        Ok(TokenInfo {
            is_valid: data["is_valid"].as_bool().unwrap_or(false),
            user_id: data["user_id"].as_str().map(str::to_owned),
            scopes: strings(&data["scopes"]),
            expires_at: data["expires_at"].as_i64().filter(|t| *t > 0),
            problem,
        })
    }

    /// `GET /me/permissions`: (granted, declined).
    pub async fn permissions(&self, user_token: &AccessToken) -> Result<(Vec<String>, Vec<String>), GraphFailure> {
        let (value, _) = self.call::<Value>(self.request(Method::GET, "me/permissions", user_token.expose())).await?;
        let mut granted = Vec::new();
        let mut declined = Vec::new();
        for p in value["data"].as_array().into_iter().flatten() {
            let name = p["permission"].as_str().unwrap_or_default().to_owned();
            if p["status"] == "granted" { granted.push(name) } else { declined.push(name) }
        }
        Ok((granted, declined))
    }

    /// `GET /me/accounts`, every page of results. The cursor is followed by rebuilding the request, never
    /// by fetching the `next` URL Meta sends.
    pub async fn accounts(&self, user_token: &AccessToken) -> Result<Vec<PageAccount>, GraphFailure> {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..100 {
            let mut request = self
                .request(Method::GET, "me/accounts", user_token.expose())
                .query(&[("fields", "id,name,access_token,tasks"), ("limit", "100")]);
            if let Some(cursor) = &after {
                request = request.query(&[("after", cursor)]);
            }
            let (value, _) = self.call::<Value>(request).await?;
            for p in value["data"].as_array().into_iter().flatten() {
                let (Some(id), Some(token)) = (p["id"].as_str(), p["access_token"].as_str()) else { continue };
                pages.push(PageAccount {
                    id: id.to_owned(),
                    name: p["name"].as_str().unwrap_or_default().to_owned(),
                    token: AccessToken::new(token.to_owned()),
                });
            }
            if value["paging"].get("next").is_none() {
                break;
            }
            match value["paging"]["cursors"]["after"].as_str() {
                Some(cursor) => after = Some(cursor.to_owned()),
                None => break,
            }
        }
        Ok(pages)
    }

    /// The Instagram professional account linked to a Page, if any.
    pub async fn instagram_account(
        &self,
        page_id: &str,
        user_token: &AccessToken,
    ) -> Result<Option<String>, GraphFailure> {
        let request =
            self.request(Method::GET, page_id, user_token.expose()).query(&[("fields", "instagram_business_account")]);
        let (value, _) = self.call::<Value>(request).await?;
        Ok(value["instagram_business_account"]["id"].as_str().map(str::to_owned))
    }

    /// Subscribes the app to the Page's webhook fields.
    pub async fn subscribe(&self, page_id: &str, page_token: &AccessToken) -> Result<(), GraphFailure> {
        let request = self
            .request(Method::POST, &format!("{page_id}/subscribed_apps"), page_token.expose())
            .query(&[("subscribed_fields", PAGE_FIELDS)]);
        self.call::<Value>(request).await.map(|_| ())
    }

    /// Unsubscribes the app from the Page.
    pub async fn unsubscribe(&self, page_id: &str, page_token: &AccessToken) -> Result<(), GraphFailure> {
        let request = self.request(Method::DELETE, &format!("{page_id}/subscribed_apps"), page_token.expose());
        self.call::<Value>(request).await.map(|_| ())
    }

    /// Takes the conversation with `recipient` back from whichever app has it (the Page Inbox after a handover)
    /// through the Handover Protocol, so the customer's messages reach this app again, not as `standby`.
    pub async fn take_thread_control(
        &self,
        page_id: &str,
        page_token: &AccessToken,
        recipient: &str,
    ) -> Result<(), GraphFailure> {
        let body = serde_json::json!({ "recipient": { "id": recipient },
            "metadata": "Handed back to the bot in Switchboard" });
        let request =
            self.request(Method::POST, &format!("{page_id}/take_thread_control"), page_token.expose()).json(&body);
        self.call::<Value>(request).await.map(|_| ())
    }

    /// Whether this app is subscribed to the Page's `messages` field.
    pub async fn is_subscribed(&self, page_id: &str, page_token: &AccessToken) -> Result<bool, GraphFailure> {
        let request = self.request(Method::GET, &format!("{page_id}/subscribed_apps"), page_token.expose());
        let (value, _) = self.call::<Value>(request).await?;
        Ok(value["data"].as_array().into_iter().flatten().any(|app| {
            app["id"].as_str() == Some(self.app_id())
                && strings(&app["subscribed_fields"]).iter().any(|f| f == "messages")
        }))
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}
