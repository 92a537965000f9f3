//! The registry: which account ids (Page or Instagram) belong to which tenant, and each tenant's slot — its
//! running actor, or the events waiting while one starts. It is a concurrent map, not an actor, so the webhook
//! path answers "whose is this, and where does it go?" with no hop through a mailbox.
//!
//! A slot changes state only under its map shard's lock, so an event is either cast to a live actor before that
//! actor is retired, or lands in a new slot: none is dropped between an idle actor stopping and a new one
//! starting. The registry starts nothing itself: [`Registry::deliver`] says when a tenant must be started, and
//! the router asks the supervisor.

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use ractor::{ActorId, ActorRef, MessagingErr};
use tokio::time::Instant;

use crate::domain::event::InboundEvent;
use crate::domain::page::PageId;
use crate::engine::tenure::Tenure;
use crate::tenant::mailbox::TenantMsg;

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

/// What became of an event handed to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Cast to the running actor, or queued for one that is starting.
    Delivered,
    /// Queued in a new slot: the tenant must be started.
    Start(PageId),
    /// No client owns this account id.
    Unknown,
    /// This engine does not run the page's tenant ([`Tenure`]): another node does, or nobody yet.
    Elsewhere(PageId),
    /// Not taken: the tenant is quarantined, or too many events wait for it to start.
    Refused(PageId, &'static str),
}

struct Inner {
    directory: DashMap<String, Route>,
    slots: DashMap<PageId, Slot>,
    quarantined: DashMap<PageId, Instant>,
    /// Which pages this engine runs: asked, never kept here.
    tenure: Arc<dyn Tenure>,
    /// How often each page's tenant was stopped from outside (released, restarted): a tenant started before
    /// the last time may not send any more, even under the same epoch.
    generations: DashMap<PageId, u64>,
    /// The engine is shutting down.
    stopping: std::sync::atomic::AtomicBool,
}

/// What runs for a page in this engine now (for the stuck-Page watchdog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantPresence {
    /// No actor, none starting: the page's next event starts one.
    Absent,
    /// An actor is being started (or restarted after a failure); events wait for it.
    Starting,
    Running,
    /// The tenant spent its restart budget and takes no events until the quarantine ends.
    Quarantined,
}

