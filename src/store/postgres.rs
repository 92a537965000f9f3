//! The PostgreSQL backend's group-committed writes: each group is one statement over arrays, so one round trip
//! and one implicit transaction however many rows it holds, on a connection kept between writes.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::time::Instant;

use super::decode::recorded_reply;
use super::{Batched, Fence, InboxId, InboxRow, NewReply, Outcome, RecordedReply, ReplyId, StoreError};

/// Connects to PostgreSQL.
pub(super) async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(StoreError::Unavailable)
}

pub(super) struct PgBatched {
    pool: PgPool,
    /// Connections the group-commit writes keep between writes (see `writer`).
    kept: std::sync::Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    writers: Vec<(Writer, Instant)>,
    /// The store is closing: nothing more is kept (the pool waits for every connection it lent).
    closed: bool,
}

/// A connection for group-commit writes, and when it came from the pool.
struct Writer {
    conn: PoolConnection<Postgres>,
    taken: Instant,
}

/// A kept connection unused for this long goes back through the pool, which tests it.
const STALE: Duration = Duration::from_secs(10);
/// A kept connection goes back to the pool this long after it left it, so the pool's upkeep (its maximum
/// lifetime) still reaches it under constant load.
const RETURN_AFTER: Duration = Duration::from_secs(300);

/// A progress write: replies Meta accepted ($1 ids, $2 message ids, $5 now), then the finished inbox rows
/// (`UPDATE webhook_inbox i … FROM <rows> WHERE …`, completed by the caller, with `not_finished!()`).
macro_rules! progress_statement {
    () => {
        "WITH sent AS ( \
             UPDATE webhook_replies r SET message_id = t.message_id, sent_at = $5 \
             FROM UNNEST($1::bigint[], $2::text[]) AS t(id, message_id) \
             WHERE r.id = t.id AND r.sent_at IS NULL) \
         UPDATE webhook_inbox i SET status = CASE WHEN t.failed THEN 'failed' ELSE 'done' END, \
             reason = t.reason, finished_at = $5"
    };
}

/// The guard that finishes an inbox row only once. A row is pending exactly while it has no `finished_at`
/// (every statement that sets one sets the other), and the guard says so through `finished_at` rather than
/// `status`: `status = 'pending'` is the predicate of the partial `webhook_inbox_pending` index, and with it
/// the planner could (and, while the statistics were those of a smaller inbox, did) read every pending row
/// through that index and hash-join them with the batch, rather than look each row up by its id. Under a
/// backlog that made each progress write read the whole backlog.
macro_rules! not_finished {
    () => {
        "i.finished_at IS NULL"
    };
}

/// Recording replies ($1 inbox ids, $2 seqs, $3 bodies, $4 now, $5 recipients, $6 recorded as about to be
/// sent), up to the closing of the UNNEST (the caller adds the fence columns, if any, and the alias).
macro_rules! record_statement {
    () => {
        "INSERT INTO webhook_replies (inbox_id, seq, body, recorded_at, recipient, unattempted) \
         SELECT t.inbox_id, t.seq, t.body, $4, t.recipient, NOT t.attempting \
         FROM UNNEST($1::bigint[], $2::int[], $3::text[], $5::text[], $6::bool[]"
    };
}

macro_rules! record_conflict {
    () => {
        " ON CONFLICT (inbox_id, seq) DO UPDATE SET seq = excluded.seq \
         RETURNING id, inbox_id, seq, body, sent_at IS NOT NULL, unattempted, recorded_at"
    };
}

/// A row's fence holds: node `t.node` owns page `t.page` at epoch `t.epoch`, and its lease runs.
macro_rules! fence_holds {
    () => {
        "EXISTS (SELECT 1 FROM page_owners o JOIN cluster_nodes n ON n.id = o.owner \
                 WHERE o.page_id = t.page AND o.owner = t.node AND o.epoch = t.epoch \
                   AND n.left_at IS NULL AND n.lease_until > now())"
    };
}
pub(super) use fence_holds;

/// Fences as the columns a fenced statement binds (a missing fence binds no page: its row's write does not
/// hold).
pub(super) fn fence_columns<'a>(
    fences: impl Iterator<Item = Option<&'a Fence>> + Clone,
) -> (Vec<Option<&'a str>>, Vec<i64>, Vec<i64>) {
    (
        fences.clone().map(|f| f.map(|f| f.page.as_str())).collect(),
        fences.clone().map(|f| f.map_or(0, |f| f.epoch)).collect(),
        fences.map(|f| f.map_or(0, |f| f.node)).collect(),
    )
}

