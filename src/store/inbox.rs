//! The durable webhook inbox and its reply outbox: the group-committed writes go to the backend's [`Batched`]
//! writer; reading pending rows, replies, counts, replay and pruning are written once here.

use chrono::{DateTime, Utc};

use super::decode::{ReplyRow, recorded_reply};
use super::{Db, InboxId, Outcome, RecordedReply, ReplyId, Store, StoreError, on};
use crate::domain::{ClientId, PageId};

/// Setting whether replies ($1 ids) were never attempted ($2), up to the closing of the UNNEST.
macro_rules! mark_statement {
    () => {
        "UPDATE webhook_replies r SET unattempted = $2 FROM UNNEST($1::bigint[]"
    };
}

/// Only a reply not sent may be marked never attempted ($2).
macro_rules! unsent_only {
    () => {
        "(NOT $2 OR r.sent_at IS NULL)"
    };
}

/// The oldest `$2` inbox rows finished before `$1`: one pruning batch, whose replies go first, then the rows.
macro_rules! prune_batch {
    () => {
        "(SELECT id FROM webhook_inbox WHERE finished_at < $1 ORDER BY id LIMIT $2)"
    };
}

/// Where an inbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxStatus {
    /// Acknowledged to Meta, not finished yet.
    Pending,
    Done,
    /// Finished without an answer, with a reason (`inbox replay --failed` puts it back).
    Failed,
}

impl InboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Pending => "pending",
            InboxStatus::Done => "done",
            InboxStatus::Failed => "failed",
        }
    }

    /// The status stored as `text`.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "pending" => Ok(InboxStatus::Pending),
            "done" => Ok(InboxStatus::Done),
            "failed" => Ok(InboxStatus::Failed),
            other => Err(StoreError::Corrupt(format!("webhook_inbox.status: {other:?}"))),
        }
    }
}

/// A pending inbox row: its id, its tenant Page (as committed) and its event JSON.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: InboxId,
    pub page: String,
    pub event: String,
}

/// A Page's pending inbox rows: how many, and when the oldest was received.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingPage {
    pub page_id: String,
    pub pending: i64,
    pub oldest: DateTime<Utc>,
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
    pub inbox_id: InboxId,
    /// The reply's place among the event's replies, from 0.
    pub seq: i32,
    pub text: String,
    /// Whom it goes to (a PSID or IGSID).
    pub recipient: String,
    /// In a cluster: recorded only while this node owns the event's page.
    pub fence: Option<Fence>,
    /// Recorded already marked as about to be sent (its sender sends it at once): of unknown outcome until
    /// it is marked sent, like a reply marked by `replies_attempting`.
    pub attempting: bool,
}

impl Store {
    /// Commits events to the webhook inbox in one transaction; for each, the new row's id, or `None` when
    /// the page already has that dedup key (a redelivery).
    pub async fn inbox_insert(&self, rows: &[InboxRow]) -> Result<Vec<Option<InboxId>>, StoreError> {
        self.batched.insert_inbox_rows(rows, crate::clock::now()).await
    }

    /// Marks inbox rows done or failed with the reason, in one transaction.
    pub async fn inbox_finish(&self, rows: &[(InboxId, Outcome)]) -> Result<(), StoreError> {
        self.inbox_progress(&[], rows).await
    }

    /// In one transaction: replies Meta accepted (outbox row, its message_id) and finished inbox rows (done, or
    /// failed, with the outcome's reason). Rows already sent or finished are left as they are.
    pub async fn inbox_progress(
        &self,
        sent: &[(ReplyId, Option<String>)],
        finished: &[(InboxId, Outcome)],
    ) -> Result<(), StoreError> {
        self.batched.write_progress(sent, finished, &[], crate::clock::now()).await
    }

    /// `inbox_progress` in a cluster: each finished row only if its fence (one per row) holds.
    pub async fn inbox_progress_fenced(
        &self,
        sent: &[(ReplyId, Option<String>)],
        finished: &[(InboxId, Outcome)],
        fences: &[Option<Fence>],
    ) -> Result<(), StoreError> {
        self.batched.write_progress(sent, finished, fences, crate::clock::now()).await
    }