/// Cheap to clone; all clones are the same registry.
#[derive(Clone)]
pub(crate) struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    pub fn new(tenure: Arc<dyn Tenure>) -> Self {
        Self {
            inner: Arc::new(Inner {
                directory: DashMap::new(),
                slots: DashMap::new(),
                quarantined: DashMap::new(),
                tenure,
                generations: DashMap::new(),
                stopping: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The epoch under which this engine runs `page` now (see [`Tenure`]).
    pub fn epoch(&self, page: &PageId) -> Option<i64> {
        self.inner.tenure.epoch(page)
    }

    /// Adds (or updates) a connected page and its Instagram account; lifts a quarantine. Whether this engine
    /// runs the page is not the directory's business: [`Tenure`] says.
    pub fn register(&self, page: PageId, instagram: Option<PageId>, client_slug: &str) {
        let route = Route { page: page.clone(), client_slug: Arc::from(client_slug) };
        if let Some(ig) = instagram {
            self.inner.directory.insert(ig.as_str().to_owned(), route.clone());
        }
        self.inner.directory.insert(page.as_str().to_owned(), route);
        self.inner.quarantined.remove(&page);
    }

    pub fn route(&self, account_id: &str) -> Option<Route> {
        self.inner.directory.get(account_id).map(|r| r.clone())
    }

    pub fn client_of(&self, page: &PageId) -> Option<Arc<str>> {
        self.inner.directory.get(page.as_str()).map(|r| r.client_slug.clone())
    }

    pub fn known_pages(&self) -> usize {
        self.inner.directory.len()
    }

    /// How often `page`'s tenant was stopped from outside so far (see [`Registry::release`]).
    pub fn generation(&self, page: &PageId) -> u64 {
        self.inner.generations.get(page).map_or(0, |g| *g)
    }

    /// `page`'s tenant is stopped from outside (this engine no longer runs the page, or it is restarted): its slot
    /// goes, its running actor is given back, to be stopped, and its generation moves on, so nothing it started
    /// sends any more. Events waiting for a tenant that was starting are dropped from memory; they are pending in
    /// the inbox, for the page's next tenant.
    pub fn release(&self, page: &PageId) -> Option<ActorRef<TenantMsg>> {
        *self.inner.generations.entry(page.clone()).or_default() += 1;
        match self.inner.slots.remove(page) {
            Some((_, Slot::Running(actor))) => Some(actor),
            _ => None,
        }
    }

    /// A tenant was to start for `page`, but this engine does not run the page (any more): forget the events
    /// that waited for it (asked again under the slot's lock, so a claim that came meanwhile keeps them); how
    /// many.
    pub fn abandon_start(&self, page: &PageId) -> usize {
        let tenure = &self.inner.tenure;
        match self
            .inner
            .slots
            .remove_if(page, |_, slot| matches!(slot, Slot::Starting(_)) && tenure.epoch(page).is_none())
        {
            Some((_, Slot::Starting(events))) => events.len(),
            _ => 0,
        }
    }

    /// Hands `event` to its tenant's slot; at most `start_buffer` events wait for a tenant that is starting.
    pub fn deliver(&self, event: InboundEvent, start_buffer: usize) -> Delivery {
        let Some(page) = self.inner.directory.get(event.account_id.as_str()).map(|r| r.page.clone()) else {
            return Delivery::Unknown;
        };
        if self.inner.tenure.epoch(&page).is_none() {
            return Delivery::Elsewhere(page);
        }
        if let Some(until) = self.inner.quarantined.get(&page).map(|u| *u) {
            if until > Instant::now() {
                return Delivery::Refused(page, "quarantined");
            }
            self.inner.quarantined.remove(&page);
        }
        match self.inner.slots.entry(page.clone()) {
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Slot::Starting(buffer) if buffer.len() >= start_buffer => Delivery::Refused(page, "start_buffer_full"),
                Slot::Starting(buffer) => {
                    buffer.push(event);
                    Delivery::Delivered
                }
                Slot::Running(actor) => match actor.send_message(TenantMsg::Event(event)) {
                    Ok(()) => Delivery::Delivered,
                    Err(MessagingErr::SendErr(TenantMsg::Event(event))) => {
                        // The actor died between its last message and now: start another.
                        slot.insert(Slot::Starting(vec![event]));
                        Delivery::Start(page)
                    }
                    Err(_) => Delivery::Refused(page, "actor_gone"),
                },
            },
            Entry::Vacant(slot) => {
                slot.insert(Slot::Starting(vec![event]));
                Delivery::Start(page)
            }
        }
    }

    /// Forgets the page (and its Instagram account) and takes its running actor out, to be stopped.
    pub fn forget(&self, page: &PageId) -> Option<ActorRef<TenantMsg>> {
        self.inner.directory.retain(|_, route| &route.page != page);
        match self.inner.slots.remove(page) {
            Some((_, Slot::Running(actor))) => Some(actor),
            _ => None,
        }
    }

    /// The tenant's running actor, if it has one.
    pub fn running(&self, page: &PageId) -> Option<ActorRef<TenantMsg>> {
        match self.inner.slots.get(page).as_deref() {
            Some(Slot::Running(actor)) => Some(actor.clone()),
            _ => None,
        }
    }

    /// What runs for `page` now.
    pub fn presence(&self, page: &PageId) -> TenantPresence {
        if self.inner.quarantined.get(page).is_some_and(|until| *until > Instant::now()) {
            return TenantPresence::Quarantined;
        }
        match self.inner.slots.get(page).as_deref() {
            None => TenantPresence::Absent,
            Some(Slot::Starting(_)) => TenantPresence::Starting,
            Some(Slot::Running(_)) => TenantPresence::Running,
        }
    }

    /// Every running actor.
    pub fn running_actors(&self) -> Vec<ActorRef<TenantMsg>> {
        self.inner
            .slots
            .iter()
            .filter_map(|s| match s.value() {
                Slot::Running(actor) => Some(actor.clone()),
                Slot::Starting(_) => None,
            })
            .collect()
    }

    pub fn active_tenants(&self) -> usize {
        self.inner.slots.iter().filter(|s| matches!(s.value(), Slot::Running(_))).count()
    }

    /// Whether `page` still waits for an actor (it may have been disconnected meanwhile).
    pub fn is_starting(&self, page: &PageId) -> bool {
        matches!(self.inner.slots.get(page).as_deref(), Some(Slot::Starting(_)))
    }

    /// `actor` started for `page`: the waiting events go to it, in order. False if the page was forgotten
    /// meanwhile (the actor should stop).
    pub fn activate(&self, page: &PageId, actor: ActorRef<TenantMsg>) -> bool {
        let Some(mut slot) = self.inner.slots.get_mut(page) else { return false };
        if let Slot::Starting(buffer) = &mut *slot {
            for event in buffer.drain(..) {
                let _ = actor.send_message(TenantMsg::Event(event));
            }
        }
        *slot = Slot::Running(actor);
        true
    }

    /// `actor` of `page` is gone; if it is to be restarted, later events wait for the new one.
    pub fn actor_gone(&self, page: &PageId, actor: ActorId, restart: bool) {
        if let Entry::Occupied(mut slot) = self.inner.slots.entry(page.clone())
            && matches!(slot.get(), Slot::Running(a) if a.get_id() == actor)
        {
            if restart {
                slot.insert(Slot::Starting(Vec::new()));
            } else {
                slot.remove();
            }
        }
    }

    /// The tenant spent its restart budget: drop what waits for it and refuse events until `until`.
    pub fn quarantine(&self, page: &PageId, until: Instant) {
        self.inner.quarantined.insert(page.clone(), until);
        self.inner.slots.remove(page);
    }

    /// An idle tenant's actor retires: only if the registry still routes to that very actor.
    pub fn retire(&self, page: &PageId, actor: ActorId) -> bool {
        self.inner.slots.remove_if(page, |_, slot| matches!(slot, Slot::Running(a) if a.get_id() == actor)).is_some()
    }

    /// The engine is shutting down: work that can wait for the next start stops (see `is_stopping`).
    pub fn begin_stopping(&self) {
        self.inner.stopping.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops routing to anyone (shutdown).
    pub fn clear(&self) {
        self.inner.slots.clear();
    }
}
