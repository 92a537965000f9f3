//! The durable webhook inbox and its reply outbox. With `inbox.mode = "durable"`, the events of a POST
//! are committed before Meta gets its 200 (Meta retries for about 36 hours what it did not get a 200 for,
//! and never replays what it did); a failed commit answers 503 so Meta retries.
//!
//! Tenants record an event's replies in the outbox before sending any, store Meta's `message_id` for
//! each reply it accepts, and mark the event done (or failed, with the reason). On start-up, pending events
//! are handed to the engine again; a recovered event reuses its recorded replies and skips those Meta
//! accepted. The window left: a reply Meta accepted whose answer was not stored yet when the process died
//! (in flight, or its `message_id` not yet committed) is sent again.
//!
//! Every write goes through a [`GroupCommit`] writer: requests that arrive while a transaction runs share
//! the next one, so concurrent webhooks (or tenants) do not each pay for a commit.
//!
//! A webhook waits at most `inbox.commit_timeout_ms` for its commit (Meta wants an answer within 5 s), then
//! gets 503. A commit that was still running then may yet succeed: such a row, like any row whose event
//! the engine lost (a quarantine, storage refusing its replies), is pending and not in flight, and the
//! sweeper hands it over again. [`InFlight`] is what keeps the sweeper from handing over an event the engine
//! still holds; what a failed tenant held is due again once its Send API calls in flight are over.

mod group_commit;
mod in_flight;
mod ingest;
mod recovery;
mod retention;
mod sink;
pub mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use switchboard_actors::{EventSink, InboundEvent, InboxId, PageId, Progress, Router};

pub use group_commit::{GroupCommit, WRITE_SECONDS};
pub use in_flight::InFlight;
pub use ingest::{Ingest, UNHANDLED, UNHANDLED_NOT_KEPT, Unavailable};
pub use retention::{prune, prune_logged};
pub use sink::{PROGRESS_RETRIES, StoreEvents};
pub use watchdog::{Reason as StuckReason, Watchdog};

use crate::meta::webhook::{RAW_LIMIT, Unhandled};
use crate::ownership::{Owned, Wakes};
use crate::store::{InboxRow, Store, UnhandledRow};

/// Webhooks answered 503 because their events could not be committed (in time).
pub const COMMIT_FAILURES: &str = "switchboard_inbox_commit_failures_total";
/// Committed events handed to the engine that no tenant took (they stay pending), by reason.
pub const NOT_TAKEN: &str = "switchboard_inbox_events_not_taken_total";

/// When a failed commit was last logged.
static COMMIT_FAILURE_LOGGED: crate::telemetry::Sometimes = crate::telemetry::Sometimes::every(Duration::from_secs(1));
/// When an event no tenant took was last logged.
static NOT_TAKEN_LOGGED: crate::telemetry::Sometimes = crate::telemetry::Sometimes::every(Duration::from_secs(10));

/// The durable inbox of a running server: webhook commits, and handing pending events to the engine.
/// Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    writer: GroupCommit<InboxRow, Option<InboxId>>,
    store: Store,
    router: Router,
    in_flight: Arc<InFlight>,
    events: Arc<StoreEvents>,
    commit_timeout: Duration,
    /// In a cluster: the Pages this node owns, and how the owners of the others are woken.
    cluster: Option<(Arc<Owned>, Wakes)>,
}

impl Inbox {
    /// Starts the writer task. `in_flight` must be the one `events` (the engine's sink) reports to.
    pub fn start(
        store: Store,
        router: Router,
        in_flight: Arc<InFlight>,
        events: Arc<StoreEvents>,
        commit_timeout: Duration,
        commit_writers: usize,
    ) -> Self {
        let writer = {
            let store = store.clone();
            GroupCommit::start("inbox", commit_writers, Duration::ZERO, move |rows: Vec<InboxRow>| {
                let store = store.clone();
                async move {
                    store.inbox_insert(&rows).await.map_err(|err| {
                        tracing::error!(error = %err, rows = rows.len(), "inbox commit failed; answering 503");
                        err.to_string()
                    })
                }
            })
        };
        Self { writer, store, router, in_flight, events, commit_timeout, cluster: None }
    }

