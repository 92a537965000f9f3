//! The router: the engine's facade, and the only thing outside this crate that handles tenants. It routes an
//! event by its account id (Page or Instagram account) through the registry, asks the supervisor to start a
//! tenant that is not running, tells running tenants about reconnects, dead tokens and disconnects, and at
//! shutdown stops them and waits for the calls they made.
//!
//! Ids no client owns come from outside: they are counted (the first [`UNKNOWN_LABELS`] with a metric label of
//! their own) and logged once each (the first [`UNKNOWN_LOGGED`]), so nothing about them grows without bound.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use ractor::{Actor, ActorRef};

use crate::domain::event::InboundEvent;
use crate::domain::page::PageId;
use crate::engine::context::{Ports, Shared};
use crate::engine::registry::{Delivery, Registry};
pub use crate::engine::registry::{Route, TenantPresence};
use crate::engine::supervisor::{SupervisorMsg, TenantSupervisor};
use crate::engine::tenure::Tenure;
use crate::ports::{EventSink, GraphApi, StatusSink, TenantSource};
use crate::settings::EngineSettings;
use crate::telemetry::metrics::{EVENTS_DROPPED, UNKNOWN_PAGE_EVENTS};
use crate::telemetry::stats::StatsSnapshot;
use crate::tenant::mailbox::TenantMsg;

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
    /// Which pages this engine runs ([`super::tenure::EveryPage`] outside a cluster).
    pub tenure: Arc<dyn Tenure>,
    pub settings: EngineSettings,
}

/// The result of dispatching one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    Routed,
    /// No client owns this account id: acknowledged and counted, not processed.
    UnknownPage,
    /// The tenant is quarantined or its start buffer is full: counted, not processed.
    Dropped(&'static str),
    /// This engine does not run the page's tenant (a cluster: another node owns it, or nobody yet).
    Elsewhere,
}

impl Dispatched {
    /// Why a tenant did not take the event, as a metric label (`None` when one did).
    pub fn not_taken(self) -> Option<&'static str> {
        match self {
            Self::Routed => None,
            Self::UnknownPage => Some("unknown_page"),
            Self::Dropped(reason) => Some(reason),
            Self::Elsewhere => Some("not_run_here"),
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    supervisor: OnceLock<ActorRef<SupervisorMsg>>,
    unknown_logged: DashMap<String, ()>,
    unknown_labelled: DashMap<String, ()>,
    /// The idle-check task, stopped with the router.
    idle_checks: tokio_util::sync::CancellationToken,
}

/// Cheap to clone; all clones are the same router.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl Router {
    /// Starts the engine: the supervisor actor, with an empty directory.
    pub async fn start(deps: EngineDeps) -> Result<Self, ractor::SpawnErr> {
        let shared = Arc::new(Shared {
            ports: Arc::new(Ports { source: deps.source, graph: deps.graph, status: deps.status, events: deps.events }),
            settings: Arc::new(deps.settings),
            registry: Registry::new(deps.tenure),
            stats: DashMap::new(),
            tasks: tokio_util::task::TaskTracker::new(),
        });
        let router = Self {
            inner: Arc::new(Inner {
                shared: shared.clone(),
                supervisor: OnceLock::new(),
                unknown_logged: DashMap::new(),
                unknown_labelled: DashMap::new(),
                idle_checks: tokio_util::sync::CancellationToken::new(),
            }),
        };
        let (supervisor, _) = Actor::spawn(None, TenantSupervisor, shared.clone()).await?;
        let _ = router.inner.supervisor.set(supervisor);
        shared.tasks.spawn(idle_checks(shared.clone(), router.inner.idle_checks.clone()));
        Ok(router)
    }

    /// Adds (or updates) a connected page and its Instagram account to the directory.
    pub fn register(&self, page: PageId, instagram: Option<PageId>, client_slug: &str) {
        self.registry().register(page, instagram, client_slug);
    }

    /// Whether a tenant has something to do with `event` (see [`InboundEvent::needs_tenant`]): the durable
    /// inbox commits such an event pending and hands it over; any other is stored done and only counted.
    pub fn needs_tenant(&self, event: &InboundEvent) -> bool {
        event.needs_tenant(&self.inner.shared.settings.own_app_id)
    }

    /// This node no longer runs `page`'s tenant (it released or lost the page, and [`Tenure`] says so
    /// already): its actor stops, the replies it had queued are reported never sent, and the Send API calls
    /// it had in flight finish and are stored.
    pub fn disown(&self, page: &PageId) {
        if let Some(actor) = self.registry().release(page) {
            let _ = actor.send_message(TenantMsg::Release);
        }
    }

    /// Stops `page`'s running tenant so that its next event starts a new one (the stuck-Page watchdog heals a
    /// tenant that holds events and makes no progress). Its queued replies are reported never sent.
    pub fn restart(&self, page: &PageId) -> bool {
        match self.registry().release(page) {
            Some(actor) => {
                let _ = actor.send_message(TenantMsg::Release);
                true
            }
            None => false,
        }
    }

    /// What runs for `page` in this engine now.
    pub fn presence(&self, page: &PageId) -> TenantPresence {
        self.registry().presence(page)
    }

    /// Send API calls `page`'s tenant has in flight (they go on after its actor stopped, until Meta answers
    /// and the answer is stored).
    pub fn sends_in_flight(&self, page: &PageId) -> u64 {
        self.inner.shared.stats.get(page).map_or(0, |s| s.sends_in_flight())
    }

    /// Whose `account_id` is, if anyone's.
    pub fn route(&self, account_id: &str) -> Option<Route> {
        self.registry().route(account_id)
    }

