//! Facebook Login: `begin` makes the state and the dialog URL, `finish` consumes the state, exchanges the
//! code for a long-lived token, checks the granted permissions and connects each shared Page.

use chrono::Duration as ChronoDuration;
use switchboard_actors::{AccessToken, GraphFailure};
use url::Url;

use super::{Begun, CallbackError, CallbackQuery, ConnectedPage, Onboarding, Outcome, OutcomeKind, RefusedPage};
use crate::domain::{Actor, AuditAction, ClientId, ClientSlug, PageId};
use crate::meta::graph::pages::TokenInfo;
use crate::meta::signed_request;
use crate::secrets::tokens::{self, is_token, random_token};
use crate::store::{IntegrationStatus, NewIntegration, NewOAuthState, Store, StoreError};

/// A Facebook Login that got a long-lived user token: for whom, and what the token may do.
struct Grant<'a> {
    client_id: ClientId,
    slug: &'a ClientSlug,
    user_id: Option<i64>,
    token: AccessToken,
    info: TokenInfo,
}

impl Onboarding {
    /// Creates a state for `client_id`, bound to the browser that holds `browser` in its cookie (a new value
    /// if it holds none, so flows started in several tabs of one browser all complete), and returns the
    /// Facebook Login dialog URL. `link_expires` (unix seconds) is the expiry of the onboarding link the flow
    /// started from: whatever the result page offers to try again inherits it.
    pub async fn begin(
        &self,
        client_id: ClientId,
        user_id: Option<i64>,
        rerequest: bool,
        browser: Option<&str>,
        link_expires: Option<i64>,
    ) -> Result<Begun, StoreError> {
        let state = random_token();
        let browser = browser.filter(|b| is_token(b)).map_or_else(random_token, str::to_owned);
        let expires = crate::clock::now() + ChronoDuration::from_std(self.oauth.state_ttl).unwrap_or_default();
        self.store
            .create_oauth_state(&NewOAuthState {
                state_hash: tokens::hash(&state),
                client_id,
                user_id,
                expires_at: expires,
                browser_hash: tokens::hash(&browser),
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
        let hash = tokens::hash(state);
        let browser_hash = tokens::hash(browser.unwrap_or_default());
        let consumed = self.store.consume_oauth_state(&hash, &browser_hash).await?.map_err(CallbackError::State)?;
        let client = self
            .store
            .client_by_id(consumed.client_id)
            .await?
            .ok_or_else(|| StoreError::NotFound("client".to_owned()))?;
        let mut outcome = match (&query.error, &query.code) {
            (Some(error), _) if error == "access_denied" => Outcome {
                kind: OutcomeKind::Cancelled,
                message: Some("You cancelled the Facebook sign-in, so nothing was connected.".to_owned()),
                ..Outcome::default()
            },
            (Some(error), _) => Outcome {
                kind: OutcomeKind::Failed,
                message: Some(format!(
                    "Facebook reported a problem ({error}{}), so nothing was connected. Please try again.",
                    query.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
                )),
                ..Outcome::default()
            },
            (None, Some(code)) => self.connect(consumed.client_id, &client.slug, code, consumed.user_id).await,
            (None, None) => Outcome {
                kind: OutcomeKind::Failed,
                message: Some("Facebook sent no authorization code, so nothing was connected.".to_owned()),
                ..Outcome::default()
            },
        };
        outcome.client_slug = client.slug.to_string();
        outcome.client_name = client.name.clone();
        let json = serde_json::to_string(&outcome).unwrap_or_default();
        let result = random_token();
        self.store.set_oauth_outcome(&hash, &result, &json).await?;
        self.audit(
            Actor::user_or_link(consumed.user_id),
            AuditAction::OAuthCompleted,
            Some(consumed.client_id),
            None,
            format!(
                "{}: {} connected, {} refused",
                outcome.kind.as_str(),
                outcome.connected.len(),
                outcome.refused.len()
            ),
        )
        .await;
        // Started from the portal: back to it, with the banner; from a link: the public result page.
        Ok(match consumed.user_id {
            Some(_) => format!("/portal?result={result}"),
            None => format!("/portal/connect-result/{result}"),
        })
    }

    /// Exchanges the code for a long-lived user token and connects every Page it shares.
    async fn connect(&self, client_id: ClientId, slug: &ClientSlug, code: &str, user_id: Option<i64>) -> Outcome {
        let grant = match self.grant(client_id, slug, code, user_id).await {
            Ok(grant) => grant,
            Err(outcome) => return outcome,
        };
        let pages = match self.graph.accounts(&grant.token).await {
            Ok(pages) => pages,
            Err(e) => return failed(slug, "Facebook did not list your Pages", &e),
        };
        if pages.is_empty() {
            return Outcome {
                kind: OutcomeKind::Failed,
                message: Some("No Facebook Page was shared. Connect again and select the Pages to connect.".to_owned()),
                ..Outcome::default()
            };
        }
        let with_instagram = grant.info.scopes.iter().any(|s| s == "instagram_basic");
        let mut outcome = Outcome { kind: OutcomeKind::Connected, ..Outcome::default() };
        for page in pages {
            let Ok(page_id) = PageId::parse(&page.id) else { continue };
            let instagram = if with_instagram {
                self.graph
                    .instagram_account(&page.id, &grant.token)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|ig| PageId::parse(&ig).ok())
            } else {
                None
            };
            match self.connect_page(&grant, &page_id, &page.name, instagram, &page.token).await {
                Ok(connected) => outcome.connected.push(connected),
                Err(reason) => {
                    outcome.refused.push(RefusedPage { id: page.id.clone(), name: page.name.clone(), reason })
                }
            }
        }
        if outcome.connected.is_empty() {
            outcome.kind = OutcomeKind::Failed;
            outcome.message = Some("No Page could be connected; see the reasons below.".to_owned());
        }
        outcome
    }

    /// The long-lived user token for `code`, if Facebook issued one with every required permission; else the
    /// outcome that says why not.
    async fn grant<'a>(
        &self,
        client_id: ClientId,
        slug: &'a ClientSlug,
        code: &str,
        user_id: Option<i64>,
    ) -> Result<Grant<'a>, Outcome> {
        let (short, _) = self
            .graph
            .exchange_code(code, &self.redirect_uri())
            .await
            .map_err(|e| failed(slug, "Facebook did not accept the sign-in", &e))?;
        let (token, _) = self
            .graph
            .long_lived(&short)
            .await
            .map_err(|e| failed(slug, "Facebook did not issue a long-lived token", &e))?;
        let info = self
            .graph
            .debug_token(&token)
            .await
            .map_err(|e| failed(slug, "Facebook did not describe the token", &e))?;
        let missing: Vec<String> =
            self.oauth.required_scopes.iter().filter(|r| !info.scopes.contains(r)).cloned().collect();
        if !missing.is_empty() {
            return Err(Outcome {
                kind: OutcomeKind::MissingPermissions,
                message: Some(format!(
                    "Nothing was connected because these permissions were declined: {}. Connect again and allow them \
                     (Facebook will ask for just those).",
                    missing.join(", ")
                )),
                missing,
                ..Outcome::default()
            });
        }
        Ok(Grant { client_id, slug, user_id, token, info })
    }

    /// Seals and stores one Page's token, subscribes the Page, audits and tells the engine; `Err` is the
    /// reason the Page was refused, in plain words.
    async fn connect_page(
        &self,
        grant: &Grant<'_>,
        page_id: &PageId,
        name: &str,
        instagram: Option<PageId>,
        token: &AccessToken,
    ) -> Result<ConnectedPage, String> {
        let sealed = self.keys.seal(page_id, token).map_err(|e| e.to_string())?;
        let new = NewIntegration {
            client_id: grant.client_id,
            page_id: page_id.clone(),
            page_name: Some(name.to_owned()),
            instagram_account_id: instagram.clone(),
            sealed_token: sealed,
            permissions_granted: grant.info.scopes.clone(),
            // Page tokens from a long-lived user token have no expiry date.
            token_expires_at: None,
            connected_by: grant.info.user_id.clone(),
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
            Actor::user_or_link(grant.user_id),
            AuditAction::IntegrationConnected,
            Some(grant.client_id),
            Some(page_id.clone()),
            format!("{name}{}", instagram.as_ref().map(|ig| format!(" with Instagram {ig}")).unwrap_or_default()),
        )
        .await;
        if let Some(router) = &self.router {
            router.connected(page_id.clone(), instagram.clone(), grant.slug.as_str());
        }
        self.announce(page_id).await;
        Ok(ConnectedPage {
            id: page_id.to_string(),
            name: name.to_owned(),
            instagram: instagram.map(|i| i.to_string()),
            warning,
        })
    }
}

/// The outcome of a Graph call that failed during a login: nothing connected, with Meta's reason.
fn failed(slug: &ClientSlug, what: &str, e: &GraphFailure) -> Outcome {
    tracing::warn!(client = %slug, reason = %e.reason(), "{what}");
    Outcome {
        kind: OutcomeKind::Failed,
        message: Some(format!("{what} ({}). Nothing was connected; please try again.", e.reason())),
        ..Outcome::default()
    }
}

/// How long an OAuth state row is kept after it was created: its result page is shown for this long (a state
/// itself expires within `oauth.state_ttl_secs`, at most an hour).
pub const STATE_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Deletes OAuth states older than [`STATE_KEPT`], and Meta callback claims past their window, so neither
/// piles up (every hour, from the server's background jobs).
pub async fn prune_states(store: &Store) {
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
