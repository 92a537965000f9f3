//! The durable webhook inbox: with `inbox.mode = "durable"`, the events of a POST are committed before
//! Meta gets its 200 (Meta retries for about 36 hours what it did not get a 200 for, and never replays
//! what it did). One writer task commits concurrent requests' events together (group commit): a request
//! waits for the one transaction its events joined, not for a transaction of its own. A failed commit
//! fails every request in it, which answer 503 so Meta retries. Tenants mark rows done (or failed, with
//! the reason); on start-up, pending rows are handed to the engine again.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use switchboard_actors::{EventSink, InboundEvent, Router};
use tokio::sync::{mpsc, oneshot};

use crate::store::{InboxRow, Store, StoreError};

/// Events of one request, and where to send the result.
struct Batch {
    rows: Vec<InboxRow>,
    reply: oneshot::Sender<Result<Vec<Option<i64>>, String>>,
}

/// The handle requests commit through. Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::Sender<Batch>,
}

/// The most rows one group commit writes.
const MAX_ROWS: usize = 1000;

impl Inbox {
    /// Starts the writer task.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel::<Batch>(4096);
        tokio::spawn(writer(store, rx));
        Self { tx }
    }

    /// Commits `events` (with their tenant page) and returns each one's inbox id, `None` for one already
    /// stored (a redelivery). `Err` means nothing is known to be stored: answer 503.
    pub async fn commit(&self, events: &[(&InboundEvent, &str)]) -> Result<Vec<Option<i64>>, String> {
        let rows = events.iter().map(|(e, page)| row(e, page)).collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.tx.send(Batch { rows, reply }).await.map_err(|_| "the inbox writer stopped".to_owned())?;
        answer.await.map_err(|_| "the inbox writer stopped".to_owned())?
    }
}

fn row(event: &InboundEvent, page: &str) -> Result<InboxRow, String> {
    let json = serde_json::to_string(event).map_err(|e| e.to_string())?;
    let dedup_key = event.dedup_key().unwrap_or_else(|| format!("h:{}", hex::encode(Sha256::digest(json.as_bytes()))));
    Ok(InboxRow { page_id: page.to_owned(), dedup_key, event: json })
}

async fn writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Batch>) {
    while let Some(first) = rx.recv().await {
        let mut batches = vec![first];
        let mut rows = batches[0].rows.len();
        while rows < MAX_ROWS {
            match rx.try_recv() {
                Ok(batch) => {
                    rows += batch.rows.len();
                    batches.push(batch);
                }
                Err(_) => break,
            }
        }
        let all: Vec<InboxRow> = batches.iter().flat_map(|b| b.rows.iter().cloned()).collect();
        match store.inbox_insert(&all).await {
            Ok(ids) => {
                let mut ids = ids.into_iter();
                for batch in batches {
                    let mine: Vec<Option<i64>> = ids.by_ref().take(batch.rows.len()).collect();
                    let _ = batch.reply.send(Ok(mine));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, rows, "inbox commit failed; answering 503");
                for batch in batches {
                    let _ = batch.reply.send(Err(err.to_string()));
                }
            }
        }
    }
}

/// Marks finished events in the store.
pub struct StoreEvents {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl EventSink for StoreEvents {
    async fn finished(&self, events: Vec<(i64, Option<String>)>) {
        if let Err(err) = self.store.inbox_finish(&events).await {
            // The rows stay pending and are handed over again at the next start (at least once).
            tracing::error!(error = %err, n = events.len(), "cannot mark inbox rows finished");
        }
    }
}

/// Hands every pending inbox row to the engine again, oldest first (after a restart or a crash).
pub async fn recover(store: &dyn Store, router: &Router) -> Result<usize, StoreError> {
    let pending = store.inbox_pending(1_000_000).await?;
    let mut handed = 0;
    for (id, json) in pending {
        match serde_json::from_str::<InboundEvent>(&json) {
            Ok(mut event) => {
                event.inbox_id = Some(id);
                router.dispatch(event);
                handed += 1;
            }
            Err(err) => {
                store.inbox_finish(&[(id, Some(format!("stored event unreadable: {err}")))]).await?;
            }
        }
    }
    Ok(handed)
}