/// The progress statement, with or without the fence (see `write_progress`). Public for the test that
/// checks its plan.
#[doc(hidden)]
pub fn progress_sql(fenced: bool) -> &'static str {
    if fenced {
        concat!(
            progress_statement!(),
            " FROM UNNEST($3::bigint[], $4::text[], $9::bool[], $6::text[], $7::bigint[], $8::bigint[]) ",
            "AS t(id, reason, failed, page, epoch, node) WHERE i.id = t.id AND ",
            not_finished!(),
            " AND ",
            fence_holds!()
        )
    } else {
        concat!(
            progress_statement!(),
            " FROM UNNEST($3::bigint[], $4::text[], $9::bool[]) AS t(id, reason, failed) ",
            "WHERE i.id = t.id AND ",
            not_finished!()
        )
    }
}

/// A recorded reply as its insert returns it: (id, inbox_id, seq, body, sent, unattempted, recorded_at).
type RecordedRow = (i64, i64, i32, String, bool, bool, DateTime<Utc>);

impl PgBatched {
    pub(super) fn new(pool: PgPool) -> Self {
        Self { pool, kept: std::sync::Mutex::default() }
    }

    /// A connection for a group-commit write. sqlx tests a pooled connection with a round trip when it is
    /// taken and again when it is given back: two extra round trips around every write, one of them before
    /// it. So a connection whose write succeeded is kept for the next write (see `after_write`), and taken
    /// here while it is fresh; else one comes from the pool.
    async fn writer(&self) -> Result<Writer, StoreError> {
        loop {
            let kept = self.kept().writers.pop();
            match kept {
                Some((writer, last_used)) if last_used.elapsed() < STALE => return Ok(writer),
                // Back to the pool, which tests it before anyone uses it again.
                Some(stale) => drop(stale),
                None => return Ok(Writer { conn: self.pool.acquire().await?, taken: Instant::now() }),
            }
        }
    }

