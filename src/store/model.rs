//! The records the store reads and writes. Rows are decoded into plain structs first and converted to
//! these domain types, so a corrupt row is an error at the boundary rather than a bad value inside.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::{Actor, AuditAction, ClientId, ClientSlug, Email, PageId, Role};
use crate::secrets::vault::SealedToken;

/// A tenant: one client business.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub slug: ClientSlug,
    pub created_at: DateTime<Utc>,
}

/// A portal user to create; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
    pub client_id: Option<ClientId>,
    /// The password was made for them (an invitation's one-time password): they must choose their own at
    /// their first sign-in.
    pub must_change_password: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
    pub client_id: Option<ClientId>,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("client_id", &self.client_id)
            .field("must_change_password", &self.must_change_password)
            .finish_non_exhaustive()
    }
}

/// The lifecycle of a page connection, as the portal shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    /// The token works and the page is subscribed.
    Connected,
    /// Meta rejected the token (190 and its subcodes): the client must reconnect.
    NeedsReauth,
    /// Disconnected by the client or deauthorized; the ciphertext is wiped.
    Revoked,
    /// Something the client must fix on Meta's side (a missing permission, a lost Page role).
    Error,
}

impl IntegrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationStatus::Connected => "connected",
            IntegrationStatus::NeedsReauth => "needs_reauth",
            IntegrationStatus::Revoked => "revoked",
            IntegrationStatus::Error => "error",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "connected" => IntegrationStatus::Connected,
            "needs_reauth" => IntegrationStatus::NeedsReauth,
            "revoked" => IntegrationStatus::Revoked,
            "error" => IntegrationStatus::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for IntegrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A page connection to store: what the OAuth callback learned, with the token already sealed.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub client_id: ClientId,
    pub page_id: PageId,
    pub page_name: Option<String>,
    pub instagram_account_id: Option<PageId>,
    pub sealed_token: SealedToken,
    pub permissions_granted: Vec<String>,
    /// `None` for page tokens derived from a long-lived user token: they do not expire by date.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// The app-scoped id of the Facebook user who connected the page (for deauthorize callbacks).
    pub connected_by: Option<String>,
}

/// A row of `client_integrations`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Integration {
    pub id: i64,
    pub client_id: ClientId,
    pub client_name: String,
    pub client_slug: ClientSlug,
    pub page_id: PageId,
    pub page_name: Option<String>,
    pub instagram_account_id: Option<PageId>,
    #[serde(skip)]
    pub sealed_token: Option<SealedToken>,
    pub permissions_granted: Vec<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub connected_by: Option<String>,
    pub status: IntegrationStatus,
    pub status_reason: Option<String>,
    pub status_changed_at: DateTime<Utc>,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A sealed token read for key rotation.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub id: i64,
    pub page_id: PageId,
    pub sealed: SealedToken,
}

/// A secret re-sealed under the current key, to be written back only if its row still holds exactly what was
/// read (`previous`: key id and ciphertext), so a reconnect that wrote a new secret meanwhile is never undone.
#[derive(Debug, Clone)]
pub struct Resealed {
    pub id: i64,
    pub previous: SealedToken,
    pub sealed: SealedToken,
}

/// An audit row to append. `detail` is free text for people and must never contain a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: AuditAction,
    pub client_id: Option<ClientId>,
    pub page_id: Option<PageId>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: String,
    pub client_id: Option<ClientId>,
    pub page_id: Option<String>,
    pub detail: String,
}

/// How a client's pages answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponderSetting {
    /// Keyword rules, as JSON (`switchboard_actors::Rules`).
    Rules { rules_json: String },
    /// POST each event to the client's bot; the signing secret is sealed by the vault.
    Relay { url: String, secret: SealedToken },
}

impl ResponderSetting {
    /// `rules` or `relay`, as the CLI, the portal and the audit name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rules { .. } => "rules",
            Self::Relay { .. } => "relay",
        }
    }
}

/// A client's engine settings; a client without a row uses the defaults (rules `{}`, default rate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub client_id: ClientId,
    pub responder: ResponderSetting,
    pub send_rate_per_second: Option<u32>,
    /// How long a person's answer silences the bot in a conversation; `None`: `engine.human_pause_secs`.
    pub human_pause_secs: Option<u32>,
    /// How often the rules were saved in the portal (0: never).
    pub rules_version: i64,
}

