//! Storage: one `Store` trait, two real backends.
//!
//! PostgreSQL is the production backend; SQLite is the embedded default so `switchboard serve` runs on a
//! fresh machine. Both run the same SQL text (written once in `store/sql.rs`; SQLite accepts `$N`
//! placeholders), each with its own migrations under `migrations/{postgres,sqlite}`. This module never
//! sees a plaintext token: integrations carry only `SealedToken`s, sealed and opened by the vault.

mod model;
mod postgres;
pub(crate) mod sql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use model::{
    AuditEntry, AuditRecord, CallbackClaim, Client, ClientSettings, ConsumedState, DeletionRequest, InboxRow,
    Integration, IntegrationStatus, NewIntegration, NewOAuthState, NewReply, NewUser, OAuthOutcome, Resealed,
    ResponderSetting, RevokeIf, SealedRelaySecret, SealedRow, Session, StateRejected, UnhandledRecord, UnhandledRow,
    UnhandledSummary, User,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::{ClientSlug, Email, PageId};
use crate::vault::KeyId;
pub use switchboard_actors::RecordedReply;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Errors of the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unreachable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("page {0} is already connected to another client")]
    PageOwnedByAnotherClient(PageId),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Classifies a driver error: lost connections are `Unavailable` (retryable, a 503), unique
    /// violations are `Conflict` with the given message, the rest is `Database`.
    pub(crate) fn from_sqlx(err: sqlx::Error, on_conflict: impl FnOnce() -> String) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(on_conflict()),
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(err)
            }
            _ => StoreError::Database(err),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from_sqlx(err, || "duplicate value".to_owned())
    }
}