    /// Keeps `writer` for the next write if its write succeeded, it is not due back, and fewer than half
    /// the pool are kept (other queries always find connections); else it goes back to the pool (which
    /// tests it, and drops it if the write failed for a lost connection).
    fn after_write<T>(&self, writer: Writer, result: &Result<T, sqlx::Error>) {
        if result.is_ok() && writer.taken.elapsed() < RETURN_AFTER {
            let most = self.pool.options().get_max_connections() as usize / 2;
            let mut kept = self.kept();
            if !kept.closed && kept.writers.len() < most {
                kept.writers.push((writer, Instant::now()));
            }
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Batched for PgBatched {
    /// Gives the kept connections back, and keeps none from now on (else `pool.close()` waits for them).
    fn release(&self) {
        let mut kept = self.kept();
        kept.closed = true;
        kept.writers.clear();
    }

    async fn insert_inbox_rows(
        &self,
        rows: &[InboxRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<InboxId>>, StoreError> {
        let pages: Vec<&str> = rows.iter().map(|r| r.page_id.as_str()).collect();
        let keys: Vec<&str> = rows.iter().map(|r| r.dedup_key.as_str()).collect();
        let events: Vec<&str> = rows.iter().map(|r| r.event.as_str()).collect();
        let done: Vec<bool> = rows.iter().map(|r| r.done).collect();
        let customers: Vec<Option<&str>> = rows.iter().map(|r| r.customer_id.as_deref()).collect();
        let mut writer = self.writer().await?;
        let inserted: Result<Vec<(i64, String, String)>, _> = sqlx::query_as(
            "INSERT INTO webhook_inbox (page_id, dedup_key, event, received_at, status, finished_at, customer_id) \
             SELECT page_id, dedup_key, event, $5, CASE WHEN done THEN 'done' ELSE 'pending' END, \
                    CASE WHEN done THEN $5::timestamptz END, customer_id \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $6::text[]) WITH ORDINALITY \
                  AS t(page_id, dedup_key, event, done, customer_id, n) \
             ORDER BY n \
             ON CONFLICT (page_id, dedup_key) DO NOTHING RETURNING id, page_id, dedup_key",
        )
        .bind(&pages)
        .bind(&keys)
        .bind(&events)
        .bind(&done)
        .bind(now)
        .bind(&customers)
        .fetch_all(&mut *writer.conn)
        .await;
        self.after_write(writer, &inserted);
        let inserted = inserted?;
        let mut ids: HashMap<(&str, &str), InboxId> =
            inserted.iter().map(|(id, page, key)| ((page.as_str(), key.as_str()), InboxId(*id))).collect();
        // The first row with a key took the id (rows are inserted in order); later copies were duplicates.
        Ok(rows.iter().map(|r| ids.remove(&(r.page_id.as_str(), r.dedup_key.as_str()))).collect())
    }

    async fn write_progress(
        &self,
        sent: &[(ReplyId, Option<String>)],
        finished: &[(InboxId, Outcome)],
        fences: &[Option<Fence>],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (sent_ids, message_ids): (Vec<i64>, Vec<Option<&str>>) =
            sent.iter().map(|(id, m)| (id.0, m.as_deref())).unzip();
        let (finished_ids, reasons): (Vec<i64>, Vec<Option<&str>>) =
            finished.iter().map(|(id, outcome)| (id.0, outcome.reason())).unzip();
        let failed: Vec<bool> = finished.iter().map(|(_, outcome)| outcome.is_failed()).collect();
        let (pages, epochs, nodes) = fence_columns(fences.iter().map(Option::as_ref));
        let mut writer = self.writer().await?;
        // Sent marks are facts (Meta answered): stored whoever owns the page now. Finishing an event is on the
        // way to a send, so in a cluster it holds only under its fence.
        let statement = progress_sql(!fences.is_empty());
        let done = sqlx::query(statement)
            .bind(&sent_ids)
            .bind(&message_ids)
            .bind(&finished_ids)
            .bind(&reasons)
            .bind(now)
            .bind(&pages)
            .bind(&epochs)
            .bind(&nodes)
            .bind(&failed)
            .execute(&mut *writer.conn)
            .await;
        self.after_write(writer, &done);
        done?;
        Ok(())
    }

    async fn record_replies(
        &self,
        rows: &[NewReply],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<RecordedReply>>, StoreError> {
        // One statement may not touch a row twice, so send each (inbox_id, seq) once: its first copy.
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        let unique: Vec<&NewReply> = rows.iter().filter(|r| seen.insert((r.inbox_id, r.seq))).collect();
        let inbox_ids: Vec<i64> = unique.iter().map(|r| r.inbox_id.0).collect();
        let seqs: Vec<i32> = unique.iter().map(|r| r.seq).collect();
        let bodies: Vec<&str> = unique.iter().map(|r| r.text.as_str()).collect();
        let recipients: Vec<&str> = unique.iter().map(|r| r.recipient.as_str()).collect();
        let attempting: Vec<bool> = unique.iter().map(|r| r.attempting).collect();
        let fences: Vec<Fence> = unique.iter().filter_map(|r| r.fence.clone()).collect();
        let fenced = !fences.is_empty();
        if fenced && fences.len() != unique.len() {
            return Err(StoreError::Corrupt("a batch of replies mixes fenced and unfenced rows".to_owned()));
        }
        let (pages, epochs, nodes) = fence_columns(fences.iter().map(Some));
        // A no-op update on conflict, so the row recorded first is returned. In a cluster a row is recorded
        // only under its fence (in the same statement).
        let statement = if fenced {
            concat!(
                record_statement!(),
                ", $7::text[], $8::bigint[], $9::bigint[]) ",
                "AS t(inbox_id, seq, body, recipient, attempting, page, epoch, node) WHERE ",
                fence_holds!(),
                record_conflict!()
            )
        } else {
            concat!(record_statement!(), ") AS t(inbox_id, seq, body, recipient, attempting)", record_conflict!())
        };
        let mut writer = self.writer().await?;
        let recorded: Result<Vec<RecordedRow>, _> = sqlx::query_as(statement)
            .bind(&inbox_ids)
            .bind(&seqs)
            .bind(&bodies)
            .bind(now)
            .bind(&recipients)
            .bind(&attempting)
            .bind(&pages)
            .bind(&epochs)
            .bind(&nodes)
            .fetch_all(&mut *writer.conn)
            .await;
        self.after_write(writer, &recorded);
        let recorded = recorded?;
        let by_key: HashMap<(InboxId, i32), RecordedReply> = recorded
            .into_iter()
            .map(|(id, inbox_id, seq, text, sent, unattempted, at)| {
                ((InboxId(inbox_id), seq), recorded_reply((id, text, sent, unattempted, at)))
            })
            .collect();
        rows.iter()
            .map(|r| match by_key.get(&(r.inbox_id, r.seq)) {
                Some(recorded) => Ok(Some(recorded.clone())),
                None if fenced => Ok(None),
                None => Err(StoreError::Corrupt(format!(
                    "reply ({}, {}) was not returned by its insert",
                    r.inbox_id, r.seq
                ))),
            })
            .collect()
    }
}
