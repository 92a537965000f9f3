//! The stuck-Page watchdog's findings (`inbox::watchdog`): what the node that checked a Page found, so any
//! process (`switchboard inbox stats`) can show it. Also failing a disconnected Page's leftover pending events.

use sqlx::FromRow;

use super::{Store, StoreError, on};

/// A Page found stuck: its oldest pending event waited past `inbox.stuck_after_secs` and none of its events
/// finished meanwhile. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct StuckPage {
    pub page_id: String,
    /// A fixed label (`no_tenant`, `throttled`, …).
    pub reason: String,
    /// The reason in words, for people.
    pub detail: String,
    pub pending: i64,
    /// When the oldest pending event was received.
    pub oldest_ms: i64,
    /// When the Page was first found stuck.
    pub since_ms: i64,
    /// The node that checked it.
    pub node: String,
    pub checked_ms: i64,
}

impl Store {
    /// One check's findings: `stuck` replaces what was kept for those Pages, `progressing` (Pages checked and
    /// not stuck) are cleared, and so is every Page with nothing pending any more.
    pub async fn stuck_pages_report(&self, stuck: &[StuckPage], progressing: &[&str]) -> Result<(), StoreError> {
        on!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "DELETE FROM stuck_pages WHERE page_id NOT IN \
                 (SELECT page_id FROM webhook_inbox WHERE status = 'pending')",
            )
            .execute(&mut *tx)
            .await?;
            for page in progressing {
                sqlx::query("DELETE FROM stuck_pages WHERE page_id = $1").bind(page).execute(&mut *tx).await?;
            }
            for s in stuck {
                sqlx::query(
                    "INSERT INTO stuck_pages (page_id, reason, detail, pending, oldest_ms, since_ms, node, checked_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (page_id) DO UPDATE SET \
                     reason = excluded.reason, detail = excluded.detail, pending = excluded.pending, \
                     oldest_ms = excluded.oldest_ms, since_ms = excluded.since_ms, node = excluded.node, \
                     checked_ms = excluded.checked_ms",
                )
                .bind(&s.page_id)
                .bind(&s.reason)
                .bind(&s.detail)
                .bind(s.pending)
                .bind(s.oldest_ms)
                .bind(s.since_ms)
                .bind(&s.node)
                .bind(s.checked_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The Pages last found stuck, oldest pending event first.
    pub async fn stuck_pages(&self) -> Result<Vec<StuckPage>, StoreError> {
        on!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT page_id, reason, detail, pending, oldest_ms, since_ms, node, checked_ms FROM stuck_pages \
                 ORDER BY oldest_ms, page_id",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Fails the pending events of a disconnected `page` received before `received_before`, with `reason`
    /// (leftovers nobody can answer; `inbox replay --failed` puts them back); how many. Only while the Page is
    /// still disconnected, checked in the same statement: a Page connected again meanwhile keeps its events.
    pub async fn inbox_fail_pending_of(
        &self,
        page: &str,
        reason: &str,
        received_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query(
                "UPDATE webhook_inbox SET status = 'failed', reason = $2, finished_at = $3 \
                 WHERE page_id = $1 AND status = 'pending' AND received_at < $4 \
                 AND NOT EXISTS (SELECT 1 FROM client_integrations \
                     WHERE facebook_page_id = $1 AND status <> 'revoked')",
            )
            .bind(page)
            .bind(reason)
            .bind(crate::clock::now())
            .bind(received_before)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }
}
