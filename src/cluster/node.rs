//! The node's lease and its Pages. Every quarter TTL (or at once when told: a node left, a Page was released)
//! the node renews its lease and rebalances: it claims the Pages rendezvous hashing gives it whose owner is
//! gone, and drains and releases the ones it should no longer own. A renewal that fails past the lease (or
//! finds it run out) means the node may no longer act: it stops its tenants at once and joins again as a new
//! incarnation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_actors::PageId;

use super::{CLAIMS, Inner, LEASES_LOST, LIVE_NODES, OWNED_PAGES, OWNERS_CHANNEL, RELEASES, RENEWALS, rendezvous};
use crate::store::{Integration, IntegrationStatus, OwnerRecord};

impl Inner {
    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Joins as a new incarnation (its lease runs from the moment it asked, by this node's clock).
    pub(super) async fn join(&self) -> anyhow::Result<()> {
        let asked = Instant::now();
        let node = self.store.node_join(&self.name, self.ttl_ms()).await?;
        self.owned.joined(node, asked + self.lease_ttl);
        tracing::info!(node, name = %self.name, ttl = ?self.lease_ttl, "joined the cluster");
        let _ = self.store.notify(OWNERS_CHANNEL, &format!("joined {node}")).await;
        Ok(())
    }

    pub(super) async fn run_claims(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.lease_ttl / 4);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = ticker.tick() => {}
                () = self.tick.notified() => {}
            }
            self.renew().await;
            if self.owned.lease_holds()
                && let Err(e) = self.rebalance().await
            {
                tracing::warn!(error = %e, "cannot rebalance Pages; will try again");
            }
        }
    }

    async fn renew(&self) {
        if self.owned.node() == 0 {
            if let Err(e) = self.join().await {
                tracing::warn!(error = %e, "cannot join the cluster; will try again");
            }
            return;
        }
        let asked = Instant::now();
        match self.store.node_renew(self.owned.node(), self.ttl_ms()).await {
            Ok(true) => {
                self.owned.renewed(asked + self.lease_ttl);
                metrics::counter!(RENEWALS).increment(1);
            }
            Ok(false) => self.lose("the lease ran out"),
            Err(e) if self.owned.lease_holds() => tracing::warn!(error = %e, "cannot renew the lease; will try again"),
            Err(e) => self.lose(&format!("the database was unreachable past the lease ({e})")),
        }
    }

    /// The lease is gone: every tenant stops at once and nothing more is sent; the node joins again.
    fn lose(&self, why: &str) {
        let node = self.owned.node();
        let pages = self.owned.lost();
        for page in &pages {
            self.router.disown(page);
            self.inbox.let_go(page);
        }
        self.leader.store(false, Ordering::Release);
        metrics::counter!(LEASES_LOST).increment(1);
        metrics::gauge!(OWNED_PAGES).set(0.0);
        tracing::error!(node, pages = pages.len(), %why, "lost the cluster lease; its Pages are left to the others");
    }

    /// Brings what this node runs in line with the database and with rendezvous hashing over the live nodes.
    /// Whatever order claims, releases, connections, disconnections and lost answers came in, one pass leaves
    /// each connected Page either run here under the epoch the database holds for this node, or not run here
    /// and not owned by this node in the database.
    async fn rebalance(&self) -> anyhow::Result<()> {
        let me = self.owned.node();
        let live = self.store.live_nodes().await?;
        metrics::gauge!(LIVE_NODES).set(live.len() as f64);
        self.leader.store(live.first().is_some_and(|(id, _)| *id == me), Ordering::Release);
        let owners: HashMap<PageId, OwnerRecord> =
            self.store.page_owners().await?.into_iter().map(|o| (o.page_id.clone(), o)).collect();
        let live_ids: HashSet<i64> = live.iter().map(|(id, _)| *id).collect();
        let connected: Vec<Integration> = self
            .store
            .list_integrations()
            .await?
            .into_iter()
            .filter(|i| i.status != IntegrationStatus::Revoked)
            .collect();
        let wanted: HashMap<&PageId, &Integration> = connected
            .iter()
            .filter(|i| rendezvous::owner(i.page_id.as_str(), &live) == Some(me))
            .map(|i| (&i.page_id, i))
            .collect();
        // Pages this node runs: given up if another node took them (this one was thought dead), handed over if
        // they are no longer this node's.
        let mut ran = HashSet::new();
        for (page, epoch) in self.owned.pages() {
            let still = owners.get(&page).is_some_and(|o| o.owner == Some(me) && o.epoch == epoch);
            if !still {
                self.owned.released(&page);
                self.router.disown(&page);
                self.inbox.let_go(&page);
                tracing::warn!(%page, "another node owns this Page now; its tenant stopped here");
            } else if !wanted.contains_key(&page) {
                self.release(&page, epoch).await;
            }
            ran.insert(page);
        }
        // Pages the database says this node owns but that it does not run (a claim that committed while its
        // answer was lost, a release that failed): claimed again below if they are this node's, released now
        // if not. Left alone, such a Page would look owned by a live node to every other node, and nobody
        // would answer it.
        for o in owners.values().filter(|o| o.owner == Some(me)) {
            let page = &o.page_id;
            if ran.contains(page) || self.owned.owns(page) || wanted.contains_key(page) {
                continue;
            }
            match self.store.page_release(page, me, o.epoch).await {
                Ok(()) => {
                    tracing::warn!(%page, "released a Page the database said this node owned but it did not run");
                    let _ = self.store.notify(OWNERS_CHANNEL, page.as_str()).await;
                }
                Err(e) => {
                    tracing::warn!(%page, error = %e, "cannot release a Page this node does not run; will try again")
                }
            }
        }
        for (page, integration) in wanted {
            let free = owners.get(page).is_none_or(|o| o.owner.is_none_or(|n| n == me || !live_ids.contains(&n)));
            if !self.owned.owns(page) && free {
                self.claim(integration).await?;
            }
        }
        metrics::gauge!(OWNED_PAGES).set(self.owned.pages().len() as f64);
        Ok(())
    }

    /// Claims the Page of `integration`. The engine's directory learns the Page first (the claim may come
    /// before the NOTIFY of its connection does), then the Page is this node's, then its pending events are
    /// handed over.
    async fn claim(&self, integration: &Integration) -> anyhow::Result<()> {
        let page = &integration.page_id;
        let Some(epoch) = self.store.page_claim(page, self.owned.node()).await? else { return Ok(()) };
        self.router.register(page.clone(), integration.instagram_account_id.clone(), integration.client_slug.as_str());
        self.owned.claimed(page.clone(), epoch);
        self.figures.claimed(page, &self.store, &self.router).await;
        metrics::counter!(CLAIMS).increment(1);
        tracing::info!(%page, epoch, "claimed the Page");
        // What was committed for it meanwhile (on any node) is taken now.
        match self.inbox.recover_page(page).await {
            Ok(0) => {}
            Ok(handed) => tracing::info!(%page, handed, "pending events of a claimed Page handed to its tenant"),
            Err(e) => tracing::warn!(%page, error = %e, "cannot read a claimed Page's pending events; the sweep will"),
        }
        Ok(())
    }

    /// Hands `page` over: its tenant stops (its queued replies are reported never sent), the Send API calls
    /// it had in flight finish and are stored, and only then is the Page released and the others told.
    pub(super) async fn release(&self, page: &PageId, epoch: i64) {
        self.owned.released(page);
        self.router.disown(page);
        self.drain(std::slice::from_ref(page)).await;
        self.inbox.let_go(page);
        if let Err(e) = self.store.page_release(page, self.owned.node(), epoch).await {
            tracing::warn!(%page, error = %e, "cannot release the Page; it is taken over when the lease runs out");
            return;
        }
        metrics::counter!(RELEASES).increment(1);
        tracing::info!(%page, epoch, "released the Page");
        let _ = self.store.notify(OWNERS_CHANNEL, page.as_str()).await;
    }

    /// Waits (each step at most `send_drain`) for the Send API calls `pages`' tenants have in flight, then for
    /// the progress reported so far to be stored. A step that takes longer is left: whatever it had not stored
    /// is of unknown outcome, and the next owner settles it before sending.
    async fn drain(&self, pages: &[PageId]) {
        let until = Instant::now() + self.send_drain;
        while pages.iter().any(|p| self.router.sends_in_flight(p) > 0) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if tokio::time::timeout(self.send_drain, self.inbox.flush()).await.is_err() {
            tracing::warn!(pages = pages.len(), "progress not stored before the release; the next owner settles it");
        }
    }

    /// Releases every Page this node owns (leaving the cluster).
    pub(super) async fn release_all(&self) {
        let pages = self.owned.pages();
        for (page, _) in &pages {
            self.owned.released(page);
            self.router.disown(page);
        }
        self.drain(&pages.iter().map(|(page, _)| page.clone()).collect::<Vec<_>>()).await;
        for (page, epoch) in &pages {
            self.inbox.let_go(page);
            if let Err(e) = self.store.page_release(page, self.owned.node(), *epoch).await {
                tracing::warn!(%page, error = %e, "cannot release the Page; it is taken over when the lease runs out");
            }
        }
        metrics::counter!(RELEASES).increment(pages.len() as u64);
        metrics::gauge!(OWNED_PAGES).set(0.0);
    }
}