    /// In a cluster: events are handed over only for the Pages this node owns; the owners of the others are
    /// woken.
    pub fn in_cluster(mut self, owned: Arc<Owned>, wakes: Wakes) -> Self {
        self.cluster = Some((owned, wakes));
        self
    }

    /// Waits until the progress reported so far (sent replies, finished events) is stored; at shutdown,
    /// after the engine stopped and before storage closes, so no confirmed reply is sent again at the next
    /// start.
    pub async fn flush(&self) {
        self.events.progress(Progress::default()).await;
    }

    /// Commits `events` (with their tenant page) and returns each one's inbox id, `None` for one already
    /// stored (a redelivery). `Err` means the commit failed or did not finish in time: answer 503.
    pub async fn commit(&self, events: &[(&InboundEvent, &PageId)]) -> Result<Vec<Option<InboxId>>, String> {
        if events.is_empty() {
            // Receipts only, or Pages no client owns: nothing to store, no writer round trip.
            return Ok(Vec::new());
        }
        let rows =
            events.iter().map(|(e, page)| row(e, page, self.router.needs_tenant(e))).collect::<Result<Vec<_>, _>>()?;
        let committed = self.writer.submit_by(rows, Some(tokio::time::Instant::now() + self.commit_timeout)).await;
        if let Err(problem) = &committed {
            metrics::counter!(COMMIT_FAILURES).increment(1);
            // At Meta's rate an outage would fail every webhook: the log gets one line a second at most.
            if COMMIT_FAILURE_LOGGED.ready() {
                tracing::warn!(%problem, "cannot commit a webhook's events; answering 503 (Meta delivers again)");
            }
        }
        committed
    }

    /// Keeps the parts of a webhook body Switchboard does not understand, before the 200 like the events (a
    /// redelivery is kept once). Rare, so a plain transaction rather than a group commit.
    pub async fn keep_unhandled(&self, parts: &[Unhandled]) -> Result<(), String> {
        let rows: Vec<UnhandledRow> = parts.iter().map(unhandled_row).collect();
        match tokio::time::timeout(self.commit_timeout, self.store.unhandled_insert(&rows)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::error!(error = %err, parts = rows.len(), "cannot keep unhandled webhook parts; the events are acknowledged all the same");
                Err(err.to_string())
            }
            Err(_) => Err("timed out keeping unhandled webhook parts".to_owned()),
        }
    }

    /// This node no longer runs `page`'s tenant: the events it held are the next owner's.
    pub fn let_go(&self, page: &PageId) {
        self.in_flight.forget_page(page);
    }

    /// The epoch under which this node runs `page` (always 0 outside a cluster), if it does.
    fn runs(&self, page: &PageId) -> Option<i64> {
        match &self.cluster {
            None => Some(0),
            Some((owned, _)) => owned.epoch(page),
        }
    }

    /// Since when this node runs `page` (a cluster node: since it claimed it; `None` outside a cluster).
    fn runs_since(&self, page: &PageId) -> Option<std::time::Instant> {
        self.cluster.as_ref().and_then(|(owned, _)| owned.owned_since(page))
    }

    /// Hands a committed event of tenant `page` to the engine. One no tenant takes (its tenant is quarantined,
    /// its start buffer is full, the Page moved away a moment ago) is not held: it stays pending, is counted
    /// and logged, and the next sweep (or the Page's owner) hands it over again. In a cluster, the event of a
    /// Page another node owns is not handed over here: its owner is woken for it.
    pub fn dispatch(&self, mut event: InboundEvent, id: InboxId, page: PageId) {
        let Some(epoch) = self.runs(&page) else {
            if let Some((_, wakes)) = &self.cluster {
                wakes.wake(page);
            }
            return;
        };
        event.inbox_id = Some(id);
        self.in_flight.handed(id, page.clone(), epoch);
        if let Some(reason) = self.router.dispatch(event).not_taken() {
            self.in_flight.unheld([id]);
            metrics::counter!(NOT_TAKEN, "reason" => reason).increment(1);
            if NOT_TAKEN_LOGGED.ready() {
                tracing::warn!(%page, reason, "a committed event was handed to the engine and no tenant took it; it \
                    stays pending and is handed over again (further ones within 10 s are only counted)");
            }
        }
    }
}

