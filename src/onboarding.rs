//! Client onboarding through Facebook Login (`login`), onboarding links (`links`), disconnects
//! (`disconnect`), Meta's deauthorize and data-deletion callbacks (`callbacks`) and token health
//! (`token_health`).
//!
//! `begin` creates a state (256 random bits; only its SHA-256 is stored) and the dialog URL. `finish`
//! consumes the state atomically, exchanges the code for a long-lived token, checks the granted
//! permissions, and for each Page: seals its token (AAD = page id), upserts the integration, subscribes the
//! Page to the app's webhook fields, audits, and tells the engine so the new token is used from the next
//! message on. No token ever appears in a URL this module builds, a log line or an outcome.

mod callbacks;
mod disconnect;
mod links;
mod login;
mod token_health;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard_actors::Router;
use url::Url;

pub use callbacks::MetaCallbackError;
pub use links::{LinkError, OnboardLinks};
pub use login::{STATE_KEPT, prune_states};
pub use token_health::CheckResult;

use crate::config::{OAuthSettings, Settings};
use crate::domain::{Actor, AuditAction, ClientId, PageId};
use crate::meta::graph::GraphClient;
use crate::ownership::Owned;
use crate::secrets::vault::KeyRing;
use crate::store::{AuditEntry, StateRejected, Store, StoreError};

/// How a Facebook Login ended (stored as snake_case in the outcome's JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Connected,
    Cancelled,
    MissingPermissions,
    #[default]
    Failed,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Connected => "connected",
            OutcomeKind::Cancelled => "cancelled",
            OutcomeKind::MissingPermissions => "missing_permissions",
            OutcomeKind::Failed => "failed",
        }
    }
}

/// How an outcome reads to the person who connected: done, partly done (or cancelled), or not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Warn,
    Err,
}

impl Tone {
    /// The CSS class the portal and the result page show it with.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Warn => "warn",
            Tone::Err => "err",
        }
    }
}

/// What a callback did, stored for the result page (never a token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub client_slug: String,
    /// The client the Pages were connected to, as people know it (results stored before it was kept: empty).
    #[serde(default)]
    pub client_name: String,
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

impl Outcome {
    pub fn tone(&self) -> Tone {
        match self.kind {
            OutcomeKind::Connected if self.refused.is_empty() => Tone::Ok,
            OutcomeKind::Connected | OutcomeKind::Cancelled => Tone::Warn,
            OutcomeKind::MissingPermissions | OutcomeKind::Failed => Tone::Err,
        }
    }
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

/// A flow started in a browser: where to send it, and the value its cookie must hold for the callback.
#[derive(Debug, Clone)]
pub struct Begun {
    pub dialog: String,
    pub browser: String,
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
    /// In a cluster: the Pages this node owns (token health checks only those).
    owned: Option<Arc<Owned>>,
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
            owned: None,
        }
    }

    /// In a cluster: token health checks only the Pages this node owns (each owner checks its own).
    pub fn in_cluster(mut self, owned: Option<Arc<Owned>>) -> Self {
        self.owned = owned;
        self
    }

    /// Tells every node that `page`'s integration changed.
    pub(crate) async fn announce(&self, page: &PageId) {
        self.store.announce(page).await;
    }

    /// The app secrets a `signed_request` may be signed with.
    pub fn app_secrets(&self) -> &[secrecy::SecretString] {
        &self.app_secrets
    }

    pub fn links(&self) -> &OnboardLinks {
        &self.links
    }

    /// The key ring that seals tokens and relay secrets.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `{public_url}/api/auth/facebook/callback`: must be registered with the Meta app.
    pub fn redirect_uri(&self) -> String {
        format!("{}/api/auth/facebook/callback", self.public_url.as_str().trim_end_matches('/'))
    }

    /// Whether the public URL is https (cookies are then Secure and `__Host-` prefixed).
    pub fn secure(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// How long a flow's state lives.
    pub fn state_ttl(&self) -> std::time::Duration {
        self.oauth.state_ttl
    }

    /// An onboarding link `who` makes for `client`, valid for `ttl`, audited (the CLI's and the portal's one way
    /// to make one).
    pub async fn send_onboard_link(
        &self,
        who: Actor,
        client: &crate::store::Client,
        ttl: std::time::Duration,
    ) -> String {
        let link = self.onboard_link(&client.slug, ttl);
        let detail = format!("valid for {}", humantime::format_duration(ttl));
        self.audit(who, AuditAction::ClientOnboardLink, Some(client.id), None, detail).await;
        link
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

    async fn audit(
        &self,
        actor: Actor,
        action: AuditAction,
        client_id: Option<ClientId>,
        page_id: Option<PageId>,
        detail: String,
    ) {
        self.store.record_audit(AuditEntry { actor, action, client_id, page_id, detail }).await;
    }
}
