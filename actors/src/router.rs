//! The router: from an event's account id (Page or Instagram account) to the tenant actor that owns it.
//!
//! The directory (which ids belong to a connected client) is kept in memory, so the webhook path answers
//! "whose is this?" without touching the database. Actors start lazily on a tenant's first event. Until a
//! tenant's actor runs, its events wait, in order, in its slot. A slot changes state only under its map
//! shard's lock, so an event is either cast to a live actor before that actor is retired, or lands in a
//! new slot: none is dropped between an idle actor stopping and a new one starting.
//! `Router` is also the facade the HTTP layer uses (`dispatch`, `connected`, `disconnect`, …); nothing
//! outside this crate handles an `ActorRef`.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use ractor::{Actor, ActorId, ActorRef, MessagingErr};

use crate::PageId;
use crate::event::InboundEvent;
use crate::metrics::{ACTIVE_ACTORS, EVENTS_DROPPED, UNKNOWN_PAGE_EVENTS};
use crate::ports::{EventSink, GraphApi, StatusSink, TenantSource};
use crate::settings::EngineSettings;
use crate::stats::{StatsSnapshot, TenantStats};
use crate::supervisor::{SupervisorMsg, TenantSupervisor};
use crate::tenant::TenantMsg;

/// How many unknown account ids get a metric label of their own.
const UNKNOWN_LABELS: usize = 100;
/// How many unknown account ids are remembered so each is logged once.
const UNKNOWN_LOGGED: usize = 10_000;

/// What the engine is built from.
pub struct EngineDeps {
    pub source: Arc<dyn TenantSource>,
    pub graph: Arc<dyn GraphApi>,
    pub status: Arc<dyn StatusSink>,
    /// Told when durable-inbox events are finished (never called for events without an inbox id).
    pub events: Arc<dyn EventSink>,
    pub settings: EngineSettings,
}

/// Whose an account id is.
#[derive(Debug, Clone)]
pub struct Route {
    /// The tenant (Page) the account belongs to.
    pub page: PageId,
    pub client_slug: Arc<str>,
}

enum Slot {
    /// The actor is being started (or restarted); events wait here in order.
    Starting(Vec<InboundEvent>),
    Running(ActorRef<TenantMsg>),
}

/// The result of dispatching one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    Routed,
    /// No client owns this account id: acknowledged and counted, not processed.
    UnknownPage,
    /// The tenant is quarantined or its start buffer is full: counted, not processed.
    Dropped,
}

struct Inner {
    deps: EngineDeps,
    directory: DashMap<String, Route>,
    slots: DashMap<PageId, Slot>,
    quarantined: DashMap<PageId, tokio::time::Instant>,
    unknown_logged: DashMap<String, ()>,
    /// Unknown ids with a metric label of their own (the first `UNKNOWN_LABELS`; the rest share `other`).
    unknown_labelled: DashMap<String, ()>,
    stats: DashMap<PageId, Arc<TenantStats>>,
    supervisor: OnceLock<ActorRef<SupervisorMsg>>,
    /// Send API calls in flight, waited for at shutdown.
    sends: tokio_util::task::TaskTracker,
}