/// Everything Switchboard keeps. Implementations must be safe to share across tasks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies pending migrations for this backend.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// A round trip to the database (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the pool, waiting for connections in use to be returned.
    async fn close(&self);

    async fn create_client(&self, name: &str, slug: &ClientSlug) -> Result<Client, StoreError>;
    async fn client_by_slug(&self, slug: &ClientSlug) -> Result<Option<Client>, StoreError>;
    async fn client_by_id(&self, id: i64) -> Result<Option<Client>, StoreError>;

    /// The client's engine settings, if any were set.
    async fn client_settings(&self, client_id: i64) -> Result<Option<ClientSettings>, StoreError>;
    /// Chooses the client's responder (keeping its send rate).
    async fn set_responder(&self, client_id: i64, responder: &ResponderSetting) -> Result<(), StoreError>;
    /// Sets (or with `None` clears) the client's per-page send rate.
    async fn set_send_rate(&self, client_id: i64, rate: Option<u32>) -> Result<(), StoreError>;
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;

    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError>;
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Sets a user's own password (clearing `must_change_password`) and ends their other sessions.
    async fn set_password(&self, user_id: i64, password_hash: &str, keep_session: &[u8]) -> Result<(), StoreError>;

    /// Starts a session (only the hash of its id is stored).
    async fn create_session(
        &self,
        id_hash: &[u8],
        user_id: i64,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The unexpired session with this id hash, with its user.
    async fn session(&self, id_hash: &[u8]) -> Result<Option<Session>, StoreError>;
    async fn delete_session(&self, id_hash: &[u8]) -> Result<(), StoreError>;

    /// Inserts or updates the integration of `new.page_id`. A reconnect by the owning client updates the
    /// row in place (and clears needs_reauth); a page owned by another client is refused with
    /// `PageOwnedByAnotherClient` and that row is left untouched, unless it was revoked.
    async fn upsert_integration(&self, new: &NewIntegration) -> Result<Integration, StoreError>;
    async fn integration_by_page(&self, page: &PageId) -> Result<Option<Integration>, StoreError>;
    async fn list_integrations(&self) -> Result<Vec<Integration>, StoreError>;
    /// Sets the status of an integration, and appends `audit` in the same transaction when given; returns
    /// false (writing nothing) when there is no such page.
    async fn set_integration_status(
        &self,
        page: &PageId,
        status: IntegrationStatus,
        reason: Option<&str>,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError>;

    /// Wipes the page's ciphertext and marks it revoked with `reason`, if it still matches `only`; false when
    /// there is no such page or it no longer matches (nothing is written then).
    async fn revoke_integration(&self, page: &PageId, reason: &str, only: RevokeIf<'_>) -> Result<bool, StoreError>;
    /// Integrations connected by this Facebook user (app-scoped id), any status.
    async fn integrations_connected_by(&self, facebook_user_id: &str) -> Result<Vec<Integration>, StoreError>;
    /// Forgets which Facebook user connected the pages (data deletion); returns how many rows changed.
    async fn forget_connected_by(&self, facebook_user_id: &str) -> Result<u64, StoreError>;

    /// Stores a new OAuth state (its hash, and the hash of its browser's value).
    async fn create_oauth_state(&self, state: &NewOAuthState) -> Result<(), StoreError>;
    /// Consumes a state atomically, from the browser that started it: only the first caller within its
    /// lifetime gets it. From another browser nothing is consumed.
    async fn consume_oauth_state(
        &self,
        state_hash: &[u8],
        browser_hash: &[u8],
    ) -> Result<Result<ConsumedState, StateRejected>, StoreError>;
    /// Records what the callback did, for the result page.
    async fn set_oauth_outcome(&self, state_hash: &[u8], outcome: &str) -> Result<(), StoreError>;
    async fn oauth_outcome(&self, state_hash: &[u8]) -> Result<Option<OAuthOutcome>, StoreError>;
    /// Deletes OAuth states (used or not, with their outcomes) created before `before`; returns how many.
    async fn prune_oauth_states(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn record_deletion(&self, request: &DeletionRequest, facebook_user_id: &str) -> Result<(), StoreError>;
    /// Claims a `signed_request` callback by its hash: `New` the first time (with the confirmation code to
    /// answer replays with, for a data deletion), `Seen` for a replay.
    async fn claim_meta_callback(
        &self,
        request_hash: &[u8],
        kind: &str,
        confirmation_code: Option<&str>,
    ) -> Result<CallbackClaim, StoreError>;
    /// Forgets a claim whose handling failed, so Meta's retry is handled again.
    async fn release_meta_callback(&self, request_hash: &[u8]) -> Result<(), StoreError>;
    /// Deletes callback claims received before `before` (older requests are refused as stale anyway).
    async fn prune_meta_callbacks(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn deletion_request(&self, confirmation_code: &str) -> Result<Option<DeletionRequest>, StoreError>;

    /// The distinct key ids that stored secrets (page tokens and relay secrets) were sealed with.
    async fn token_key_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` sealed tokens not under `current`, with row id greater than `after_id`, by id.
    async fn sealed_tokens_to_rotate(
        &self,
        current: &KeyId,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<SealedRow>, StoreError>;
    /// Replaces the given tokens in one transaction. A row whose ciphertext changed since it was read is
    /// skipped (a reconnect or another rotation wrote it). Returns how many rows were updated.
    async fn reseal_tokens(&self, rows: &[Resealed]) -> Result<u64, StoreError>;
    /// Up to `limit` relay secrets not under `current`, with client id greater than `after_client_id`.
    async fn relay_secrets_to_rotate(
        &self,
        current: &KeyId,
        after_client_id: i64,
        limit: i64,
    ) -> Result<Vec<SealedRelaySecret>, StoreError>;
    /// Replaces relay secrets in one transaction (skipping any whose ciphertext changed); `id` is the client id.
    async fn reseal_relay_secrets(&self, rows: &[Resealed]) -> Result<u64, StoreError>;

    /// Commits events to the webhook inbox in one transaction; for each, the new row's id, or `None` when
    /// the page already has that dedup key (a redelivery).
    async fn inbox_insert(&self, rows: &[InboxRow]) -> Result<Vec<Option<i64>>, StoreError>;
    /// Marks inbox rows done (`failure` = `None`) or failed with the reason, in one transaction.
    async fn inbox_finish(&self, rows: &[(i64, Option<String>)]) -> Result<(), StoreError> {
        self.inbox_progress(&[], rows).await
    }
    /// In one transaction: replies Meta accepted (outbox row, its message_id) and finished inbox rows (done
    /// when `failure` is `None`). Rows already sent or finished are left as they are.
    async fn inbox_progress(
        &self,
        sent: &[(i64, Option<String>)],
        finished: &[(i64, Option<String>)],
    ) -> Result<(), StoreError>;
    /// Records replies in the outbox in one transaction; for each, the stored row (a reply recorded
    /// before under the same inbox id and seq is returned as it was stored).
    async fn replies_record(&self, rows: &[NewReply]) -> Result<Vec<RecordedReply>, StoreError>;
    /// The replies recorded for an inbox row, in order.
    async fn replies_of(&self, inbox_id: i64) -> Result<Vec<RecordedReply>, StoreError>;
    /// Deletes up to `limit` inbox rows (and their replies) finished before `before`, oldest first;
    /// returns how many. Pending rows are never deleted.
    async fn inbox_prune(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError>;
    /// Pending rows received before `received_before` (id, event JSON), oldest first.
    async fn inbox_pending(&self, received_before: DateTime<Utc>, limit: i64)
    -> Result<Vec<(i64, String)>, StoreError>;
    /// The ids of pending rows received before `received_before`, oldest first (cheap: no event bodies).
    async fn inbox_pending_ids(&self, received_before: DateTime<Utc>, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// The event of a row that is still pending, if it is.
    async fn inbox_pending_event(&self, id: i64) -> Result<Option<String>, StoreError>;
    /// Rows per status.
    async fn inbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Puts failed rows (of one client's pages, or all) back to pending; returns how many.
    async fn inbox_requeue_failed(&self, client_id: Option<i64>) -> Result<u64, StoreError>;

    /// Keeps parts of webhook bodies Switchboard does not understand, in one transaction; a part kept before
    /// (same `raw_hash`) is not kept again.
    async fn unhandled_insert(&self, rows: &[UnhandledRow]) -> Result<(), StoreError>;
    /// Kept unhandled parts per (object, kind, reason), most frequent first.
    async fn unhandled_summary(&self) -> Result<Vec<UnhandledSummary>, StoreError>;
    /// The newest kept unhandled parts.
    async fn unhandled_recent(&self, limit: i64) -> Result<Vec<UnhandledRecord>, StoreError>;
    /// Deletes up to `limit` unhandled parts received before `before`; returns how many.
    async fn unhandled_prune(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError>;

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The newest audit rows first.
    async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Connects to the database named by `url` (`postgres://…` or `sqlite:…`).
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, max_connections).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    } else {
        Err(StoreError::Conflict("database URL must start with postgres://, postgresql:// or sqlite:".to_owned()))
    }
}
