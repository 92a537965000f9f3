//! The directory the front door routes by is the database's. The engine's in-memory directory answers at
//! once for the Pages it knows; an account it does not know is looked up in the store before its events are
//! called unknown, so a Page connected a moment ago (by another node, or the CLI) is never acknowledged and
//! dropped. A miss is remembered briefly (so a flood for a Page no client owns costs one query a second), and
//! forgotten as soon as any integration changes ([`Directory::changed`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use switchboard_actors::{Route, Router};

use crate::store::{IntegrationStatus, Store, StoreError};

/// How long an account the store does not know is taken to be unknown without asking again.
const MISS_TTL: Duration = Duration::from_secs(1);
/// The most misses remembered.
const MISSES_CAP: usize = 10_000;

#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    router: Router,
    misses: DashMap<String, Instant>,
    /// Bumped by every change, so a lookup that raced with one does not remember a stale miss.
    generation: AtomicU64,
}

impl Directory {
    pub fn new(store: Store, router: Router) -> Self {
        Self { inner: Arc::new(Inner { store, router, misses: DashMap::new(), generation: AtomicU64::new(0) }) }
    }

    /// Whose `account` is: the engine's directory, or else the store's (the Page is then added to the engine's).
    /// `Err` when the store could not say: the webhook answers 503 and Meta delivers again, rather than
    /// acknowledging an event of a Page that may be connected.
    pub async fn route(&self, account: &str) -> Result<Option<Route>, StoreError> {
        let inner = &self.inner;
        if let Some(route) = inner.router.route(account) {
            return Ok(Some(route));
        }
        if inner.misses.get(account).is_some_and(|at| at.elapsed() < MISS_TTL) {
            return Ok(None);
        }
        let generation = inner.generation.load(Ordering::Acquire);
        match inner.store.integration_by_account(account).await {
            Ok(Some(i)) if i.status != IntegrationStatus::Revoked => {
                inner.router.register(i.page_id.clone(), i.instagram_account_id.clone(), i.client_slug.as_str());
                Ok(inner.router.route(account))
            }
            Ok(_) => {
                if inner.generation.load(Ordering::Acquire) == generation {
                    if inner.misses.len() >= MISSES_CAP {
                        inner.misses.clear();
                    }
                    inner.misses.insert(account.to_owned(), Instant::now());
                }
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up an account the directory does not know; answering 503");
                Err(e)
            }
        }
    }

    /// An integration changed somewhere: what was unknown is looked up again.
    pub fn changed(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.misses.clear();
    }
}