/// Cheap to clone; all clones are the same router.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl Router {
    /// Starts the engine: the supervisor actor, with an empty directory.
    pub async fn start(deps: EngineDeps) -> Result<Self, ractor::SpawnErr> {
        let router = Self {
            inner: Arc::new(Inner {
                deps,
                directory: DashMap::new(),
                slots: DashMap::new(),
                quarantined: DashMap::new(),
                unknown_logged: DashMap::new(),
                unknown_labelled: DashMap::new(),
                stats: DashMap::new(),
                supervisor: OnceLock::new(),
                sends: tokio_util::task::TaskTracker::new(),
            }),
        };
        let (supervisor, _) = Actor::spawn(None, TenantSupervisor, router.clone()).await?;
        let _ = router.inner.supervisor.set(supervisor);
        tokio::spawn(idle_checks(Arc::downgrade(&router.inner)));
        Ok(router)
    }

    pub fn deps(&self) -> &EngineDeps {
        &self.inner.deps
    }

    /// Adds (or updates) a connected page and its Instagram account to the directory.
    pub fn register(&self, page: PageId, instagram: Option<PageId>, client_slug: &str) {
        let route = Route { page: page.clone(), client_slug: Arc::from(client_slug) };
        if let Some(ig) = instagram {
            self.inner.directory.insert(ig.as_str().to_owned(), route.clone());
        }
        self.inner.directory.insert(page.as_str().to_owned(), route);
        self.inner.quarantined.remove(&page);
    }

    /// Whose `account_id` is, if anyone's.
    pub fn route(&self, account_id: &str) -> Option<Route> {
        self.inner.directory.get(account_id).map(|r| r.clone())
    }

    /// Routes one event to its tenant without waiting for anything.
    pub fn dispatch(&self, event: InboundEvent) -> Dispatched {
        let Some(page) = self.inner.directory.get(event.account_id.as_str()).map(|r| r.page.clone()) else {
            self.unknown(event.account_id.as_str());
            return Dispatched::UnknownPage;
        };
        if let Some(until) = self.inner.quarantined.get(&page).map(|u| *u) {
            if until > tokio::time::Instant::now() {
                return self.dropped(&page, "quarantined");
            }
            self.inner.quarantined.remove(&page);
        }
        let capacity = self.inner.deps.settings.start_buffer_capacity;
        match self.inner.slots.entry(page.clone()) {
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Slot::Starting(buffer) if buffer.len() >= capacity => return self.dropped(&page, "start_buffer_full"),
                Slot::Starting(buffer) => buffer.push(event),
                Slot::Running(actor) => {
                    if let Err(MessagingErr::SendErr(TenantMsg::Event(event))) =
                        actor.send_message(TenantMsg::Event(event))
                    {
                        // The actor died between its last message and now: start another.
                        slot.insert(Slot::Starting(vec![event]));
                        self.start_tenant(page);
                    }
                }
            },
            Entry::Vacant(slot) => {
                slot.insert(Slot::Starting(vec![event]));
                self.start_tenant(page);
            }
        }
        Dispatched::Routed
    }

    /// Counts an event that is acknowledged but not processed (with the durable inbox, its row stays
    /// pending and is handled again at the next start).
    fn dropped(&self, page: &PageId, reason: &'static str) -> Dispatched {
        metrics::counter!(EVENTS_DROPPED, "page" => page.as_str().to_owned(), "reason" => reason).increment(1);
        Dispatched::Dropped
    }

    fn start_tenant(&self, page: PageId) {
        if let Some(supervisor) = self.inner.supervisor.get() {
            let _ = supervisor.send_message(SupervisorMsg::Start(page));
        }
    }

    fn unknown(&self, account_id: &str) {
        // Ids no client owns come from outside: only the first few get a label of their own, so the number of
        // series stays bounded whatever arrives.
        let labelled = self.inner.unknown_labelled.contains_key(account_id)
            || (self.inner.unknown_labelled.len() < UNKNOWN_LABELS
                && self.inner.unknown_labelled.insert(account_id.to_owned(), ()).is_none());
        let label = if labelled { account_id.to_owned() } else { "other".to_owned() };
        metrics::counter!(UNKNOWN_PAGE_EVENTS, "page" => label).increment(1);
        // Log each unknown id once (bounded, so a flood of ids cannot grow this without limit).
        if self.inner.unknown_logged.len() < UNKNOWN_LOGGED
            && self.inner.unknown_logged.insert(account_id.to_owned(), ()).is_none()
        {
            tracing::warn!(page = %account_id, "webhook event for a page no client owns; acknowledged, not processed");
        }
    }

    /// The OAuth flow connected (or reconnected) `page`: route it, and let a live actor reload its
    /// token in place (queued replies are kept).
    pub fn connected(&self, page: PageId, instagram: Option<PageId>, client_slug: &str) {
        self.register(page.clone(), instagram, client_slug);
        self.tell(&page, || TenantMsg::Reload);
    }

    /// The token is known to be invalid (token health check): the live actor stops sending.
    pub fn invalidate(&self, page: &PageId, reason: &str) {
        let reason = reason.to_owned();
        self.tell(page, move || TenantMsg::Invalidate { reason: reason.clone() });
    }

    /// The page was disconnected: forget it and stop its actor (dropping its token).
    pub fn disconnect(&self, page: &PageId) {
        self.inner.directory.retain(|_, route| &route.page != page);
        if let Some((_, Slot::Running(actor))) = self.inner.slots.remove(page) {
            let _ = actor.send_message(TenantMsg::Disconnect);
        }
    }

    /// Sends a message to the tenant's live actor, if it has one.
    fn tell(&self, page: &PageId, msg: impl Fn() -> TenantMsg) {
        if let Some(slot) = self.inner.slots.get(page)
            && let Slot::Running(actor) = &*slot
        {
            let _ = actor.send_message(msg());
        }
    }

    /// A tenant's figures for people: last event, replies in the last hour.
    pub fn stats(&self, page: &PageId) -> StatsSnapshot {
        self.inner.stats.get(page).map(|s| s.snapshot()).unwrap_or_default()
    }

    /// Whether the tenant has a running actor right now (it stops when idle).
    pub fn is_active(&self, page: &PageId) -> bool {
        matches!(self.inner.slots.get(page).as_deref(), Some(Slot::Running(_)))
    }

    pub(crate) fn stats_for(&self, page: &PageId) -> Arc<TenantStats> {
        self.inner.stats.entry(page.clone()).or_default().clone()
    }

    /// Tenants with a running actor.
    pub fn active_tenants(&self) -> usize {
        self.inner.slots.iter().filter(|s| matches!(s.value(), Slot::Running(_))).count()
    }

    /// Pages the directory routes (connected integrations).
    pub fn known_pages(&self) -> usize {
        self.inner.directory.len()
    }

    /// True while the supervisor runs (for readiness).
    pub fn is_running(&self) -> bool {
        self.inner.supervisor.get().is_some_and(|s| s.get_status() == ractor::ActorStatus::Running)
    }

    /// Stops every tenant and the supervisor.
    pub async fn shutdown(&self) {
        if let Some(supervisor) = self.inner.supervisor.get() {
            supervisor
                .stop_children_and_wait(Some("shutdown".to_owned()), Some(std::time::Duration::from_secs(5)))
                .await;
            supervisor.stop(Some("shutdown".to_owned()));
        }
        self.inner.slots.clear();
        // Calls already made finish, and their answers reach storage (see `spawn_send`).
        self.inner.sends.close();
        let drain = self.inner.deps.settings.send_drain;
        if tokio::time::timeout(drain, self.inner.sends.wait()).await.is_err() {
            tracing::warn!(in_flight = self.inner.sends.len(), "Send API calls still in flight at shutdown");
        }
    }

    /// Runs a Send API call as a task that shutdown waits for.
    pub(crate) fn spawn_send(&self, call: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.sends.spawn(call);
    }

    #[cfg(feature = "test-hooks")]
    /// Makes the tenant's actor panic, to exercise supervision.
    pub fn crash(&self, page: &PageId) {
        self.tell(page, || TenantMsg::Crash);
    }

    // ---- for the supervisor and tenants ----

    /// The supervisor started `actor` for `page`: flush the waiting events to it, in order.
    pub(crate) fn activate(&self, page: &PageId, actor: ActorRef<TenantMsg>) -> bool {
        let Some(mut slot) = self.inner.slots.get_mut(page) else { return false };
        if let Slot::Starting(buffer) = &mut *slot {
            for event in buffer.drain(..) {
                let _ = actor.send_message(TenantMsg::Event(event));
            }
        }
        *slot = Slot::Running(actor);
        metrics::gauge!(ACTIVE_ACTORS).increment(1.0);
        true
    }

    /// The actor for `page` is gone; if events arrived for it since, they wait for a restart.
    pub(crate) fn actor_gone(&self, page: &PageId, actor: ActorId, restart: bool) {
        metrics::gauge!(ACTIVE_ACTORS).decrement(1.0);
        match self.inner.slots.entry(page.clone()) {
            Entry::Occupied(mut slot) => match slot.get() {
                Slot::Running(a) if a.get_id() == actor => {
                    if restart {
                        slot.insert(Slot::Starting(Vec::new()));
                    } else {
                        slot.remove();
                    }
                }
                _ => {}
            },
            Entry::Vacant(_) => {}
        }
    }

    /// A tenant spent its restart budget: drop what waits for it and refuse events for a while.
    pub(crate) fn quarantine(&self, page: &PageId) {
        let until = tokio::time::Instant::now() + self.inner.deps.settings.quarantine;
        self.inner.quarantined.insert(page.clone(), until);
        self.inner.slots.remove(page);
    }

    /// Whether `page` still waits for an actor (it may have been disconnected meanwhile).
    pub(crate) fn is_starting(&self, page: &PageId) -> bool {
        matches!(self.inner.slots.get(page).as_deref(), Some(Slot::Starting(_)))
    }

    /// An idle tenant asks to retire: succeeds only if the router still routes to that very actor.
    pub(crate) fn passivate(&self, page: &PageId, actor: ActorId) -> bool {
        let removed =
            self.inner.slots.remove_if(page, |_, slot| matches!(slot, Slot::Running(a) if a.get_id() == actor));
        removed.is_some()
    }

    pub(crate) fn client_of(&self, page: &PageId) -> Option<Arc<str>> {
        self.inner.directory.get(page.as_str()).map(|r| r.client_slug.clone())
    }
}

/// Asks every running tenant, each half `idle_timeout`, whether it has been idle long enough to stop. One
/// task for the whole engine, rather than a timer task in every actor (that task was about a tenth of a
/// running tenant's memory). Ends when the router is dropped.
async fn idle_checks(inner: std::sync::Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(inner) => inner.deps.settings.idle_timeout.max(std::time::Duration::from_millis(10)) / 2,
        None => return,
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        for slot in inner.slots.iter() {
            if let Slot::Running(actor) = slot.value() {
                let _ = actor.send_message(TenantMsg::IdleCheck);
            }
        }
    }
}
