//! NOTIFY and LISTEN. The notifier sends the Pages whose owners must be woken, one NOTIFY per batch. The
//! listener, on a connection of its own, takes wake-ups for the Pages this node owns (their pending events
//! are handed to their tenants, one Page at a time), integration changes (the directory and the owner's
//! tenant reload), and ownership changes (the claim loop runs at once). A notification lost while the
//! connection was down is made up for by handing over every owned Page's pending events once it is back.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::postgres::PgListener;
use switchboard_actors::PageId;
use tokio::sync::mpsc;

use super::{DIRECTORY_CHANNEL, Inner, OWNERS_CHANNEL, WAKE_CHANNEL};
use crate::store::IntegrationStatus;

/// The longest NOTIFY payload sent (PostgreSQL's limit is 8000 bytes).
const PAYLOAD_MAX: usize = 7_000;

/// A LISTEN connection on the cluster's channels.
pub(super) async fn listen(url: &str) -> anyhow::Result<PgListener> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen_all([WAKE_CHANNEL, DIRECTORY_CHANNEL, OWNERS_CHANNEL]).await?;
    Ok(listener)
}

impl Inner {
    /// Sends the wake-ups the inbox queued: what arrives together goes in one NOTIFY per channel payload.
    pub(super) async fn run_notifier(self: Arc<Self>, mut wakes: mpsc::Receiver<PageId>) {
        let mut batch = Vec::new();
        loop {
            let received = tokio::select! {
                () = self.stop.cancelled() => return,
                n = wakes.recv_many(&mut batch, 4096) => n,
            };
            if received == 0 {
                return;
            }
            let pages: BTreeSet<&str> = batch.iter().map(PageId::as_str).collect();
            for payload in payloads(pages) {
                if let Err(e) = self.store.notify(WAKE_CHANNEL, &payload).await {
                    tracing::warn!(error = %e, "cannot wake the owners of Pages; their sweep will hand the events over");
                }
            }
            batch.clear();
        }
    }

    pub(super) async fn run_signals(self: Arc<Self>, mut listener: PgListener) {
        let (pages_tx, pages_rx) = mpsc::unbounded_channel();
        self.tasks.spawn(self.clone().run_wakes(pages_rx));
        loop {
            let next = tokio::select! {
                () = self.stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => self.signal(n.channel(), n.payload(), &pages_tx).await,
                Ok(None) => {
                    // What was NOTIFYed meanwhile is lost: wake-ups (the Pages' pending events are taken again),
                    // integration changes (the directory asks the store again, running tenants reload), ownership
                    // changes (the claim loop runs now).
                    tracing::warn!("the LISTEN connection was lost; every owned Page's pending events are taken again");
                    self.directory.changed();
                    for (page, _) in self.owned.pages() {
                        self.router.reload(&page);
                        let _ = pages_tx.send(page);
                    }
                    self.tick.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn signal(&self, channel: &str, payload: &str, pages: &mpsc::UnboundedSender<PageId>) {
        match channel {
            WAKE_CHANNEL => {
                for page in payload.split(',').filter_map(|p| PageId::parse(p).ok()) {
                    if self.owned.owns(&page) {
                        let _ = pages.send(page);
                    }
                }
            }
            DIRECTORY_CHANNEL => {
                if let Ok(page) = PageId::parse(payload) {
                    self.integration_changed(&page).await;
                }
            }
            OWNERS_CHANNEL => self.tick.notify_one(),
            _ => {}
        }
    }

    /// Hands woken Pages' pending events to their tenants, one Page at a time (wake-ups for a Page that
    /// arrive meanwhile are served by the same read).
    async fn run_wakes(self: Arc<Self>, mut pages: mpsc::UnboundedReceiver<PageId>) {
        let mut batch = Vec::new();
        loop {
            let received = tokio::select! {
                () = self.stop.cancelled() => return,
                n = pages.recv_many(&mut batch, 1024) => n,
            };
            if received == 0 {
                return;
            }
            let unique: BTreeSet<PageId> = batch.drain(..).collect();
            for page in unique.into_iter().filter(|p| self.owned.owns(p)) {
                if let Err(e) = self.inbox.recover_page(&page).await {
                    tracing::warn!(%page, error = %e, "cannot read a woken Page's pending events; the sweep will");
                }
            }
        }
    }

    /// An integration changed on some node: the directory learns it, and the owner's tenant reloads (a new
    /// token, another bot or rate) or stops (disconnected).
    async fn integration_changed(&self, page: &PageId) {
        self.directory.changed();
        match self.store.integration_by_page(page).await {
            Ok(Some(i)) if i.status != IntegrationStatus::Revoked => {
                self.router.connected(i.page_id, i.instagram_account_id, i.client_slug.as_str());
            }
            Ok(_) => {
                self.router.disconnect(page);
                self.tick.notify_one();
            }
            Err(e) => tracing::warn!(%page, error = %e, "cannot read a changed integration; reconcile will"),
        }
    }
}

/// Comma-separated page ids, in payloads of at most `PAYLOAD_MAX` bytes.
fn payloads<'a>(pages: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = vec![String::new()];
    for page in pages {
        let last = out.last_mut().expect("never empty");
        if !last.is_empty() && last.len() + 1 + page.len() > PAYLOAD_MAX {
            out.push(String::new());
        }
        let last = out.last_mut().expect("never empty");
        if !last.is_empty() {
            last.push(',');
        }
        last.push_str(page);
    }
    out.retain(|p| !p.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_postgres_limit() {
        let pages: Vec<String> = (0..2000).map(|i| format!("1047111122{i:05}")).collect();
        let payloads = payloads(pages.iter().map(String::as_str));
        assert!(payloads.len() > 1 && payloads.iter().all(|p| p.len() <= PAYLOAD_MAX));
        assert_eq!(payloads.iter().flat_map(|p| p.split(',')).count(), 2000);
        assert!(super::payloads(std::iter::empty()).is_empty());
    }
}
