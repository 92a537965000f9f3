//! Parts of webhook bodies Switchboard did not understand, kept raw with the reason for an operator.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, on};

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

/// (id, received, object, kind, reason, detail, account, raw).
type RecordRow = (i64, DateTime<Utc>, String, String, String, String, Option<String>, String);

impl Store {
    /// Keeps parts of webhook bodies Switchboard does not understand, in one transaction; a part kept before
    /// (same `raw_hash`) is not kept again.
    pub async fn unhandled_insert(&self, rows: &[UnhandledRow]) -> Result<(), StoreError> {
        on!(self, |pool| {
            let now = crate::clock::now();
            let mut tx = pool.begin().await?;
            for row in rows {
                sqlx::query(
                    "INSERT INTO webhook_unhandled (received_at, object, kind, reason, detail, account_id, raw, \
                         raw_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (raw_hash) DO NOTHING",
                )
                .bind(now)
                .bind(&row.object)
                .bind(&row.kind)
                .bind(&row.reason)
                .bind(&row.detail)
                .bind(row.account_id.as_deref())
                .bind(&row.raw)
                .bind(&row.raw_hash)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Kept unhandled parts per (object, kind, reason), most frequent first.
    pub async fn unhandled_summary(&self) -> Result<Vec<UnhandledSummary>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<(String, String, String, i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT object, kind, reason, CAST(count(*) AS BIGINT), max(received_at) FROM webhook_unhandled \
                 GROUP BY object, kind, reason ORDER BY 4 DESC, 1, 2, 3",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(object, kind, reason, count, last_at)| UnhandledSummary { object, kind, reason, count, last_at })
                .collect())
        })
    }

    /// The newest kept unhandled parts.
    pub async fn unhandled_recent(&self, limit: i64) -> Result<Vec<UnhandledRecord>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<RecordRow> = sqlx::query_as(
                "SELECT id, received_at, object, kind, reason, detail, account_id, raw FROM webhook_unhandled \
                     ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, received_at, object, kind, reason, detail, account_id, raw)| UnhandledRecord {
                    id,
                    received_at,
                    object,
                    kind,
                    reason,
                    detail,
                    account_id,
                    raw,
                })
                .collect())
        })
    }

    /// Deletes up to `limit` unhandled parts received before `before`; returns how many.
    pub async fn unhandled_prune(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query(
                "DELETE FROM webhook_unhandled WHERE id IN \
                 (SELECT id FROM webhook_unhandled WHERE received_at < $1 ORDER BY id LIMIT $2)",
            )
            .bind(before)
            .bind(limit)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }
}
