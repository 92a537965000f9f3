//! Client onboarding through Facebook Login, disconnects, Meta's deauthorize and data-deletion callbacks,
//! and token health.
//!
//! `begin` creates a state (256 random bits; only its SHA-256 is stored) and the dialog URL. `finish`
//! consumes the state atomically, exchanges the code for a long-lived token, checks the granted
//! permissions, and for each Page: seals its token (AAD = page id), upserts the integration, subscribes the
//! Page to the app's webhook fields, audits, and tells the engine so the new token is used from the next
//! message on. No token ever appears in a URL this module builds, a log line or an outcome.

mod links;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration as ChronoDuration;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchboard_actors::{AccessToken, GraphFailure, Router};
use url::Url;

pub use links::{LinkError, OnboardLinks};

use crate::config::{OAuthSettings, Settings};
use crate::domain::PageId;
use crate::meta::graph::GraphClient;
use crate::meta::signed_request::{self, SignedRequestError};
use crate::secrets::vault::KeyRing;
use crate::store::{
    AuditEntry, CallbackClaim, DeletionRequest, IntegrationStatus, NewIntegration, NewOAuthState, RevokeIf,
    StateRejected, Store, StoreError,
};

/// What a callback did, stored for the result page (never a token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `connected`, `cancelled`, `missing_permissions` or `failed`.
    pub kind: String,
    pub client_slug: String,
    #[serde(default)]
    pub connected: Vec<ConnectedPage>,
    #[serde(default)]
    pub refused: Vec<RefusedPage>,
    /// Permissions declined that Switchboard needs.
    #[serde(default)]
    pub missing: Vec<String>,
    /// A plain-words explanation when something went wrong.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedPage {
    pub id: String,
    pub name: String,
    pub instagram: Option<String>,
    /// Set when the page was stored but something about it needs attention (e.g. not subscribed).
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedPage {
    pub id: String,
    pub name: String,
    pub reason: String,
}

/// The callback's query string.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_reason: Option<String>,
    pub error_description: Option<String>,
}

/// Why a callback could not even start.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("this sign-in link is missing its state; start again from the portal")]
    MissingState,
    #[error("{}", match .0 {
        StateRejected::Unknown => "this sign-in attempt is not known to us; start again from the portal",
        StateRejected::Expired => "this sign-in attempt took too long and expired; start again from the portal",
        StateRejected::AlreadyUsed => "this sign-in attempt was already used; start again from the portal",
        StateRejected::OtherBrowser => "this Facebook sign-in was started in another browser (or this browser's \
            cookies were cleared), so nothing was connected; open the link you were sent, or the portal, in this \
            browser and connect again from there",
    })]
    State(StateRejected),
    #[error("storage is unavailable: {0}")]
    Store(#[from] StoreError),
}

/// Why a Meta callback (`signed_request`) was not handled.
#[derive(Debug, thiserror::Error)]
pub enum MetaCallbackError {
    #[error("{0}")]
    Request(#[from] SignedRequestError),
    #[error("storage is unavailable: {0}")]
    Store(#[from] StoreError),
}

/// A flow started in a browser: where to send it, and the value its cookie must hold for the callback.
#[derive(Debug, Clone)]
pub struct Begun {
    pub dialog: String,
    pub browser: String,
}

/// The cookie that binds a Facebook Login to the browser that started it (`__Host-` prefixed on https).
pub const BROWSER_COOKIE: &str = "sb_oauth";
pub const BROWSER_COOKIE_SECURE: &str = "__Host-sb_oauth";

/// What a token check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Healthy,
    Resubscribed,
    NeedsReauth(String),
    Skipped(String),
}

/// Everything onboarding needs.
#[derive(Clone)]
pub struct Onboarding {
    store: Store,
    keys: Arc<KeyRing>,
    graph: Arc<GraphClient>,
    router: Option<Router>,
    public_url: Url,
    dialog_url: Url,
    api_version: String,
    oauth: OAuthSettings,
    links: OnboardLinks,
    app_secrets: Vec<secrecy::SecretString>,
}

impl Onboarding {
    /// `router` is `None` in CLI processes, which have no engine (the server's reconcile picks changes up).
    pub fn new(
        settings: &Settings,
        store: Store,
        keys: Arc<KeyRing>,
        graph: Arc<GraphClient>,
        router: Option<Router>,
    ) -> Self {
        Self {
            links: OnboardLinks::new(graph.app_secret()),
            store,
            keys,
            graph,
            router,
            public_url: settings.server.public_url.clone(),
            dialog_url: settings.meta.oauth_dialog_url.clone(),
            api_version: settings.meta.api_version.clone(),
            oauth: settings.oauth.clone(),
            app_secrets: settings.meta.app_secrets.clone(),
        }
    }