    /// Routes one event to its tenant without waiting for anything.
    pub fn dispatch(&self, event: InboundEvent) -> Dispatched {
        let account = event.account_id.clone();
        match self.registry().deliver(event, self.inner.shared.settings.start_buffer_capacity) {
            Delivery::Delivered => Dispatched::Routed,
            Delivery::Start(page) => {
                if let Some(supervisor) = self.inner.supervisor.get() {
                    let _ = supervisor.send_message(SupervisorMsg::Start(page));
                }
                Dispatched::Routed
            }
            Delivery::Unknown => {
                self.unknown(account.as_str());
                Dispatched::UnknownPage
            }
            Delivery::Elsewhere(_) => Dispatched::Elsewhere,
            Delivery::Refused(page, reason) => {
                metrics::counter!(EVENTS_DROPPED, "page" => page.as_str().to_owned(), "reason" => reason).increment(1);
                Dispatched::Dropped(reason)
            }
        }
    }

    fn unknown(&self, account_id: &str) {
        let labelled = self.inner.unknown_labelled.contains_key(account_id)
            || (self.inner.unknown_labelled.len() < UNKNOWN_LABELS
                && self.inner.unknown_labelled.insert(account_id.to_owned(), ()).is_none());
        let label = if labelled { account_id.to_owned() } else { "other".to_owned() };
        metrics::counter!(UNKNOWN_PAGE_EVENTS, "page" => label).increment(1);
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
        self.tell(&page, TenantMsg::Reload);
    }

    /// Something the tenant loads changed (a conversation handed back to the bot): a live actor reloads it in
    /// place (queued replies are kept).
    pub fn reload(&self, page: &PageId) {
        self.tell(page, TenantMsg::Reload);
    }

    /// The token is known to be invalid (token health check): the live actor stops sending.
    pub fn invalidate(&self, page: &PageId, reason: &str) {
        self.tell(page, TenantMsg::Invalidate { reason: reason.to_owned() });
    }

    /// The page was disconnected: forget it and stop its actor (dropping its token).
    pub fn disconnect(&self, page: &PageId) {
        if let Some(actor) = self.registry().forget(page) {
            let _ = actor.send_message(TenantMsg::Disconnect);
        }
    }

    /// Sends a message to the tenant's live actor, if it has one.
    fn tell(&self, page: &PageId, msg: TenantMsg) {
        if let Some(actor) = self.registry().running(page) {
            let _ = actor.send_message(msg);
        }
    }

    /// A tenant's figures for people: last event, replies in the last hour, running totals.
    pub fn stats(&self, page: &PageId) -> StatsSnapshot {
        self.inner.shared.stats.get(page).map(|s| s.snapshot()).unwrap_or_default()
    }

    /// The webhook → reply latencies `page`'s tenant counted since they were last taken.
    pub fn take_reply_latencies(&self, page: &PageId) -> crate::telemetry::stats::Latencies {
        self.inner.shared.stats.get(page).map(|s| s.take_reply_latencies()).unwrap_or_default()
    }

    /// The pages this engine has figures for (every page a tenant ran for since the process started).
    pub fn pages_with_figures(&self) -> Vec<PageId> {
        self.inner.shared.stats.iter().map(|e| e.key().clone()).collect()
    }

    /// Whether the tenant has a running actor right now (it stops when idle).
    pub fn is_active(&self, page: &PageId) -> bool {
        self.registry().running(page).is_some()
    }

    /// Tenants with a running actor.
    pub fn active_tenants(&self) -> usize {
        self.registry().active_tenants()
    }

    /// Pages the directory routes (connected integrations).
    pub fn known_pages(&self) -> usize {
        self.registry().known_pages()
    }

    /// True while the supervisor runs (for readiness).
    pub fn is_running(&self) -> bool {
        self.inner.supervisor.get().is_some_and(|s| s.get_status() == ractor::ActorStatus::Running)
    }

    /// Stops every tenant and the supervisor, then waits (up to `send_drain`) for the tasks tenants started,
    /// so the answers to Send API calls already made reach storage.
    pub async fn shutdown(&self) {
        self.inner.idle_checks.cancel();
        self.registry().begin_stopping();
        if let Some(supervisor) = self.inner.supervisor.get() {
            supervisor
                .stop_children_and_wait(Some("shutdown".to_owned()), Some(std::time::Duration::from_secs(5)))
                .await;
            supervisor.stop(Some("shutdown".to_owned()));
        }
        self.registry().clear();
        let tasks = &self.inner.shared.tasks;
        tasks.close();
        if tokio::time::timeout(self.inner.shared.settings.send_drain, tasks.wait()).await.is_err() {
            tracing::warn!(in_flight = tasks.len(), "tenant tasks (Send API calls) still running at shutdown");
        }
    }

    #[cfg(feature = "test-hooks")]
    /// Makes the tenant's actor panic, to exercise supervision.
    pub fn crash(&self, page: &PageId) {
        self.tell(page, TenantMsg::Crash);
    }

    fn registry(&self) -> &Registry {
        &self.inner.shared.registry
    }
}

/// Asks every running tenant, each half `idle_timeout`, whether it has been idle long enough to stop. One
/// task for the whole engine, rather than a timer task in every actor (that task was about a tenth of a
/// running tenant's memory). Ends when the router shuts down.
async fn idle_checks(shared: Arc<Shared>, stop: tokio_util::sync::CancellationToken) {
    let every = shared.settings.idle_timeout.max(std::time::Duration::from_millis(10)) / 2;
    crate::timing::timer::every(every, crate::timing::timer::First::AfterPeriod, stop, || {
        for actor in shared.registry.running_actors() {
            let _ = actor.send_message(TenantMsg::IdleCheck);
        }
        std::future::ready(())
    })
    .await;
}