/// The inbox row the webhook commits for `event` of tenant page `page`: pending if its tenant has something
/// to do with it, else done.
pub fn row(event: &InboundEvent, page: &PageId, pending: bool) -> Result<InboxRow, String> {
    let json = serde_json::to_string(event).map_err(|e| e.to_string())?;
    let dedup_key = event.dedup_key().unwrap_or_else(|| format!("h:{}", hex::encode(Sha256::digest(json.as_bytes()))));
    // This app's own echoes (stored done) repeat the replies the outbox holds: they stay out of the view.
    let customer_id = match event.echo_app() {
        Some(_) if !pending => None,
        _ => event.customer().map(str::to_owned),
    };
    Ok(InboxRow { page_id: page.clone(), dedup_key, event: json, customer_id, done: !pending })
}

/// The row that keeps `part`: its raw JSON cut at `RAW_LIMIT` bytes (on a character boundary), and a hash of
/// the whole part so a redelivery is kept once.
fn unhandled_row(part: &Unhandled) -> UnhandledRow {
    let mut hash = Sha256::new();
    for piece in [part.object, part.kind, part.account.as_deref().unwrap_or_default(), part.raw.as_str()] {
        hash.update(piece.as_bytes());
        hash.update([0]);
    }
    let (raw, detail) = if part.raw.len() > RAW_LIMIT {
        let mut cut = RAW_LIMIT;
        while !part.raw.is_char_boundary(cut) {
            cut -= 1;
        }
        (part.raw[..cut].to_owned(), format!("{} (raw cut at {cut} of {} bytes)", part.detail, part.raw.len()))
    } else {
        (part.raw.clone(), part.detail.clone())
    };
    UnhandledRow {
        object: part.object.to_owned(),
        kind: part.kind.to_owned(),
        reason: part.reason.label().to_owned(),
        detail,
        account_id: part.account.clone(),
        raw,
        raw_hash: hex::encode(hash.finalize()),
    }
}

#[cfg(test)]
mod tests {
    use super::row;

    fn events(fixture: &str) -> Vec<switchboard_actors::InboundEvent> {
        let path = format!("{}/tests/fixtures/webhooks/{fixture}", env!("CARGO_MANIFEST_DIR"));
        crate::meta::webhook::parse(&std::fs::read(path).unwrap()).unwrap().events
    }

    #[test]
    fn rows_name_the_customer_of_messages_postbacks_and_a_persons_echoes_only() {
        let customer = |fixture: &str, pending: bool| {
            let e = events(fixture).remove(0);
            (row(&e, &e.account_id, pending).unwrap().customer_id, e)
        };
        for fixture in ["messenger_text.json", "messenger_postback.json", "instagram_text.json"] {
            let (id, e) = customer(fixture, true);
            assert_eq!(id.as_deref(), Some(e.sender.as_str()), "{fixture}");
        }
        let (own, _) = customer("messenger_echo.json", false);
        assert_eq!(own, None, "this app's own echo repeats the outbox");
        let (person, e) = customer("messenger_echo.json", true);
        assert_eq!(person.as_deref(), Some(e.recipient.as_str()), "a person's echo is the customer's conversation");
        let (receipt, _) = customer("messenger_read_delivery.json", false);
        assert_eq!(receipt, None);
    }
}