    /// The app secrets a `signed_request` may be signed with.
    pub fn app_secrets(&self) -> &[secrecy::SecretString] {
        &self.app_secrets
    }

    pub fn links(&self) -> &OnboardLinks {
        &self.links
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `{public_url}/api/auth/facebook/callback`: must be registered with the Meta app.
    pub fn redirect_uri(&self) -> String {
        format!("{}/api/auth/facebook/callback", self.public_url.as_str().trim_end_matches('/'))
    }

    /// An onboarding link for a client, valid for `ttl`.
    pub fn onboard_link(&self, slug: &crate::domain::ClientSlug, ttl: std::time::Duration) -> String {
        let expires = crate::clock::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        self.onboard_link_until(slug, expires)
    }

    /// An onboarding link for a client, valid until `expires` (unix seconds).
    pub fn onboard_link_until(&self, slug: &crate::domain::ClientSlug, expires: i64) -> String {
        format!(
            "{}/api/auth/facebook/start?{}",
            self.public_url.as_str().trim_end_matches('/'),
            self.links.sign(slug, expires)
        )
    }

    /// The name of the browser-binding cookie for this deployment.
    pub fn browser_cookie_name(&self) -> &'static str {
        if self.public_url.scheme() == "https" { BROWSER_COOKIE_SECURE } else { BROWSER_COOKIE }
    }

    /// The `Set-Cookie` for a flow's browser value: HttpOnly, SameSite=Lax (sent on Facebook's redirect back,
    /// a top-level navigation), as long as a state lives, Secure on https.
    pub fn browser_cookie(&self, value: &str) -> String {
        crate::http::portal::session::cookie(
            self.browser_cookie_name(),
            value,
            self.oauth.state_ttl.as_secs(),
            self.public_url.scheme() == "https",
        )
    }

    /// Creates a state for `client_id`, bound to the browser that holds `browser` in its cookie (a new value
    /// if it holds none, so flows started in several tabs of one browser all complete), and returns the
    /// Facebook Login dialog URL. `link_expires` (unix seconds) is the expiry of the onboarding link the flow
    /// started from: whatever the result page offers to try again inherits it.
    pub async fn begin(
        &self,
        client_id: i64,
        user_id: Option<i64>,
        rerequest: bool,
        browser: Option<&str>,
        link_expires: Option<i64>,
    ) -> Result<Begun, StoreError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("the OS random source is available");
        let state = URL_SAFE_NO_PAD.encode(raw);
        let browser = browser
            .filter(|b| b.len() == 43 && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'))
            .map_or_else(crate::http::portal::session::random_token, str::to_owned);
        let expires = crate::clock::now() + ChronoDuration::from_std(self.oauth.state_ttl).unwrap_or_default();
        self.store
            .create_oauth_state(&NewOAuthState {
                state_hash: state_hash(&state),
                client_id,
                user_id,
                expires_at: expires,
                browser_hash: state_hash(&browser),
                link_expires_at: link_expires.and_then(|e| chrono::DateTime::from_timestamp(e, 0)),
            })
            .await?;
        let mut url = Url::parse(&format!(
            "{}/{}/dialog/oauth",
            self.dialog_url.as_str().trim_end_matches('/'),
            self.api_version
        ))
        .expect("the dialog URL is valid");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", self.graph.app_id())
                .append_pair("redirect_uri", &self.redirect_uri())
                .append_pair("state", &state)
                .append_pair("response_type", "code");
            match &self.oauth.config_id {
                Some(config) => q.append_pair("config_id", config),
                None => q.append_pair("scope", &self.oauth.scopes.join(",")),
            };
            if rerequest {
                q.append_pair("auth_type", "rerequest");
            }
        }
        Ok(Begun { dialog: url.into(), browser })
    }

