//! Storage: everything Switchboard keeps, on PostgreSQL (production) or SQLite (the embedded default).
//!
//! [`Store`] is one handle (cheap to clone) whose methods live in one file per kind of record: `clients` (and
//! their settings), `users` (and sessions), `integrations`, `oauth` (states), `callbacks` (Meta's signed
//! requests and data deletions), `rotation` (sealed secrets), `inbox` (and its outbox), `unhandled`, `audit`.
//! Each file holds its record's public types, the rows the database returns and their conversion into those
//! types (so a corrupt row is an error at the boundary rather than a bad value inside), and its SQL; what
//! several of them share in reading rows back is in `decode`. Each statement is written once for both
//! backends, which share `$N` placeholders, `INSERT … ON CONFLICT … DO UPDATE … WHERE` and `RETURNING` (SQLite
//! 3.35+): [`on!`] runs it on whichever pool the store holds. Only the group-committed writes differ per
//! backend (one array statement per group on PostgreSQL, one statement per row on SQLite), behind the small
//! [`Batched`] trait (`postgres.rs`, `sqlite.rs`). Timestamps are bound from the application's clock, never
//! taken from the database's, so both backends store the same instants. This module never sees a plaintext
//! token: integrations carry only `SealedToken`s (a `domain` value), sealed and opened by the vault.

mod ai;
mod audit;
mod callbacks;
mod clients;
mod cluster;
mod conversations;
mod decode;
mod history;
mod holds;
mod inbox;
mod integrations;
mod oauth;
mod postgres;
mod rotation;
pub mod sqlite;
mod stuck;
mod throttle;
mod unhandled;
mod users;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

pub use ai::{AiMonth, Reservation};
pub use audit::{AUDIT_WRITE_FAILURES, AuditEntry, AuditRecord};
pub use callbacks::{CallbackClaim, DeletionRequest};
pub use clients::{AiSetting, Client, ClientSettings, ResponderSetting};
pub use cluster::{DIRECTORY_CHANNEL, FiguresRecord, NodeRecord, OwnerRecord};
pub use conversations::{
    CONVERSATION_WINDOW, COUNTED_AT_MOST, ConversationEntry, ConversationList, ConversationReply, ConversationSummary,
};
pub use history::{HistoryAdd, HistorySlot};
pub use inbox::{Fence, InboxRow, InboxStatus, NewReply, Pending, PendingPage};
pub use integrations::{Integration, IntegrationStatus, NewIntegration, RevokeIf};
pub use oauth::{ConsumedState, NewOAuthState, OAuthOutcome, StateRejected};
pub use postgres::progress_sql;
pub use rotation::{Resealed, SealedRelaySecret, SealedRow};
pub use stuck::StuckPage;
pub use switchboard_actors::{InboxId, Outcome, RecordedReply, ReplyId};
pub use unhandled::{UnhandledRecord, UnhandledRow, UnhandledSummary};
pub use users::{NewUser, Session, User};

use crate::domain::PageId;

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

/// The pool of one backend.
#[derive(Clone)]
pub(crate) enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `body` with `pool` bound to the store's pool of either backend: the statements in it are written
/// once and type-checked for both (`on!(self, |pool| sqlx::query(…).execute(pool).await)`).
macro_rules! on {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Postgres($pool) => $body,
            $crate::store::Db::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use on;

/// The writes that are group-committed (many rows per call), the one place the backends differ: PostgreSQL
/// writes a group in one statement over arrays (one round trip), SQLite one statement per row in a transaction
/// (it runs in-process, so a statement costs no round trip).
#[async_trait]
pub(crate) trait Batched: Send + Sync {
    /// Inserts inbox rows in order; a row whose (page, key) is stored already, or appears earlier in `rows`,
    /// gets `None`.
    async fn insert_inbox_rows(
        &self,
        rows: &[InboxRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<InboxId>>, StoreError>;
    /// Marks replies sent and inbox rows finished; with `fences` (one per finished row, in a cluster) a row is
    /// finished only if its fence holds.
    async fn write_progress(
        &self,
        sent: &[(ReplyId, Option<String>)],
        finished: &[(InboxId, Outcome)],
        fences: &[Option<Fence>],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Records each (inbox id, seq) once; a reply recorded before is returned as first recorded. A row whose
    /// fence does not hold is not recorded (`None`).
    async fn record_replies(
        &self,
        rows: &[NewReply],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<RecordedReply>>, StoreError>;
    /// Before the pool closes: gives back any connection kept between writes.
    fn release(&self) {}
}

/// Everything Switchboard keeps. Cheap to clone; all clones share the pool.
#[derive(Clone)]
pub struct Store {
    db: Db,
    batched: Arc<dyn Batched>,
}

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

impl Store {
    /// Connects to the database named by `url` (`postgres://…` or `sqlite:…`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = postgres::connect(url, max_connections).await?;
            Ok(Self { batched: Arc::new(postgres::PgBatched::new(pool.clone())), db: Db::Postgres(pool) })
        } else if url.starts_with("sqlite:") {
            let pool = sqlite::connect(url, max_connections).await?;
            Ok(Self { batched: Arc::new(sqlite::SqliteBatched::new(pool.clone())), db: Db::Sqlite(pool) })
        } else {
            Err(StoreError::Conflict("database URL must start with postgres://, postgresql:// or sqlite:".to_owned()))
        }
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// A round trip to the database (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.map(drop).map_err(StoreError::Unavailable))
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.batched.release();
        on!(self, |pool| pool.close().await);
    }
}

/// Connects to the database named by `url` (`postgres://…` or `sqlite:…`).
pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
    Store::connect(url, max_connections).await
}
