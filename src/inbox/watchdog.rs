//! The stuck-Page watchdog. A Page is *stuck* when its oldest pending event has waited longer than
//! `inbox.stuck_after_secs` and none of its events finished on this node meanwhile (nor since this node began
//! to run it). Each node checks the Pages it runs, every quarter of that time (at most every 15 s):
//!
//! - it says why, as far as the code can tell: no tenant holds the events, the tenant holds them and finishes
//!   none, the tenant is quarantined, Meta is throttling the Page, its token needs reconnecting, Meta refused a
//!   permission, the Page was disconnected;
//! - it logs a stuck Page at WARN (when it becomes stuck, then every five minutes while it stays so), counts it
//!   by reason, and keeps the finding where `switchboard inbox stats` reads it;
//! - it heals what is Switchboard's own doing: events no tenant holds are handed over again, a tenant that
//!   holds events and finishes none is restarted, a disconnected Page's leftovers are failed (`inbox replay
//!   --failed` puts them back). Throttling, a dead token or a refused permission are Meta's or the client's
//!   to clear: shown, never retried faster.
//!
//! It also exports the backlog an operator alerts on: the oldest pending event's age among this node's Pages
//! and among all Pages, and each Page's own.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchboard_actors::{PageId, TenantPresence};

use super::Inbox;
use crate::store::{IntegrationStatus, PendingPage, StuckPage};

/// Pages found stuck, by reason (every reason is exported from the first check, zero where that is true).
pub const STUCK_PAGES: &str = "switchboard_stuck_pages";
/// Stuck Pages healed (their events handed over again, their tenant restarted, a disconnected Page's
/// leftovers failed), by reason.
pub const HEALS: &str = "switchboard_stuck_page_heals_total";
/// The age of the oldest pending event among the Pages this node runs (0: none pending).
pub const OLDEST_PENDING: &str = "switchboard_inbox_oldest_pending_seconds";
/// Pending events among the Pages this node runs.
pub const PENDING: &str = "switchboard_inbox_pending_events";
/// The age of the oldest pending event among all Pages, whichever node runs them (every node exports it).
pub const CLUSTER_OLDEST_PENDING: &str = "switchboard_cluster_oldest_pending_seconds";
/// The age of the oldest pending event of each Page this node runs (0 once it has none, or runs elsewhere).
pub const PAGE_OLDEST_PENDING: &str = "switchboard_page_oldest_pending_seconds";
/// 1 while a Page this node runs is stuck, else 0.
pub const PAGE_STUCK: &str = "switchboard_page_stuck";

/// How often a Page that stays stuck is logged again.
const LOG_AGAIN: Duration = Duration::from_secs(300);

/// Why a Page makes no progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Pending events that no tenant holds (nothing handed them over, or the tenant that had them is gone).
    NoTenant,
    /// Its tenant holds events and finishes none.
    NotProgressing,
    /// Its tenant kept failing and is quarantined; the sweeper hands its events over once that ends.
    Quarantined,
    /// Meta is throttling the Page.
    Throttled,
    /// Its token needs reconnecting (Meta refused it, or the token health check found it dead).
    NeedsReconnect,
    /// Meta refused a permission, or the Page is in error.
    Permission,
    /// The Page was disconnected with events still pending.
    Disconnected,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::NoTenant,
        Reason::NotProgressing,
        Reason::Quarantined,
        Reason::Throttled,
        Reason::NeedsReconnect,
        Reason::Permission,
        Reason::Disconnected,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::NoTenant => "no_tenant",
            Reason::NotProgressing => "not_progressing",
            Reason::Quarantined => "quarantined",
            Reason::Throttled => "throttled",
            Reason::NeedsReconnect => "needs_reconnect",
            Reason::Permission => "permission",
            Reason::Disconnected => "disconnected",
        }
    }

    /// Whether the cause is Switchboard's own, so the watchdog heals it.
    pub fn heals(self) -> bool {
        matches!(self, Reason::NoTenant | Reason::NotProgressing | Reason::Disconnected)
    }
}

/// A Page found stuck, until it makes progress.
struct Episode {
    reason: Reason,
    since: chrono::DateTime<chrono::Utc>,
    logged: Instant,
}

/// Checks the Pages this node runs for progress. One per server, run by its background jobs.
pub struct Watchdog {
    inbox: Inbox,
    stuck_after: Duration,
    /// This node's name, kept with its findings.
    node: String,
    /// Before this, nothing could have finished here: the watchdog counts progress from it.
    started: Instant,
    episodes: Mutex<HashMap<PageId, Episode>>,
    /// Pages whose own oldest-pending gauge this node set last time (set to 0 once they leave).
    exported: Mutex<HashSet<(String, String)>>,
}

impl Watchdog {
    pub fn new(inbox: Inbox, stuck_after: Duration, node: String) -> Self {
        Self {
            inbox,
            stuck_after,
            node,
            started: Instant::now(),
            episodes: Mutex::default(),
            exported: Mutex::default(),
        }
    }

