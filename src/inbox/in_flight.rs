//! Which inbox events the engine holds, so the sweeper never hands over an event a tenant still has. An event
//! held under an epoch this node no longer runs its Page under (the Page moved away, or away and back) is not
//! held any more: whatever tenant had it may not send for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use switchboard_actors::{InboxId, PageId, Tenure};

/// Inbox events the engine holds: handed over and not finished, with when they were handed over and to
/// which tenant.
pub struct InFlight {
    held: DashMap<InboxId, Held>,
    /// How long after its tenant failed an event counts as lost: past the Send API calls still in flight.
    lost_grace: Duration,
    /// Which pages this node runs, under which epoch.
    tenure: Arc<dyn Tenure>,
    /// When an event of each page was last finished here (the stuck-Page watchdog's sign of progress).
    progress: DashMap<PageId, Instant>,
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
    pub fn new(lost_grace: Duration, tenure: Arc<dyn Tenure>) -> Self {
        Self { held: DashMap::new(), lost_grace, tenure, progress: DashMap::new() }
    }

    pub(crate) fn handed(&self, id: InboxId, page: PageId, epoch: i64) {
        self.held.insert(id, Held { since: tokio::time::Instant::now(), page, epoch, lost_at: None });
    }

    /// The page and epoch an event was handed over under, while it is held.
    pub(crate) fn fence_of(&self, id: InboxId) -> Option<(PageId, i64)> {
        self.held.get(&id).map(|held| (held.page.clone(), held.epoch))
    }

    /// These events are finished (or their tenant let them go): they are no longer held. An event finished
    /// counts as its page's progress.
    pub(crate) fn finished(&self, ids: impl IntoIterator<Item = InboxId>) {
        let now = Instant::now();
        for id in ids {
            if let Some((_, held)) = self.held.remove(&id) {
                self.progress.insert(held.page, now);
            }
        }
    }

    /// No longer held, but not finished either (no tenant took them, or their tenant set them aside): the
    /// next sweep hands them over again. Not progress.
    pub(crate) fn unheld(&self, ids: impl IntoIterator<Item = InboxId>) {
        for id in ids {
            self.held.remove(&id);
        }
    }

    /// When an event of `page` was last finished here, if one was.
    pub(crate) fn last_progress(&self, page: &PageId) -> Option<Instant> {
        self.progress.get(page).map(|at| *at)
    }

    /// How many events of `page` the engine holds now.
    pub(crate) fn held_of(&self, page: &PageId) -> usize {
        self.held.iter().filter(|held| held.page == *page).count()
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

    /// Not held, held under an epoch this node no longer runs the page under, held by a tenant that failed at
    /// least `lost_grace` ago, or held for longer than `stale` (the engine lost it some other way).
    pub(crate) fn due(&self, id: InboxId, stale: Duration) -> bool {
        self.held.get(&id).is_none_or(|held| {
            self.tenure.epoch(&held.page) != Some(held.epoch)
                || held.since.elapsed() >= stale
                || held.lost_at.is_some_and(|at| at.elapsed() >= self.lost_grace)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}
