//! The per-Page figures the portal shows, the same on every node: each owner writes its Pages' figures to
//! `page_figures` every few seconds. Counts continue across handovers: a node that claims a Page takes the
//! last snapshot as its base and adds what its tenant counts from then on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use switchboard_actors::telemetry::stats::StatsSnapshot;
use switchboard_actors::{PageId, Router};

use super::Inner;
use crate::store::{FiguresRecord, Store};

/// How often owners write their Pages' figures.
const EVERY: Duration = Duration::from_secs(2);

/// Per owned Page: the snapshot it was claimed with, and this node's counts at that moment.
#[derive(Default)]
pub(super) struct Baselines {
    pages: DashMap<PageId, (FiguresRecord, StatsSnapshot)>,
}

impl Baselines {
    pub(super) async fn claimed(&self, page: &PageId, store: &Store, router: &Router) {
        let base = match store.figures().await {
            Ok(all) => all.into_iter().find(|f| f.page_id == page.as_str()).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(%page, error = %e, "cannot read a claimed Page's figures; they start from zero");
                FiguresRecord::default()
            }
        };
        self.pages.insert(page.clone(), (base, router.stats(page)));
    }

    fn current(&self, page: &PageId, router: &Router) -> FiguresRecord {
        let now = router.stats(page);
        let (base, at) = self.pages.get(page).map(|e| e.value().clone()).unwrap_or_default();
        let grown = |now: u64, then: u64| i64::try_from(now.saturating_sub(then)).unwrap_or(i64::MAX);
        FiguresRecord {
            page_id: page.as_str().to_owned(),
            events: base.events + grown(now.events, at.events),
            replies: base.replies + grown(now.replies, at.replies),
            send_errors: base.send_errors + grown(now.send_errors, at.send_errors),
            throttled: base.throttled + grown(now.throttled, at.throttled),
            queue_depth: i64::try_from(now.queue_depth).unwrap_or(i64::MAX),
            replies_last_hour: i64::from(now.replies_last_hour),
            last_event_ms: now.last_event_ms.max(base.last_event_ms),
            active: router.is_active(page),
        }
    }
}

impl Inner {
    pub(super) async fn run_figures(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let pages = self.owned.pages();
            self.figures.pages.retain(|page, _| pages.iter().any(|(p, _)| p == page));
            let figures: Vec<FiguresRecord> =
                pages.iter().map(|(page, _)| self.figures.current(page, &self.router)).collect();
            if !figures.is_empty()
                && let Err(e) = self.store.figures_write(self.owned.node(), &figures).await
            {
                tracing::warn!(error = %e, "cannot write the Pages' figures; will try again");
            }
        }
    }
}

/// Every Page's figures as their owners last wrote them, for the portal.
pub async fn shared_figures(store: &Store) -> HashMap<String, (StatsSnapshot, bool)> {
    let all = match store.figures().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the Pages' figures");
            return HashMap::new();
        }
    };
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    all.into_iter()
        .map(|f| {
            let stats = StatsSnapshot {
                last_event_ms: f.last_event_ms,
                replies_last_hour: u32::try_from(f.replies_last_hour).unwrap_or(u32::MAX),
                events: count(f.events),
                replies: count(f.replies),
                send_errors: count(f.send_errors),
                throttled: count(f.throttled),
                queue_depth: count(f.queue_depth),
                ..StatsSnapshot::default()
            };
            (f.page_id, (stats, f.active))
        })
        .collect()
}
