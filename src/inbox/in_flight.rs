//! Which inbox events the engine holds, so the sweeper never hands over an event a tenant still has.

use std::time::Duration;

use switchboard_actors::{InboxId, PageId};

/// Inbox events the engine holds: handed over and not finished, with when they were handed over and to
/// which tenant.
pub struct InFlight {
    held: dashmap::DashMap<InboxId, Held>,
    /// How long after its tenant failed an event counts as lost: past the Send API calls still in flight.
    lost_grace: Duration,
}

struct Held {
    since: tokio::time::Instant,
    page: PageId,
    /// In a cluster: the epoch at which this node owned the page when it handed the event over (its writes
    /// are fenced with it).
    epoch: i64,
    /// When its tenant failed, if it did.
    lost_at: Option<tokio::time::Instant>,
}

impl InFlight {
    pub fn new(lost_grace: Duration) -> Self {
        Self { held: dashmap::DashMap::new(), lost_grace }
    }

    pub(crate) fn handed(&self, id: InboxId, page: PageId, epoch: i64) {
        self.held.insert(id, Held { since: tokio::time::Instant::now(), page, epoch, lost_at: None });
    }

    /// The page and epoch an event was handed over under, while it is held.
    pub(crate) fn fence_of(&self, id: InboxId) -> Option<(PageId, i64)> {
        self.held.get(&id).map(|held| (held.page.clone(), held.epoch))
    }

    pub(crate) fn finished(&self, ids: impl IntoIterator<Item = InboxId>) {
        for id in ids {
            self.held.remove(&id);
        }
    }

    /// The tenant of `page` failed; what it held is due once `lost_grace` has passed.
    pub(crate) fn lost(&self, page: &PageId) {
        let now = tokio::time::Instant::now();
        for mut held in self.held.iter_mut() {
            if held.page == *page && held.lost_at.is_none() {
                held.lost_at = Some(now);
            }
        }
    }

    /// Forgets what this node held for `page` (a cluster moved the page: its old tenant's writes are fenced,
    /// and the new owner takes the events).
    pub(crate) fn forget_page(&self, page: &PageId) {
        self.held.retain(|_, held| held.page != *page);
    }

    /// Not held, held by a tenant that failed at least `lost_grace` ago, or held for longer than `stale`
    /// (the engine lost it some other way).
    pub(crate) fn due(&self, id: InboxId, stale: Duration) -> bool {
        self.held.get(&id).is_none_or(|held| {
            held.since.elapsed() >= stale || held.lost_at.is_some_and(|at| at.elapsed() >= self.lost_grace)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}
