//! What the portal's conversation view reads: a Page's recent conversations (one per customer, newest activity
//! first) and one conversation's stored events with the replies recorded for them. Both come from the durable
//! inbox and outbox, so retention prunes them with the inbox; keyset-paged by inbox id.

use chrono::{DateTime, Utc};

use super::{InboxStatus, Store, StoreError, on};

/// One stored event of a conversation (a customer's message or postback, or a person's echo) and the replies
/// recorded for it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationEntry {
    /// The inbox row's id: the paging cursor.
    pub id: i64,
    /// The event as stored (JSON of `switchboard_actors::InboundEvent`).
    pub event: String,
    pub status: InboxStatus,
    /// Why it failed, for a failed event.
    pub reason: Option<String>,
    pub received_at: DateTime<Utc>,
    pub replies: Vec<ConversationReply>,
}

/// One reply recorded in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationReply {
    /// The Send API body (JSON).
    pub body: String,
    /// Meta's message id, once Meta accepted the reply (or it was found in the conversation afterwards).
    pub message_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A conversation on a Page: the customer, how many of their events are stored (at most
/// [`COUNTED_AT_MOST`]), and the newest one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub customer_id: String,
    pub events: i64,
    pub last: ConversationEntry,
}

/// One page of a Page's conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
    /// The list read [`CONVERSATION_WINDOW`] messages and stopped: older conversations may follow below this
    /// inbox id (the next page's cursor, if this page is not full).
    pub read_down_to: Option<i64>,
}

/// How many of a Page's newest kept messages one page of its conversation list reads, at most: the list costs
/// the same however many messages a Page keeps.
pub const CONVERSATION_WINDOW: i64 = 20_000;
/// A conversation's messages are counted up to this many.
pub const COUNTED_AT_MOST: i64 = 10_000;

/// (customer, events, id, event, status, reason, received, reply body, message id, sent): one entry per row,
/// repeated for each of its replies.
type EntryRow = (
    String,
    i64,
    i64,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// The columns `EntryRow` reads, from an inbox row `i` and its replies `r` (joined to the rows chosen by `pick`,
/// which names each row's customer and event count).
macro_rules! entry_query {
    ($pick:literal) => {
        concat!(
            "WITH pick AS (",
            $pick,
            ") SELECT pick.customer_id, pick.events, i.id, i.event, i.status, i.reason, i.received_at, \
             r.body, r.message_id, r.sent_at \
             FROM pick JOIN webhook_inbox i ON i.id = pick.id \
             LEFT JOIN webhook_replies r ON r.inbox_id = i.id \
             ORDER BY i.id DESC, r.seq"
        )
    };
}

impl Store {
    /// The conversations on `page` whose newest event is older than `before` (an inbox id; `None` for the
    /// newest), newest activity first, at most `limit`, found among the page's newest [`CONVERSATION_WINDOW`]
    /// messages below `before` (a customer with a message at or after `before` was listed already).
    pub async fn conversations(
        &self,
        page: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<ConversationList, StoreError> {
        let before = before.unwrap_or(i64::MAX);
        let (rows, window): (Vec<EntryRow>, (i64, Option<i64>)) = on!(self, |pool| {
            let rows = sqlx::query_as(entry_query!(
                "WITH recent AS (SELECT customer_id, id FROM webhook_inbox \
                     WHERE page_id = $1 AND customer_id IS NOT NULL AND id < $2 ORDER BY id DESC LIMIT $4), \
                 latest AS (SELECT customer_id, MAX(id) AS id FROM recent GROUP BY customer_id), \
                 fresh AS (SELECT customer_id, id FROM latest l WHERE NOT EXISTS (SELECT 1 FROM webhook_inbox n \
                     WHERE n.page_id = $1 AND n.customer_id = l.customer_id AND n.id >= $2) \
                     ORDER BY id DESC LIMIT $3) \
                 SELECT customer_id, id, (SELECT COUNT(*) FROM (SELECT 1 FROM webhook_inbox c WHERE c.page_id = $1 \
                     AND c.customer_id = fresh.customer_id LIMIT $5) counted) AS events FROM fresh"
            ))
            .bind(page)
            .bind(before)
            .bind(limit)
            .bind(CONVERSATION_WINDOW)
            .bind(COUNTED_AT_MOST)
            .fetch_all(pool)
            .await?;
            let window: (i64, Option<i64>) = sqlx::query_as(
                "SELECT CAST(COUNT(*) AS BIGINT), MIN(id) FROM (SELECT id FROM webhook_inbox \
                 WHERE page_id = $1 AND customer_id IS NOT NULL AND id < $2 ORDER BY id DESC LIMIT $3) w",
            )
            .bind(page)
            .bind(before)
            .bind(CONVERSATION_WINDOW)
            .fetch_one(pool)
            .await?;
            (rows, window)
        });
        let conversations = grouped(rows)?
            .into_iter()
            .map(|(customer_id, events, last)| ConversationSummary { customer_id, events, last })
            .collect();
        let read_down_to = window.1.filter(|_| window.0 >= CONVERSATION_WINDOW);
        Ok(ConversationList { conversations, read_down_to })
    }

    /// The events of the conversation with `customer` on `page` older than `before` (an inbox id; `None` for
    /// the newest), newest first, at most `limit`, each with its replies.
    pub async fn conversation(
        &self,
        page: &str,
        customer: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ConversationEntry>, StoreError> {
        let rows: Vec<EntryRow> = on!(self, |pool| {
            sqlx::query_as(entry_query!(
                "SELECT customer_id, id, CAST(0 AS BIGINT) AS events FROM webhook_inbox \
                 WHERE page_id = $1 AND customer_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
            ))
            .bind(page)
            .bind(customer)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(grouped(rows)?.into_iter().map(|(_, _, entry)| entry).collect())
    }
}

/// Folds the joined rows (an entry repeated once per reply, in order) into entries with their replies.
fn grouped(rows: Vec<EntryRow>) -> Result<Vec<(String, i64, ConversationEntry)>, StoreError> {
    let mut out: Vec<(String, i64, ConversationEntry)> = Vec::new();
    for (customer, events, id, event, status, reason, received_at, body, message_id, sent_at) in rows {
        if out.last().is_none_or(|(_, _, e)| e.id != id) {
            let entry = ConversationEntry {
                id,
                event,
                status: InboxStatus::parse(&status)?,
                reason,
                received_at,
                replies: Vec::new(),
            };
            out.push((customer, events, entry));
        }
        if let (Some(body), Some((_, _, entry))) = (body, out.last_mut()) {
            entry.replies.push(ConversationReply { body, message_id, sent_at });
        }
    }
    Ok(out)
}
