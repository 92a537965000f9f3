//! Handing pending events to the engine again: at start-up every pending row, then on each sweep the rows the
//! engine does not hold (or has held too long). An event goes to the Page it was committed under (the row's
//! own page), never to whatever the directory says now; in a cluster a node sweeps only the Pages it runs (the
//! others are their owners' to sweep, and a Page with no owner is the claim loop's).

use std::time::Duration;

use switchboard_actors::{InboundEvent, PageId};

use super::Inbox;
use crate::store::{Outcome, Pending, StoreError};

impl Inbox {
    /// Hands every pending row received before `received_before` that the engine does not hold (or has
    /// held for longer than `stale`) to the engine again, oldest first; returns how many. At start-up this
    /// is every pending row.
    pub async fn recover(&self, received_before: Duration, stale: Duration) -> Result<usize, StoreError> {
        let before = crate::clock::now() - chrono::Duration::from_std(received_before).unwrap_or_default();
        let pending = if self.in_flight.is_empty() && self.cluster.is_none() {
            // Start-up: everything pending is due; read it in one go.
            self.store.inbox_pending(before, 1_000_000).await?
        } else {
            // A sweep: most pending rows are usually held (waiting behind a throttled page, say); read the
            // ids, and the bodies of the due ones only.
            let mut due = Vec::new();
            for (id, page) in self.store.inbox_pending_ids(before, 1_000_000).await? {
                let runs = PageId::parse(&page).ok().and_then(|p| self.runs(&p)).is_some();
                if runs
                    && self.in_flight.due(id, stale)
                    && let Some(event) = self.store.inbox_pending_event(id).await?
                {
                    due.push(Pending { id, page, event });
                }
            }
            due
        };
        self.hand_over(pending).await
    }

    /// Hands `page`'s pending events that the engine does not hold to it, oldest first (its owner was woken
    /// for them, or has just claimed it, or the watchdog found it stuck); returns how many.
    pub async fn recover_page(&self, page: &PageId) -> Result<usize, StoreError> {
        let mut due = Vec::new();
        for (id, event) in self.store.inbox_pending_of(page.as_str(), 10_000).await? {
            if self.in_flight.due(id, Duration::MAX) {
                due.push(Pending { id, page: page.as_str().to_owned(), event });
            }
        }
        self.hand_over(due).await
    }

    /// Hands each row to the engine, under the Page it was committed for; a row whose event cannot be read
    /// is failed with the reason (it can never be answered).
    async fn hand_over(&self, rows: Vec<Pending>) -> Result<usize, StoreError> {
        let mut handed = 0;
        for Pending { id, page, event } in rows {
            let read = serde_json::from_str::<InboundEvent>(&event).map_err(|e| e.to_string());
            match read.and_then(|event| Ok((event, PageId::parse(&page).map_err(|e| e.to_string())?))) {
                Ok((mut event, page)) => {
                    event.recovered = true;
                    self.dispatch(event, id, page);
                    handed += 1;
                }
                Err(err) => {
                    self.store
                        .inbox_finish(&[(id, Outcome::Failed(format!("stored event unreadable: {err}")))])
                        .await?;
                }
            }
        }
        Ok(handed)
    }

    /// One sweep: hands over again pending rows at least `every` old that the engine does not hold (a commit
    /// answered 503 after its deadline that succeeded after all, an event a crashed or quarantined tenant
    /// lost, replies storage refused, a replayed dead letter) or has held for longer than `stale`. Run every
    /// `every` by the server's background jobs.
    pub async fn sweep(&self, every: Duration, stale: Duration) {
        match self.recover(every, stale).await {
            Ok(0) => {}
            Ok(handed) => tracing::info!(handed, "pending inbox events handed to the engine again"),
            Err(err) => tracing::warn!(error = %err, "cannot sweep the inbox; will try again"),
        }
    }
}