/// A relay secret read for key rotation.
#[derive(Debug, Clone)]
pub struct SealedRelaySecret {
    pub client_id: ClientId,
    pub sealed: SealedToken,
}

/// Which integrations a revocation may change: only one that still belongs to what it was checked against,
/// in the same statement (no check-then-act race with a reconnect by someone else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeIf<'a> {
    /// The page still belongs to this client.
    OwnedBy(ClientId),
    /// The page was still connected by this Facebook user (app-scoped id).
    ConnectedBy(&'a str),
}

/// A new OAuth state: only hashes are stored.
#[derive(Debug, Clone)]
pub struct NewOAuthState {
    pub state_hash: Vec<u8>,
    pub client_id: ClientId,
    /// The portal user who started it, if it was started from the portal.
    pub user_id: Option<i64>,
    pub expires_at: DateTime<Utc>,
    /// The SHA-256 of the value the starting browser holds in its cookie.
    pub browser_hash: Vec<u8>,
    /// The expiry of the onboarding link it was started from, if any.
    pub link_expires_at: Option<DateTime<Utc>>,
}

/// Why an OAuth state could not be consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRejected {
    Unknown,
    Expired,
    AlreadyUsed,
    /// The callback came to another browser than the one that started the flow.
    OtherBrowser,
}

/// Whether a `signed_request` callback is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackClaim {
    /// First seen now: handle it.
    New,
    /// Seen before (a replay): change nothing; a data deletion answers with this confirmation code.
    Seen { confirmation_code: Option<String> },
}

/// A consumed OAuth state: whose flow it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedState {
    pub client_id: ClientId,
    pub user_id: Option<i64>,
}

/// What a callback recorded for its result page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthOutcome {
    pub client_id: ClientId,
    pub created_at: DateTime<Utc>,
    pub outcome: String,
    /// The expiry of the onboarding link the flow started from, if any: "Connect again" inherits it.
    pub link_expires_at: Option<DateTime<Utc>>,
}

/// A data-deletion request Meta sent for a Facebook user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRequest {
    pub confirmation_code: String,
    pub requested_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub integrations_affected: i64,
}

/// A signed-in portal user's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// An event to commit to the inbox before acknowledging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    /// The tenant page the event belongs to.
    pub page_id: PageId,
    /// The message mid, or a hash of the event: unique per page.
    pub dedup_key: String,
    /// The event as JSON.
    pub event: String,
    /// The customer of the conversation the event belongs to (what the conversation view lists), for a
    /// customer's message or postback and a person's echo; `None` for receipts and this app's own echoes.
    pub customer_id: Option<String>,
    /// Stored already done: the event needs no reply (an echo, a receipt, a standby event, …), so there is
    /// nothing to finish later and nothing to hand over again after a crash. Its key still dedups.
    pub done: bool,
}

/// A write on the way to a send holds only while `node` owns `page` at `epoch` and its lease runs (a
/// cluster's fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub node: i64,
    pub page: PageId,
    pub epoch: i64,
}

/// A reply to record in the outbox before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply {
    pub inbox_id: super::InboxId,
    /// The reply's place among the event's replies, from 0.
    pub seq: i32,
    pub text: String,
    /// Whom it goes to (a PSID or IGSID).
    pub recipient: String,
    /// In a cluster: recorded only while this node owns the event's page.
    pub fence: Option<Fence>,
}

/// A part of a webhook body Switchboard does not understand, to keep for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnhandledRow {
    pub object: String,
    pub kind: String,
    pub reason: String,
    /// Where it was and what is wrong (never a value from the body).
    pub detail: String,
    pub account_id: Option<String>,
    /// The raw JSON, cut at `webhook::RAW_LIMIT` bytes.
    pub raw: String,
    /// A hash of the whole part, so a redelivery is kept once.
    pub raw_hash: String,
}

/// A kept unhandled part, as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnhandledRecord {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub object: String,
    pub kind: String,
    pub reason: String,
    pub detail: String,
    pub account_id: Option<String>,
    pub raw: String,
}

/// How many unhandled parts of one kind were kept, and the newest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnhandledSummary {
    pub object: String,
    pub kind: String,
    pub reason: String,
    pub count: i64,
    pub last_at: DateTime<Utc>,
}