    /// Handles the callback in the browser holding `browser` in its cookie; returns the path of the result
    /// page. A callback in another browser than the one that started the flow connects nothing.
    pub async fn finish(&self, query: CallbackQuery, browser: Option<&str>) -> Result<String, CallbackError> {
        let state = query.state.as_deref().filter(|s| !s.is_empty()).ok_or(CallbackError::MissingState)?;
        let hash = state_hash(state);
        let browser_hash = state_hash(browser.unwrap_or_default());
        let consumed = self.store.consume_oauth_state(&hash, &browser_hash).await?.map_err(CallbackError::State)?;
        let client = self
            .store
            .client_by_id(consumed.client_id)
            .await?
            .ok_or_else(|| StoreError::NotFound("client".to_owned()))?;
        let mut outcome = match (&query.error, &query.code) {
            (Some(error), _) if error == "access_denied" => Outcome {
                kind: "cancelled".to_owned(),
                message: Some("You cancelled the Facebook sign-in, so nothing was connected.".to_owned()),
                ..Outcome::default()
            },
            (Some(error), _) => Outcome {
                kind: "failed".to_owned(),
                message: Some(format!(
                    "Facebook reported a problem ({error}{}), so nothing was connected. Please try again.",
                    query.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
                )),
                ..Outcome::default()
            },
            (None, Some(code)) => self.connect(consumed.client_id, &client.slug, code, consumed.user_id).await,
            (None, None) => Outcome {
                kind: "failed".to_owned(),
                message: Some("Facebook sent no authorization code, so nothing was connected.".to_owned()),
                ..Outcome::default()
            },
        };
        outcome.client_slug = client.slug.to_string();
        let json = serde_json::to_string(&outcome).unwrap_or_default();
        self.store.set_oauth_outcome(&hash, &json).await?;
        self.audit(
            actor(consumed.user_id),
            "oauth.completed",
            Some(consumed.client_id),
            None,
            format!("{}: {} connected, {} refused", outcome.kind, outcome.connected.len(), outcome.refused.len()),
        )
        .await;
        // Started from the portal: back to it, with the banner; from a link: the public result page.
        Ok(match consumed.user_id {
            Some(_) => format!("/portal?result={}", hex::encode(hash)),
            None => format!("/portal/connect-result/{}", hex::encode(hash)),
        })
    }