    /// Records replies in the outbox in one transaction; for each, the stored row (a reply recorded
    /// before under the same inbox id and seq is returned as it was stored).
    pub async fn replies_record(&self, rows: &[NewReply]) -> Result<Vec<RecordedReply>, StoreError> {
        self.replies_record_fenced(rows)
            .await?
            .into_iter()
            .map(|r| r.ok_or_else(|| StoreError::Conflict("a reply was refused by its fence".to_owned())))
            .collect()
    }

    /// `replies_record` for rows that may carry fences: a row whose fence does not hold is `None`.
    pub async fn replies_record_fenced(&self, rows: &[NewReply]) -> Result<Vec<Option<RecordedReply>>, StoreError> {
        self.batched.record_replies(rows, crate::clock::now()).await
    }

    /// Pending rows of `page` (id, event JSON), oldest first.
    pub async fn inbox_pending_of(&self, page: &str, limit: i64) -> Result<Vec<(InboxId, String)>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, event FROM webhook_inbox WHERE status = 'pending' AND page_id = $1 ORDER BY id LIMIT $2",
            )
            .bind(page)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(id, event)| (InboxId(id), event)).collect())
        })
    }

    /// The replies recorded for an inbox row, in order.
    pub async fn replies_of(&self, inbox_id: InboxId) -> Result<Vec<RecordedReply>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<ReplyRow> = sqlx::query_as(
                "SELECT id, body, sent_at IS NOT NULL, unattempted, recorded_at FROM webhook_replies \
                 WHERE inbox_id = $1 ORDER BY seq",
            )
            .bind(inbox_id.0)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(recorded_reply).collect())
        })
    }

    /// Replies a stopping tenant never sent: sent without settling first when their event is handled again.
    /// In a cluster each holds only under its fence: a tenant that lost its Page (or wrote too late) leaves its
    /// replies of unknown outcome, for the new owner to settle.
    pub async fn replies_unattempted(&self, replies: &[(ReplyId, Option<Fence>)]) -> Result<(), StoreError> {
        self.mark_unattempted(replies, true).await.map(drop)
    }

    /// Marks replies as about to be sent (their outcome is unknown from now until Meta's answer is stored); in a
    /// cluster (on PostgreSQL) each only under its fence, its event's page and epoch. For each, whether it was
    /// marked (false: its fence did not hold).
    pub async fn replies_attempting(&self, replies: &[(ReplyId, Option<Fence>)]) -> Result<Vec<bool>, StoreError> {
        self.mark_unattempted(replies, false).await
    }

    /// Sets whether `replies` were never attempted (`value`; only replies not sent are marked never attempted),
    /// each under its fence when every one has one. For each, whether it was set.
    async fn mark_unattempted(
        &self,
        replies: &[(ReplyId, Option<Fence>)],
        value: bool,
    ) -> Result<Vec<bool>, StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let ids: Vec<i64> = replies.iter().map(|(id, _)| id.0).collect();
                let fences: Vec<Fence> = replies.iter().filter_map(|(_, f)| f.clone()).collect();
                if fences.len() != ids.len() {
                    sqlx::query(concat!(mark_statement!(), ") AS t(id) WHERE r.id = t.id AND ", unsent_only!()))
                        .bind(&ids)
                        .bind(value)
                        .execute(pool)
                        .await?;
                    return Ok(vec![true; ids.len()]);
                }
                let (pages, epochs, nodes) = super::postgres::fence_columns(fences.iter().map(Some));
                // One statement (rather than one per reply in a transaction): a stopping owner's late write and
                // the new owner's marks rarely wait on each other, and a deadlock costs one retried statement.
                let marked: Vec<(i64,)> = sqlx::query_as(concat!(
                    mark_statement!(),
                    ", $3::text[], $4::bigint[], $5::bigint[]) AS t(id, page, epoch, node) WHERE r.id = t.id AND ",
                    unsent_only!(),
                    " AND ",
                    super::postgres::fence_holds!(),
                    " RETURNING r.id"
                ))
                .bind(&ids)
                .bind(value)
                .bind(&pages)
                .bind(&epochs)
                .bind(&nodes)
                .fetch_all(pool)
                .await?;
                let marked: std::collections::HashSet<i64> = marked.into_iter().map(|(id,)| id).collect();
                Ok(ids.iter().map(|id| marked.contains(id)).collect())
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for (id, _) in replies {
                    sqlx::query(concat!(
                        "UPDATE webhook_replies AS r SET unattempted = $2 WHERE r.id = $1 AND ",
                        unsent_only!()
                    ))
                    .bind(id.0)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(vec![true; replies.len()])
            }
        }
    }

    /// Meta's message ids of the replies of `page` stored as sent to `recipient`, recorded since `since`.
    pub async fn sent_ids(&self, page: &str, recipient: &str, since: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT r.message_id FROM webhook_replies r JOIN webhook_inbox i ON i.id = r.inbox_id \
                 WHERE r.recorded_at >= $1 AND r.recipient = $2 AND i.page_id = $3 AND r.message_id IS NOT NULL",
            )
            .bind(since)
            .bind(recipient)
            .bind(page)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
    }

    /// Deletes up to `limit` inbox rows (and their replies) finished before `before`, oldest first;
    /// returns how many. Pending rows are never deleted.
    pub async fn inbox_prune(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(concat!("DELETE FROM webhook_replies WHERE inbox_id IN ", prune_batch!()))
                .bind(before)
                .bind(limit)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query(concat!("DELETE FROM webhook_inbox WHERE id IN ", prune_batch!()))
                .bind(before)
                .bind(limit)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        })
    }

    /// Pending rows received before `received_before`, oldest first.
    pub async fn inbox_pending(&self, received_before: DateTime<Utc>, limit: i64) -> Result<Vec<Pending>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<(i64, String, String)> = sqlx::query_as(
                "SELECT id, page_id, event FROM webhook_inbox WHERE status = 'pending' AND received_at <= $1 \
                 ORDER BY id LIMIT $2",
            )
            .bind(received_before)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(id, page, event)| Pending { id: InboxId(id), page, event }).collect())
        })
    }

    /// The ids and pages of pending rows received before `received_before`, oldest first (cheap: no event
    /// bodies).
    pub async fn inbox_pending_ids(
        &self,
        received_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(InboxId, String)>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, page_id FROM webhook_inbox WHERE status = 'pending' AND received_at <= $1 \
                 ORDER BY id LIMIT $2",
            )
            .bind(received_before)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(id, page)| (InboxId(id), page)).collect())
        })
    }

    /// Each Page with pending events: how many, and when the oldest was received (the stuck-Page watchdog, and
    /// `cluster status`). Read through the partial index of pending rows.
    pub async fn inbox_pending_by_page(&self) -> Result<Vec<PendingPage>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT page_id, CAST(count(*) AS BIGINT), min(received_at) FROM webhook_inbox \
                 WHERE status = 'pending' GROUP BY page_id ORDER BY page_id",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(page_id, pending, oldest)| PendingPage { page_id, pending, oldest }).collect())
        })
    }

    /// The event of a row that is still pending, if it is.
    pub async fn inbox_pending_event(&self, id: InboxId) -> Result<Option<String>, StoreError> {
        on!(self, |pool| {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT event FROM webhook_inbox WHERE id = $1 AND status = 'pending'")
                    .bind(id.0)
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(|(event,)| event))
        })
    }

    /// Rows per status.
    pub async fn inbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        on!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT status, CAST(count(*) AS BIGINT) FROM webhook_inbox GROUP BY status ORDER BY status",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Puts failed rows (of one client's pages, or all) back to pending; returns how many.
    pub async fn inbox_requeue_failed(&self, client_id: Option<ClientId>) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query(
                "UPDATE webhook_inbox SET status = 'pending', reason = NULL, finished_at = NULL \
                 WHERE status = 'failed' AND ($1 IS NULL OR page_id IN \
                     (SELECT facebook_page_id FROM client_integrations WHERE client_id = $1))",
            )
            .bind(client_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }
}