    /// How often to check: a quarter of `stuck_after`, between 1 and 15 seconds.
    pub fn period(&self) -> Duration {
        (self.stuck_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(15))
    }

    /// One check of every Page with pending events. `leader`: this node also looks after Pages nobody runs
    /// (a disconnected Page's leftovers); outside a cluster it always does.
    pub async fn check(&self, leader: bool) {
        if let Err(e) = self.try_check(leader).await {
            tracing::warn!(error = %e, "the stuck-Page watchdog cannot read the inbox; will try again");
        }
    }

    async fn try_check(&self, leader: bool) -> Result<(), crate::store::StoreError> {
        let store = &self.inbox.store;
        let pending = store.inbox_pending_by_page().await?;
        let integrations: HashMap<String, (String, IntegrationStatus, Option<String>)> = store
            .list_integrations()
            .await?
            .into_iter()
            .map(|i| (i.page_id.as_str().to_owned(), (i.client_slug.as_str().to_owned(), i.status, i.status_reason)))
            .collect();
        let now = crate::clock::now();
        let age = |p: &PendingPage| (now - p.oldest).to_std().unwrap_or_default();
        metrics::gauge!(CLUSTER_OLDEST_PENDING).set(pending.iter().map(age).max().unwrap_or_default().as_secs_f64());

        let (mut oldest_here, mut pending_here) = (Duration::ZERO, 0);
        let mut counts: HashMap<Reason, u64> = HashMap::new();
        let (mut stuck, mut progressing) = (Vec::new(), Vec::new());
        let mut exported = HashSet::new();
        let mut stuck_here = HashSet::new();
        let mut seen = HashSet::new();
        for p in &pending {
            let Ok(page) = PageId::parse(&p.page_id) else { continue };
            let integration = integrations.get(&p.page_id);
            let connected = integration.is_some_and(|(_, status, _)| *status != IntegrationStatus::Revoked);
            let runs_here = self.inbox.runs(&page).is_some();
            // A Page nobody may answer any more is the leader's; a connected one is its owner's.
            if !(connected && runs_here || !connected && leader) {
                continue;
            }
            let client = integration.filter(|_| runs_here).map(|(client, _, _)| client.clone());
            if let Some(client) = &client {
                metrics::gauge!(PAGE_OLDEST_PENDING, "client" => client.clone(), "page" => p.page_id.clone())
                    .set(age(p).as_secs_f64());
                exported.insert((client.clone(), p.page_id.clone()));
            }
            if runs_here {
                oldest_here = oldest_here.max(age(p));
                pending_here += p.pending;
            }
            seen.insert(page.clone());
            match self.diagnose(&page, p, integration, connected) {
                None => {
                    progressing.push(p.page_id.as_str());
                    self.recovered(&page);
                }
                Some((reason, detail)) => {
                    *counts.entry(reason).or_default() += 1;
                    if let Some(client) = &client {
                        stuck_here.insert((client.clone(), p.page_id.clone()));
                    }
                    let since = self.noticed(&page, reason, &detail, p);
                    if reason.heals() {
                        self.heal(&page, reason).await;
                    }
                    stuck.push(StuckPage {
                        page_id: p.page_id.clone(),
                        reason: reason.label().to_owned(),
                        detail,
                        pending: p.pending,
                        oldest_ms: p.oldest.timestamp_millis(),
                        since_ms: since.timestamp_millis(),
                        node: self.node.clone(),
                        checked_ms: now.timestamp_millis(),
                    });
                }
            }
        }
        self.episodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|page, _| seen.contains(page));
        self.export(&counts, oldest_here, pending_here, exported, &stuck_here);
        store.stuck_pages_report(&stuck, &progressing).await
    }

    /// Why `page` makes no progress, if it is stuck.
    fn diagnose(
        &self,
        page: &PageId,
        pending: &PendingPage,
        integration: Option<&(String, IntegrationStatus, Option<String>)>,
        connected: bool,
    ) -> Option<(Reason, String)> {
        let waited = (crate::clock::now() - pending.oldest).to_std().unwrap_or_default();
        if waited < self.stuck_after {
            return None;
        }
        if !connected {
            return Some((Reason::Disconnected, "the Page was disconnected with events still pending".to_owned()));
        }
        let in_flight = &self.inbox.in_flight;
        let since = [in_flight.last_progress(page), self.inbox.runs_since(page), Some(self.started)];
        if since.into_iter().flatten().max().is_some_and(|at| at.elapsed() < self.stuck_after) {
            return None;
        }
        let why = |status: &Option<String>| status.clone().unwrap_or_else(|| "no reason given".to_owned());
        match integration {
            Some((_, IntegrationStatus::NeedsReauth, reason)) => {
                return Some((Reason::NeedsReconnect, format!("its token needs reconnecting: {}", why(reason))));
            }
            Some((_, IntegrationStatus::Error, reason)) => {
                return Some((Reason::Permission, format!("Meta refused it: {}", why(reason))));
            }
            _ => {}
        }
        let router = &self.inbox.router;
        let presence = router.presence(page);
        if presence == TenantPresence::Quarantined {
            return Some((Reason::Quarantined, "its tenant kept failing and is quarantined for a while".to_owned()));
        }
        let stats = router.stats(page);
        if let Some(until) = stats.paused_until_ms.filter(|ms| *ms > crate::clock::now().timestamp_millis()) {
            let until = chrono::DateTime::from_timestamp_millis(until).unwrap_or_default();
            return Some((Reason::Throttled, format!("Meta is throttling it until {}", until.format("%H:%M:%S UTC"))));
        }
        if stats.blocked && presence == TenantPresence::Running {
            return Some((Reason::NeedsReconnect, "its tenant may not send: its token or a permission".to_owned()));
        }
        let held = in_flight.held_of(page);
        if held == 0 || presence == TenantPresence::Absent {
            Some((Reason::NoTenant, format!("no tenant holds its {} pending event(s)", pending.pending)))
        } else {
            Some((Reason::NotProgressing, format!("its tenant holds {held} event(s) and finishes none")))
        }
    }

    /// Records that `page` is stuck for `reason`, logging it when it becomes stuck (or its reason changes) and
    /// every [`LOG_AGAIN`] after; when it was first found stuck.
    fn noticed(&self, page: &PageId, reason: Reason, detail: &str, p: &PendingPage) -> chrono::DateTime<chrono::Utc> {
        let mut episodes = self.episodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = || Episode { reason, since: crate::clock::now(), logged: Instant::now() };
        let (log, since) = match episodes.get_mut(page) {
            Some(e) if e.reason == reason && e.logged.elapsed() < LOG_AGAIN => (false, e.since),
            Some(e) => {
                e.logged = Instant::now();
                e.reason = reason;
                (true, e.since)
            }
            None => {
                let e = fresh();
                let since = e.since;
                episodes.insert(page.clone(), e);
                (true, since)
            }
        };
        if log {
            let waited = (crate::clock::now() - p.oldest).num_seconds();
            tracing::warn!(%page, reason = reason.label(), %detail, pending = p.pending, oldest_waited_secs = waited,
                healed = reason.heals(), "a Page is stuck: its events wait and none finishes");
        }
        since
    }

    /// `page` makes progress again (or has nothing old pending).
    fn recovered(&self, page: &PageId) {
        let episode = self.episodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(page);
        if let Some(e) = episode {
            let stuck_for = (crate::clock::now() - e.since).num_seconds();
            tracing::info!(%page, reason = e.reason.label(), stuck_for_secs = stuck_for, "a stuck Page makes progress again");
        }
    }

    /// Heals what is Switchboard's own doing.
    async fn heal(&self, page: &PageId, reason: Reason) {
        let inbox = &self.inbox;
        let healed = match reason {
            Reason::NoTenant => {
                // Events a vanished tenant held are due once its Send API calls can have ended; the rest now.
                inbox.in_flight.lost(page);
                inbox.recover_page(page).await.map(|_| ()).map_err(|e| e.to_string())
            }
            Reason::NotProgressing => {
                inbox.router.restart(page);
                inbox.in_flight.lost(page);
                Ok(())
            }
            Reason::Disconnected => {
                let before = crate::clock::now() - chrono::Duration::from_std(self.stuck_after).unwrap_or_default();
                inbox
                    .store
                    .inbox_fail_pending_of(page.as_str(), "the page was disconnected", before)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            _ => return,
        };
        match healed {
            Ok(()) => metrics::counter!(HEALS, "reason" => reason.label()).increment(1),
            Err(e) => {
                tracing::warn!(%page, reason = reason.label(), error = %e, "cannot heal a stuck Page; will try again")
            }
        }
    }

    fn export(
        &self,
        counts: &HashMap<Reason, u64>,
        oldest: Duration,
        pending: i64,
        exported: HashSet<(String, String)>,
        stuck: &HashSet<(String, String)>,
    ) {
        for reason in Reason::ALL {
            metrics::gauge!(STUCK_PAGES, "reason" => reason.label())
                .set(counts.get(&reason).copied().unwrap_or(0) as f64);
            metrics::counter!(HEALS, "reason" => reason.label()).increment(0);
        }
        metrics::gauge!(OLDEST_PENDING).set(oldest.as_secs_f64());
        metrics::gauge!(PENDING).set(pending as f64);
        let mut last = self.exported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (client, page) in last.difference(&exported) {
            metrics::gauge!(PAGE_OLDEST_PENDING, "client" => client.clone(), "page" => page.clone()).set(0.0);
        }
        for (client, page) in exported.iter().chain(last.difference(&exported)) {
            let value = if stuck.contains(&(client.clone(), page.clone())) { 1.0 } else { 0.0 };
            metrics::gauge!(PAGE_STUCK, "client" => client.clone(), "page" => page.clone()).set(value);
        }
        *last = exported;
    }
}