    async fn connect(
        &self,
        client_id: i64,
        slug: &crate::domain::ClientSlug,
        code: &str,
        user_id: Option<i64>,
    ) -> Outcome {
        let failed = |what: &str, e: &GraphFailure| {
            tracing::warn!(client = %slug, reason = %e.reason(), "{what}");
            Outcome {
                kind: "failed".to_owned(),
                message: Some(format!("{what} ({}). Nothing was connected; please try again.", e.reason())),
                ..Outcome::default()
            }
        };
        let short = match self.graph.exchange_code(code, &self.redirect_uri()).await {
            Ok((token, _)) => token,
            Err(e) => return failed("Facebook did not accept the sign-in", &e),
        };
        let long = match self.graph.long_lived(&short).await {
            Ok((token, _)) => token,
            Err(e) => return failed("Facebook did not issue a long-lived token", &e),
        };
        let info = match self.graph.debug_token(&long).await {
            Ok(info) => info,
            Err(e) => return failed("Facebook did not describe the token", &e),
        };
        let missing: Vec<String> =
            self.oauth.required_scopes.iter().filter(|r| !info.scopes.contains(r)).cloned().collect();
        if !missing.is_empty() {
            return Outcome {
                kind: "missing_permissions".to_owned(),
                message: Some(format!(
                    "Nothing was connected because these permissions were declined: {}. Connect again and allow them \
                     (Facebook will ask for just those).",
                    missing.join(", ")
                )),
                missing,
                ..Outcome::default()
            };
        }
        let pages = match self.graph.accounts(&long).await {
            Ok(pages) => pages,
            Err(e) => return failed("Facebook did not list your Pages", &e),
        };
        if pages.is_empty() {
            return Outcome {
                kind: "failed".to_owned(),
                message: Some("No Facebook Page was shared. Connect again and select the Pages to connect.".to_owned()),
                ..Outcome::default()
            };
        }
        let with_instagram = info.scopes.iter().any(|s| s == "instagram_basic");
        let mut outcome = Outcome { kind: "connected".to_owned(), ..Outcome::default() };
        for page in pages {
            let Ok(page_id) = PageId::parse(&page.id) else { continue };
            let instagram = if with_instagram {
                self.graph
                    .instagram_account(&page.id, &long)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|ig| PageId::parse(&ig).ok())
            } else {
                None
            };
            match self.connect_page(client_id, slug, &page_id, &page.name, instagram, &page.token, &info, user_id).await
            {
                Ok(connected) => outcome.connected.push(connected),
                Err(reason) => {
                    outcome.refused.push(RefusedPage { id: page.id.clone(), name: page.name.clone(), reason })
                }
            }
        }
        if outcome.connected.is_empty() {
            outcome.kind = "failed".to_owned();
            outcome.message = Some("No Page could be connected; see the reasons below.".to_owned());
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn connect_page(
        &self,
        client_id: i64,
        slug: &crate::domain::ClientSlug,
        page_id: &PageId,
        name: &str,
        instagram: Option<PageId>,
        token: &AccessToken,
        info: &crate::meta::graph::pages::TokenInfo,
        user_id: Option<i64>,
    ) -> Result<ConnectedPage, String> {
        let sealed = self.keys.seal(page_id, token).map_err(|e| e.to_string())?;
        let new = NewIntegration {
            client_id,
            page_id: page_id.clone(),
            page_name: Some(name.to_owned()),
            instagram_account_id: instagram.clone(),
            sealed_token: sealed,
            permissions_granted: info.scopes.clone(),
            // Page tokens from a long-lived user token have no expiry date.
            token_expires_at: None,
            connected_by: info.user_id.clone(),
        };
        match self.store.upsert_integration(&new).await {
            Ok(_) => {}
            Err(StoreError::PageOwnedByAnotherClient(_)) => {
                return Err("this Page is already connected to another business on Switchboard; its owner must \
                            disconnect it first"
                    .to_owned());
            }
            Err(StoreError::Conflict(message)) => return Err(message),
            Err(e) => {
                tracing::error!(page = %page_id, error = %e, "cannot store integration");
                return Err("it could not be saved; please try again".to_owned());
            }
        }
        let warning = match self.graph.subscribe(page_id.as_str(), token).await {
            Ok(()) => None,
            Err(e) => {
                let reason = format!("could not subscribe the Page to messages: {}", e.reason());
                let _ = self.store.set_integration_status(page_id, IntegrationStatus::Error, Some(&reason), None).await;
                Some(reason)
            }
        };
        self.audit(
            actor(user_id),
            "integration.connected",
            Some(client_id),
            Some(page_id.clone()),
            format!("{name}{}", instagram.as_ref().map(|ig| format!(" with Instagram {ig}")).unwrap_or_default()),
        )
        .await;
        if let Some(router) = &self.router {
            router.connected(page_id.clone(), instagram.clone(), slug.as_str());
        }
        Ok(ConnectedPage {
            id: page_id.to_string(),
            name: name.to_owned(),
            instagram: instagram.map(|i| i.to_string()),
            warning,
        })
    }

    /// Disconnects a page of client `owner` (the one the caller checked; `None`: whoever owns it now): wipes the
    /// ciphertext and marks it revoked only if it still belongs to that client, stops its actor, unsubscribes it
    /// at Meta (best effort) and audits. Returns a warning if Meta could not be told.
    pub async fn disconnect(
        &self,
        page: &PageId,
        owner: Option<i64>,
        who: &str,
        reason: &str,
    ) -> Result<Option<String>, StoreError> {
        let integration =
            self.store.integration_by_page(page).await?.ok_or_else(|| StoreError::NotFound(format!("page {page}")))?;
        let owner = owner.unwrap_or(integration.client_id);
        // Opened before the row is revoked (which erases it), to tell Meta afterwards.
        let token = integration.sealed_token.as_ref().map(|sealed| self.keys.open(page, sealed));
        if integration.client_id != owner
            || !self.store.revoke_integration(page, reason, RevokeIf::OwnedBy(owner)).await?
        {
            return Err(StoreError::Conflict(format!("page {page} changed hands meanwhile; nothing was disconnected")));
        }
        if let Some(router) = &self.router {
            router.disconnect(page);
        }
        let warning = match token {
            Some(Ok(token)) => self
                .graph
                .unsubscribe(page.as_str(), &token)
                .await
                .err()
                .map(|e| format!("Meta was not told ({}); the page stays disconnected here", e.reason())),
            Some(Err(e)) => Some(format!("the stored token could not be opened ({e})")),
            None => None,
        };
        self.audit(who.to_owned(), "integration.disconnected", Some(owner), Some(page.clone()), reason.to_owned())
            .await;
        Ok(warning)
    }

    /// Meta's deauthorize callback: revokes every integration the Facebook user connected (each only if that
    /// user is still the one who connected it).
    pub async fn deauthorize(&self, facebook_user_id: &str) -> Result<usize, StoreError> {
        let integrations = self.store.integrations_connected_by(facebook_user_id).await?;
        let mut revoked = 0;
        for i in integrations.iter().filter(|i| i.status != IntegrationStatus::Revoked) {
            let reason = "the Facebook user who connected it removed the app";
            if !self.store.revoke_integration(&i.page_id, reason, RevokeIf::ConnectedBy(facebook_user_id)).await? {
                continue; // reconnected by someone else meanwhile
            }
            if let Some(router) = &self.router {
                router.disconnect(&i.page_id);
            }
            self.audit(
                "meta".to_owned(),
                "integration.deauthorized",
                Some(i.client_id),
                Some(i.page_id.clone()),
                String::new(),
            )
            .await;
            revoked += 1;
        }
        Ok(revoked)
    }

    /// Meta's data-deletion callback: revokes the user's integrations, forgets that they connected them,
    /// and records `code` as the confirmation.
    async fn delete_user_data(&self, facebook_user_id: &str, code: &str) -> Result<(), StoreError> {
        let affected = self.deauthorize(facebook_user_id).await?;
        self.store.forget_connected_by(facebook_user_id).await?;
        let now = crate::clock::now();
        let request = DeletionRequest {
            confirmation_code: code.to_owned(),
            requested_at: now,
            completed_at: Some(now),
            integrations_affected: affected as i64,
        };
        self.store.record_deletion(&request, facebook_user_id).await?;
        self.audit(
            "meta".to_owned(),
            "data.deleted",
            None,
            None,
            format!("confirmation {code}, {affected} integration(s)"),
        )
        .await;
        Ok(())
    }

    /// Handles a Deauthorize Callback: verified, fresh, and not seen before (a replay changes nothing);
    /// returns how many Pages were revoked.
    pub async fn on_deauthorize(&self, signed: &str) -> Result<usize, MetaCallbackError> {
        let request = signed_request::verify(signed, &self.app_secrets, crate::clock::now().timestamp())?;
        let hash = request.key;
        if let CallbackClaim::Seen { .. } = self.store.claim_meta_callback(&hash, "deauthorize", None).await? {
            tracing::info!("deauthorize callback replayed; nothing changed");
            return Ok(0);
        }
        match self.deauthorize(&request.user_id).await {
            Ok(revoked) => Ok(revoked),
            Err(e) => {
                // Handled again when Meta retries.
                let _ = self.store.release_meta_callback(&hash).await;
                Err(e.into())
            }
        }
    }

    /// Handles a Data Deletion Request: verified, fresh, and done once (a replay gets the same confirmation
    /// code and changes nothing); returns the confirmation code.
    pub async fn on_data_deletion(&self, signed: &str) -> Result<String, MetaCallbackError> {
        let request = signed_request::verify(signed, &self.app_secrets, crate::clock::now().timestamp())?;
        let hash = request.key;
        let mut raw = [0u8; 10];
        getrandom::fill(&mut raw).expect("the OS random source is available");
        let code = hex::encode_upper(raw);
        match self.store.claim_meta_callback(&hash, "data_deletion", Some(&code)).await? {
            CallbackClaim::Seen { confirmation_code: Some(code) } => return Ok(code),
            CallbackClaim::Seen { confirmation_code: None } => {
                return Err(StoreError::Corrupt("a data deletion claim has no confirmation code".to_owned()).into());
            }
            CallbackClaim::New => {}
        }
        match self.delete_user_data(&request.user_id, &code).await {
            Ok(()) => Ok(code),
            Err(e) => {
                let _ = self.store.release_meta_callback(&hash).await;
                Err(e.into())
            }
        }
    }

    /// The public status page address for a deletion request.
    pub fn deletion_status_url(&self, code: &str) -> String {
        format!("{}/api/auth/facebook/data-deletion/status?code={code}", self.public_url.as_str().trim_end_matches('/'))
    }

    /// Checks one connected integration: token still valid with the required permissions (else
    /// needs_reauth, before a customer's message fails), and the page still subscribed (else resubscribe).
    pub async fn check(&self, page: &PageId) -> Result<CheckResult, StoreError> {
        let Some(integration) = self.store.integration_by_page(page).await? else {
            return Ok(CheckResult::Skipped("no such integration".to_owned()));
        };
        if integration.status != IntegrationStatus::Connected {
            return Ok(CheckResult::Skipped(format!("status is {}", integration.status)));
        }
        let Some(sealed) = &integration.sealed_token else { return Ok(CheckResult::Skipped("no token".to_owned())) };
        let token = match self.keys.open(page, sealed) {
            Ok(t) => t,
            Err(e) => return Ok(CheckResult::Skipped(e.to_string())),
        };
        let info = match self.graph.debug_token(&token).await {
            Ok(info) => info,
            Err(e) => return Ok(CheckResult::Skipped(format!("Meta did not answer: {}", e.reason()))),
        };
        let problem = if !info.is_valid {
            Some(format!(
                "Facebook says the token is no longer valid ({})",
                info.problem.as_deref().unwrap_or("no reason given")
            ))
        } else {
            let lost: Vec<&str> = ["pages_messaging", "pages_manage_metadata"]
                .into_iter()
                .filter(|p| self.oauth.required_scopes.iter().any(|r| r == p) && !info.scopes.iter().any(|s| s == p))
                .collect();
            (!lost.is_empty()).then(|| format!("permission {} was removed", lost.join(", ")))
        };
        if let Some(reason) = problem {
            let entry = AuditEntry {
                actor: "system".to_owned(),
                action: "integration.needs_reauth".to_owned(),
                client_id: Some(integration.client_id),
                page_id: Some(page.clone()),
                detail: reason.clone(),
            };
            self.store
                .set_integration_status(page, IntegrationStatus::NeedsReauth, Some(&reason), Some(&entry))
                .await?;
            if let Some(router) = &self.router {
                router.invalidate(page, &reason);
            }
            return Ok(CheckResult::NeedsReauth(reason));
        }
        match self.graph.is_subscribed(page.as_str(), &token).await {
            Ok(true) => Ok(CheckResult::Healthy),
            Ok(false) => match self.graph.subscribe(page.as_str(), &token).await {
                Ok(()) => {
                    self.audit(
                        "system".to_owned(),
                        "integration.resubscribed",
                        Some(integration.client_id),
                        Some(page.clone()),
                        "Meta had unsubscribed the page".to_owned(),
                    )
                    .await;
                    Ok(CheckResult::Resubscribed)
                }
                Err(e) => Ok(CheckResult::Skipped(format!("could not resubscribe: {}", e.reason()))),
            },
            Err(e) => Ok(CheckResult::Skipped(format!("Meta did not answer: {}", e.reason()))),
        }
    }

    /// Checks every connected integration once, spread over `interval`, forever.
    pub async fn run_token_health(self, interval: std::time::Duration) {
        loop {
            let pages: Vec<PageId> = match self.store.list_integrations().await {
                Ok(list) => {
                    list.into_iter().filter(|i| i.status == IntegrationStatus::Connected).map(|i| i.page_id).collect()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "token health: cannot list integrations");
                    Vec::new()
                }
            };
            let spacing = interval / u32::try_from(pages.len().max(1)).unwrap_or(u32::MAX);
            for page in pages {
                tokio::time::sleep(spacing).await;
                match self.check(&page).await {
                    Ok(result) => tracing::info!(%page, ?result, "token health check"),
                    Err(e) => tracing::warn!(%page, error = %e, "token health check failed"),
                }
            }
            if spacing == interval {
                tokio::time::sleep(interval).await;
            }
        }
    }

