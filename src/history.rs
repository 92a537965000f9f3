//! Each Page's figures over time, for the portal's charts. Every node adds, for the Pages it runs, what their
//! tenants counted since its last write (events, answers, Send API failures, the webhook → reply 95th
//! percentile, the oldest pending event's age) to the Page's minute and hour in `page_history`. A node that
//! claims a Page adds to the same rows, so the Page's history goes on. Minutes are kept a day and hours 30 days.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_actors::telemetry::stats::StatsSnapshot;
use switchboard_actors::{PageId, Router};

use crate::ownership::Owned;
use crate::store::{HistoryAdd, Store};

/// How often each node writes what it counted.
pub const EVERY: Duration = Duration::from_secs(15);
/// How long minutes and hours are kept.
pub const MINUTES_KEPT: Duration = Duration::from_secs(25 * 3600);
pub const HOURS_KEPT: Duration = Duration::from_secs(31 * 86_400);

pub struct History {
    store: Store,
    router: Router,
    /// In a cluster: only the Pages this node owns are its to write.
    owned: Option<Arc<Owned>>,
    /// Whether there is an inbox (pending events) to read.
    durable: bool,
    /// Each Page's figures at the last write (kept for every Page this node ran, so a Page that comes back
    /// goes on from there): what it counted since is the difference.
    last: Mutex<HashMap<PageId, StatsSnapshot>>,
}

impl History {
    pub fn new(store: Store, router: Router, owned: Option<Arc<Owned>>, durable: bool) -> Self {
        Self { store, router, owned, durable, last: Mutex::default() }
    }

    /// Adds what was counted since the last write to each Page's minute and hour.
    pub async fn write(&self) {
        let pages: Vec<PageId> = match &self.owned {
            Some(owned) => owned.pages().into_iter().map(|(page, _)| page).collect(),
            None => self.router.pages_with_figures(),
        };
        let now = crate::clock::now();
        let oldest: HashMap<String, i64> = if self.durable {
            match self.store.inbox_pending_by_page().await {
                Ok(pending) => {
                    pending.into_iter().map(|p| (p.page_id, (now - p.oldest).num_seconds().max(0))).collect()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read pending events for the Pages' history; will try again");
                    HashMap::new()
                }
            }
        } else {
            HashMap::new()
        };
        let at = now.timestamp();
        let (mut rows, mut seen) = (Vec::new(), HashMap::new());
        {
            let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for page in pages {
                let figures = self.router.stats(&page);
                let p95 = self.router.take_reply_latencies(&page).p95_ms();
                let oldest = oldest.get(page.as_str()).copied().unwrap_or(0);
                // The figures count from this process's start, and only while it runs the Page: what grew since
                // the last write (from zero, the first time) is this node's to add.
                let before = last.get(&page).copied().unwrap_or_default();
                let grown = |now: u64, then: u64| i64::try_from(now.saturating_sub(then)).unwrap_or(i64::MAX);
                let (events, answers, failures) = (
                    grown(figures.events, before.events),
                    grown(figures.replies, before.replies),
                    grown(figures.send_errors, before.send_errors),
                );
                seen.insert(page.clone(), figures);
                if events == 0 && answers == 0 && failures == 0 && p95.is_none() && oldest == 0 {
                    continue;
                }
                for bucket_secs in [60, 3600] {
                    rows.push(HistoryAdd {
                        page_id: page.as_str().to_owned(),
                        bucket_secs,
                        at: at / bucket_secs * bucket_secs,
                        events,
                        answers,
                        failures,
                        reply_p95_ms: p95.and_then(|ms| i64::try_from(ms).ok()),
                        oldest_pending_s: oldest,
                    });
                }
            }
        }
        match self.store.history_add(&rows).await {
            // What was written is the next write's starting point.
            Ok(()) => self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(seen),
            Err(e) => {
                tracing::warn!(error = %e, pages = rows.len() / 2, "cannot write the Pages' history; what was counted is written next time")
            }
        }
    }

    /// Deletes minutes and hours older than they are kept.
    pub async fn prune(store: &Store) {
        let now = crate::clock::now().timestamp();
        for (bucket_secs, kept) in [(60, MINUTES_KEPT), (3600, HOURS_KEPT)] {
            let before = now - i64::try_from(kept.as_secs()).unwrap_or(i64::MAX);
            if let Err(e) = store.history_prune(bucket_secs, before).await {
                tracing::warn!(error = %e, "cannot prune the Pages' history; will try again");
            }
        }
    }
}
