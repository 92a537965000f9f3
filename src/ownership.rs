//! In a cluster, what this node may do right now ([`Owned`]: its node id, the deadline its lease holds to by
//! its own monotonic clock, the Pages it owns with their epochs) and how it wakes the owners of other Pages
//! ([`Wakes`]). `Owned` is the one source of truth for "this node runs this Page": the engine asks it (it is
//! the engine's [`Tenure`]) before it routes an event or starts a tenant, the inbox before it hands an event
//! over (stamped with the epoch) or wakes the owner instead, the engine's sink to fence its writes, and the
//! Graph API gate before every call. Only the cluster's claim loop changes it (`cluster::node`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use switchboard_actors::Tenure;

use crate::domain::PageId;
use crate::store::Fence;

#[derive(Default)]
pub struct Owned {
    node: AtomicI64,
    deadline: Mutex<Option<Instant>>,
    /// Each Page this node owns: its epoch, and since when this node owns it.
    pages: DashMap<PageId, (i64, Instant)>,
}

impl Tenure for Owned {
    fn epoch(&self, page: &PageId) -> Option<i64> {
        Owned::epoch(self, page)
    }
}

impl Owned {
    /// This node's id (0 while it has none).
    pub fn node(&self) -> i64 {
        self.node.load(Ordering::Acquire)
    }

    /// The epoch at which this node owns `page`, if it does.
    pub fn epoch(&self, page: &PageId) -> Option<i64> {
        self.pages.get(page).map(|e| e.0)
    }

    /// Since when this node owns `page`, if it does.
    pub fn owned_since(&self, page: &PageId) -> Option<Instant> {
        self.pages.get(page).map(|e| e.1)
    }

    /// The Pages this node owns, with their epochs.
    pub fn pages(&self) -> Vec<(PageId, i64)> {
        self.pages.iter().map(|e| (e.key().clone(), e.value().0)).collect()
    }

    pub fn owns(&self, page: &PageId) -> bool {
        self.pages.contains_key(page)
    }

    /// Whether the lease still holds by this node's own clock (it started no renew more than a TTL ago).
    pub fn lease_holds(&self) -> bool {
        self.deadline.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some_and(|d| Instant::now() < d)
    }

    /// Whether this node may act for `page` now: it owns it and its lease holds.
    pub fn may_act(&self, page: &PageId) -> bool {
        self.owns(page) && self.lease_holds()
    }

    /// The fence of a write for `page` at `epoch`.
    pub fn fence(&self, page: &PageId, epoch: i64) -> Fence {
        Fence { node: self.node(), page: page.clone(), epoch }
    }

    pub(crate) fn joined(&self, node: i64, deadline: Instant) {
        self.node.store(node, Ordering::Release);
        self.renewed(deadline);
    }

    pub(crate) fn renewed(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(deadline);
    }

    /// The lease is gone: nothing is owned, and nothing may be done until the node joins again.
    pub(crate) fn lost(&self) -> Vec<PageId> {
        *self.deadline.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.node.store(0, Ordering::Release);
        let pages: Vec<PageId> = self.pages.iter().map(|e| e.key().clone()).collect();
        self.pages.clear();
        pages
    }

    pub(crate) fn claimed(&self, page: PageId, epoch: i64) {
        self.pages.insert(page, (epoch, Instant::now()));
    }

    pub(crate) fn released(&self, page: &PageId) -> Option<i64> {
        self.pages.remove(page).map(|(_, (epoch, _))| epoch)
    }
}

/// Pages with new pending events that another node owns: their owners are woken (one NOTIFY per batch).
#[derive(Clone)]
pub struct Wakes {
    tx: tokio::sync::mpsc::Sender<PageId>,
}

impl Wakes {
    pub fn new(tx: tokio::sync::mpsc::Sender<PageId>) -> Self {
        Self { tx }
    }

    /// Asks for `page`'s owner to be woken; never waits (a full queue drops the wake: the owner's sweep is
    /// the backstop).
    pub fn wake(&self, page: PageId) {
        if self.tx.try_send(page).is_err() {
            metrics::counter!(WAKES_DROPPED).increment(1);
        }
    }
}

/// Wake-ups dropped because the queue to the notifier was full.
pub const WAKES_DROPPED: &str = "switchboard_cluster_wakes_dropped_total";