    async fn audit(
        &self,
        actor: String,
        action: &str,
        client_id: Option<i64>,
        page_id: Option<PageId>,
        detail: String,
    ) {
        let entry = AuditEntry { actor, action: action.to_owned(), client_id, page_id, detail };
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, action, "cannot write audit row");
        }
    }
}

/// How long an OAuth state row is kept after it was created: its result page is shown for this long (a state
/// itself expires within `oauth.state_ttl_secs`, at most an hour).
pub const STATE_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Deletes OAuth states older than [`STATE_KEPT`], and Meta callback claims past their window, every `every`
/// (the first time right away), so neither piles up.
pub async fn run_state_prune(store: Store, every: std::time::Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let before = crate::clock::now() - ChronoDuration::from_std(STATE_KEPT).unwrap_or_default();
        match store.prune_oauth_states(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(states = n, "pruned old OAuth states"),
            Err(e) => tracing::warn!(error = %e, "cannot prune OAuth states; will try again"),
        }
        // A claim only has to outlive the window in which its request would still be accepted.
        let stale = crate::clock::now() - ChronoDuration::seconds(2 * signed_request::FRESH_FOR_SECS);
        if let Err(e) = store.prune_meta_callbacks(stale).await {
            tracing::warn!(error = %e, "cannot prune Meta callback claims; will try again");
        }
    }
}

/// SHA-256 of the state: what is stored (the state itself never is).
pub fn state_hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

fn actor(user_id: Option<i64>) -> String {
    user_id.map_or_else(|| "onboarding-link".to_owned(), |id| format!("user:{id}"))
}

/// Keeps the engine's directory in step with the store (pages connected or disconnected by another
/// process, such as the CLI), forever.
pub async fn run_reconcile(store: Store, router: Router, interval: std::time::Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match store.list_integrations().await {
            Ok(list) => {
                for i in list {
                    let known = router.route(i.page_id.as_str()).is_some();
                    match i.status {
                        IntegrationStatus::Revoked if known => router.disconnect(&i.page_id),
                        IntegrationStatus::Revoked => {}
                        _ if !known => {
                            router.register(i.page_id.clone(), i.instagram_account_id.clone(), i.client_slug.as_str())
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reconcile: cannot list integrations"),
        }
    }
}
