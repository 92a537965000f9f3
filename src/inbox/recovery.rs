//! Handing pending events to the engine again: at start-up every pending row, then on each sweep the rows the
//! engine does not hold (or has held too long).

use std::time::Duration;

use switchboard_actors::{InboundEvent, PageId};

use super::Inbox;
use crate::store::StoreError;

impl Inbox {
    /// Hands every pending row received before `received_before` that the engine does not hold (or has
    /// held for longer than `stale`) to the engine again, oldest first; returns how many. At start-up this
    /// is every pending row.
    pub async fn recover(&self, received_before: Duration, stale: Duration) -> Result<usize, StoreError> {
        let before = crate::clock::now() - chrono::Duration::from_std(received_before).unwrap_or_default();
        let pending = if self.in_flight.is_empty() {
            // Start-up: everything pending is due; read it in one go.
            self.store.inbox_pending(before, 1_000_000).await?
        } else {
            // A sweep: most pending rows are usually held (waiting behind a throttled page, say); read the
            // ids, and the bodies of the due ones only.
            let mut due = Vec::new();
            for id in self.store.inbox_pending_ids(before, 1_000_000).await? {
                if self.in_flight.due(id, stale)
                    && let Some(json) = self.store.inbox_pending_event(id).await?
                {
                    due.push((id, json));
                }
            }
            due
        };
        let mut handed = 0;
        for (id, json) in pending {
            match serde_json::from_str::<InboundEvent>(&json) {
                Ok(mut event) => {
                    event.recovered = true;
                    let page =
                        self.router.route(event.account_id.as_str()).map_or(event.account_id.clone(), |r| r.page);
                    self.dispatch(event, id, page);
                    handed += 1;
                }
                Err(err) => {
                    self.store.inbox_finish(&[(id, Some(format!("stored event unreadable: {err}")))]).await?;
                }
            }
        }
        Ok(handed)
    }

    /// Hands `page`'s pending events that the engine does not hold to it, oldest first (its owner was woken
    /// for them, or has just claimed it); returns how many.
    pub async fn recover_page(&self, page: &PageId) -> Result<usize, StoreError> {
        let mut handed = 0;
        for (id, json) in self.store.inbox_pending_of(page.as_str(), 10_000).await? {
            if !self.in_flight.due(id, Duration::MAX) {
                continue;
            }
            match serde_json::from_str::<InboundEvent>(&json) {
                Ok(mut event) => {
                    event.recovered = true;
                    self.dispatch(event, id, page.clone());
                    handed += 1;
                }
                Err(err) => {
                    self.store.inbox_finish(&[(id, Some(format!("stored event unreadable: {err}")))]).await?;
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
