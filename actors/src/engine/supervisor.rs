//! The supervisor of tenant actors. It owns them: it starts a tenant on demand (linked to itself, with the
//! tenant's context), and restarts one that panicked or failed, with exponential backoff and a restart budget
//! per tenant (at most N restarts within a window). A tenant that spends its budget is quarantined for a
//! while; no failure of one tenant ever stops the supervisor or another tenant. Restarts are counted per
//! tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::time::Instant;

use crate::domain::page::PageId;
use crate::engine::context::Shared;
use crate::telemetry::metrics::ACTOR_RESTARTS;
use crate::tenant::TenantActor;
use crate::timing::backoff::Backoff;

pub(crate) enum SupervisorMsg {
    /// Start the tenant the registry waits for on this page.
    Start(PageId),
}

pub(crate) struct TenantSupervisor;

pub(crate) struct SupervisorState {
    shared: Arc<Shared>,
    by_actor: HashMap<ActorId, PageId>,
    restarts: HashMap<PageId, VecDeque<Instant>>,
}

impl Actor for TenantSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        shared: Arc<Shared>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState { shared, by_actor: HashMap::new(), restarts: HashMap::new() })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisorMsg::Start(page) = msg;
        let registry = &state.shared.registry;
        // An actor may still be on its way out for this page (released, or passivated while busy): the one
        // the registry waits for is started all the same.
        if !registry.is_starting(&page) {
            return Ok(());
        }
        // The page may have moved away since its first event was routed here: nothing starts for it then.
        let Some(epoch) = registry.epoch(&page) else {
            let dropped = registry.abandon_start(&page);
            if dropped > 0 {
                // Still pending in the inbox: the Page's owner takes them.
                metrics::counter!(crate::telemetry::metrics::EVENTS_DROPPED, "page" => page.as_str().to_owned(), "reason" => "not_run_here")
                    .increment(dropped as u64);
                tracing::warn!(%page, dropped, "a tenant was to start for a Page this engine no longer runs; its events are left to the Page's owner");
            }
            return Ok(());
        };
        let ctx = state.shared.context(page.clone(), epoch);
        // Tenant start-up does no I/O (the integration loads in a task), so this returns at once.
        match Actor::spawn_linked(None, TenantActor, ctx, myself.get_cell()).await {
            Ok((actor, _)) => {
                state.by_actor.insert(actor.get_id(), page.clone());
                if registry.activate(&page, actor.clone()) {
                    metrics::gauge!(crate::telemetry::metrics::ACTIVE_ACTORS).increment(1.0);
                } else {
                    actor.stop(Some("disconnected while starting".to_owned()));
                }
            }
            Err(err) => {
                tracing::error!(%page, error = %err, "cannot spawn tenant actor");
                registry.quarantine(&page, Instant::now() + state.shared.settings.quarantine);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => failed(&myself, state, &cell, &err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(page) = forget(state, &cell) {
                    tracing::debug!(%page, ?reason, "tenant stopped");
                    gone(state, &page, cell.get_id(), false);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A tenant failed: its mailbox died with it (the durable inbox hands over again what it held); it restarts
/// after a backoff, or is quarantined once it spent its budget.
fn failed(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, cell: &ActorCell, err: &str) {
    let Some(page) = forget(state, cell) else { return };
    state.shared.ports.events.lost(&page);
    let client = state.shared.registry.client_of(&page).map(|c| c.to_string()).unwrap_or_default();
    metrics::counter!(ACTOR_RESTARTS, "client" => client, "page" => page.as_str().to_owned()).increment(1);
    let settings = state.shared.settings.clone();
    let now = Instant::now();
    let recent = state.restarts.entry(page.clone()).or_default();
    while recent.front().is_some_and(|t| now.duration_since(*t) > settings.restart_window) {
        recent.pop_front();
    }
    recent.push_back(now);
    let restarts = recent.len();
    if restarts > settings.restart_max {
        tracing::error!(%page, error = %err, restarts, "tenant keeps failing; quarantined");
        state.restarts.remove(&page);
        gone(state, &page, cell.get_id(), false);
        state.shared.registry.quarantine(&page, now + settings.quarantine);
        return;
    }
    let delay = Backoff::new(settings.restart_backoff, settings.retry_max).delay(restarts as u32);
    tracing::warn!(%page, error = %err, ?delay, "tenant failed; restarting");
    gone(state, &page, cell.get_id(), true);
    myself.send_after(delay, move || SupervisorMsg::Start(page));
}

fn gone(state: &SupervisorState, page: &PageId, actor: ActorId, restart: bool) {
    metrics::gauge!(crate::telemetry::metrics::ACTIVE_ACTORS).decrement(1.0);
    state.shared.registry.actor_gone(page, actor, restart);
}

fn forget(state: &mut SupervisorState, cell: &ActorCell) -> Option<PageId> {
    state.by_actor.remove(&cell.get_id())
}
