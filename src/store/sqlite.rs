//! The SQLite backend: the embedded default, so Switchboard runs with no database set up. WAL mode lets
//! readers proceed while one writer commits; foreign keys are enforced. Its group-committed writes are one
//! statement per row in a transaction: SQLite runs in-process, so a statement costs no round trip.

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::decode::{ReplyRow, recorded_reply};
use super::{Batched, Fence, InboxId, InboxRow, NewReply, Outcome, RecordedReply, ReplyId, StoreError};

/// Opens (creating it and its directory if missing) the database a `sqlite:` URL names.
pub(super) async fn connect(url: &str, max_connections: u32) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(StoreError::Unavailable)?
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let in_memory = is_in_memory(url);
    if !in_memory && let Some(parent) = options.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
    }
    // An in-memory database lives in its one connection: keep exactly one, forever.
    if in_memory {
        SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(max_connections)
    }
    .acquire_timeout(Duration::from_secs(5))
    .connect_with(options)
    .await
    .map_err(StoreError::Unavailable)
}

pub(super) struct SqliteBatched {
    pool: SqlitePool,
}

impl SqliteBatched {
    pub(super) fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl Batched for SqliteBatched {
    async fn insert_inbox_rows(
        &self,
        rows: &[InboxRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<InboxId>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::Unavailable)?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO webhook_inbox (page_id, dedup_key, event, received_at, status, finished_at, customer_id) \
                 VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN 'done' ELSE 'pending' END, CASE WHEN $5 THEN $4 END, $6) \
                 ON CONFLICT (page_id, dedup_key) DO NOTHING RETURNING id",
            )
            .bind(row.page_id.as_str())
            .bind(&row.dedup_key)
            .bind(&row.event)
            .bind(now)
            .bind(row.done)
            .bind(&row.customer_id)
            .fetch_optional(&mut *tx)
            .await?;
            ids.push(id.map(|(id,)| InboxId(id)));
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn write_progress(
        &self,
        sent: &[(ReplyId, Option<String>)],
        finished: &[(InboxId, Outcome)],
        fences: &[Option<Fence>],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !fences.is_empty() {
            return Err(no_cluster());
        }
        let mut tx = self.pool.begin().await?;
        for (id, message_id) in sent {
            sqlx::query("UPDATE webhook_replies SET message_id = $2, sent_at = $3 WHERE id = $1 AND sent_at IS NULL")
                .bind(id.0)
                .bind(message_id.as_deref())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        for (id, outcome) in finished {
            sqlx::query(
                "UPDATE webhook_inbox SET status = CASE WHEN $4 THEN 'failed' ELSE 'done' END, \
                     reason = $2, finished_at = $3 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id.0)
            .bind(outcome.reason())
            .bind(now)
            .bind(outcome.is_failed())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_replies(
        &self,
        rows: &[NewReply],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<RecordedReply>>, StoreError> {
        if rows.iter().any(|r| r.fence.is_some()) {
            return Err(no_cluster());
        }
        let mut tx = self.pool.begin().await?;
        let mut recorded = Vec::with_capacity(rows.len());
        for row in rows {
            // A no-op update on conflict, so the row recorded first is returned.
            let row: ReplyRow = sqlx::query_as(
                "INSERT INTO webhook_replies (inbox_id, seq, body, recorded_at, recipient, unattempted) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (inbox_id, seq) DO UPDATE SET seq = excluded.seq \
                 RETURNING id, body, sent_at IS NOT NULL, unattempted, recorded_at",
            )
            .bind(row.inbox_id.0)
            .bind(row.seq)
            .bind(&row.text)
            .bind(now)
            .bind(&row.recipient)
            .bind(!row.attempting)
            .fetch_one(&mut *tx)
            .await?;
            recorded.push(Some(recorded_reply(row)));
        }
        tx.commit().await?;
        Ok(recorded)
    }
}

/// Fenced writes belong to a cluster, which runs on PostgreSQL only (the configuration refuses it here).
fn no_cluster() -> StoreError {
    StoreError::Conflict("a cluster needs PostgreSQL".to_owned())
}

/// The database file a `sqlite:` URL names, if it names one.
pub fn database_path(url: &str) -> Option<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url).ok()?;
    (!is_in_memory(url)).then(|| options.get_filename().to_owned())
}

/// `sqlite::memory:` and `sqlite:file:x?mode=memory` name databases that exist only in the process.
pub fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}
