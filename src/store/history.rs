//! Each Page's figures over time (`page_history`), for the portal's charts: what the node running a Page
//! counted, added to its minute and its hour, and read back in slots of a chosen width. Written once for both
//! backends (the larger of two values is written with CASE, which both have).

use super::{Store, StoreError, on};

/// What a node counted for a Page since its last write, to add to the bucket starting at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryAdd {
    pub page_id: String,
    pub bucket_secs: i64,
    pub at: i64,
    pub events: i64,
    pub answers: i64,
    pub failures: i64,
    pub reply_p95_ms: Option<i64>,
    pub oldest_pending_s: i64,
}

/// A Page's figures over one slot of time (events, answers and failures summed; the latency and the oldest
/// pending event's age at their worst).
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow, serde::Serialize)]
pub struct HistorySlot {
    pub page_id: String,
    /// The slot's start, unix seconds.
    pub at: i64,
    pub events: i64,
    pub answers: i64,
    pub failures: i64,
    pub reply_p95_ms: Option<i64>,
    pub oldest_pending_s: i64,
}

impl Store {
    /// Adds what was counted to each bucket (the worst of latency and age is kept).
    pub async fn history_add(&self, rows: &[HistoryAdd]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        on!(self, |pool| {
            let mut tx = pool.begin().await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO page_history (page_id, bucket_secs, at, events, answers, failures, reply_p95_ms, \
                         oldest_pending_s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (page_id, bucket_secs, at) DO UPDATE SET \
                     events = page_history.events + excluded.events, \
                     answers = page_history.answers + excluded.answers, \
                     failures = page_history.failures + excluded.failures, \
                     reply_p95_ms = CASE WHEN page_history.reply_p95_ms IS NULL \
                         OR excluded.reply_p95_ms > page_history.reply_p95_ms \
                         THEN COALESCE(excluded.reply_p95_ms, page_history.reply_p95_ms) \
                         ELSE page_history.reply_p95_ms END, \
                     oldest_pending_s = CASE WHEN excluded.oldest_pending_s > page_history.oldest_pending_s \
                         THEN excluded.oldest_pending_s ELSE page_history.oldest_pending_s END",
                )
                .bind(&r.page_id)
                .bind(r.bucket_secs)
                .bind(r.at)
                .bind(r.events)
                .bind(r.answers)
                .bind(r.failures)
                .bind(r.reply_p95_ms)
                .bind(r.oldest_pending_s)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The figures of every Page (or of `page` alone) from buckets of `bucket_secs` starting at or after
    /// `since`, summed into slots of `slot_secs`, oldest first.
    pub async fn history(
        &self,
        page: Option<&str>,
        bucket_secs: i64,
        since: i64,
        slot_secs: i64,
    ) -> Result<Vec<HistorySlot>, StoreError> {
        on!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT page_id, CAST((at / $4) * $4 AS BIGINT) AS at, CAST(SUM(events) AS BIGINT) AS events, \
                     CAST(SUM(answers) AS BIGINT) AS answers, CAST(SUM(failures) AS BIGINT) AS failures, \
                     CAST(MAX(reply_p95_ms) AS BIGINT) AS reply_p95_ms, \
                     CAST(MAX(oldest_pending_s) AS BIGINT) AS oldest_pending_s \
                 FROM page_history WHERE bucket_secs = $1 AND at >= $2 AND ($3 IS NULL OR page_id = $3) \
                 GROUP BY page_id, (at / $4) * $4 ORDER BY page_id, at",
            )
            .bind(bucket_secs)
            .bind(since)
            .bind(page)
            .bind(slot_secs)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Deletes buckets of `bucket_secs` that started before `before`; how many.
    pub async fn history_prune(&self, bucket_secs: i64, before: i64) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query("DELETE FROM page_history WHERE bucket_secs = $1 AND at < $2")
                .bind(bucket_secs)
                .bind(before)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }
}
