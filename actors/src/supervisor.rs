//! The supervisor of tenant actors. It starts a tenant on demand and restarts one that panicked or failed,
//! with exponential backoff and a restart budget per tenant (at most N restarts within a window). A
//! tenant that spends its budget is quarantined for a while; no failure of one tenant ever stops the
//! supervisor or another tenant. Restarts are counted per tenant.

use std::collections::{HashMap, VecDeque};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::time::Instant;

use crate::PageId;
use crate::metrics::ACTOR_RESTARTS;
use crate::router::Router;
use crate::tenant::{TenantActor, TenantArgs};

pub enum SupervisorMsg {
    /// Start the tenant for this page if it is not running.
    Start(PageId),
}

pub struct TenantSupervisor;

pub struct SupervisorState {
    router: Router,
    running: HashMap<PageId, ActorId>,
    by_actor: HashMap<ActorId, PageId>,
    restarts: HashMap<PageId, VecDeque<Instant>>,
}

impl Actor for TenantSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Router;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        router: Router,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState { router, running: HashMap::new(), by_actor: HashMap::new(), restarts: HashMap::new() })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisorMsg::Start(page) = msg;
        if state.running.contains_key(&page) || !state.router.is_starting(&page) {
            return Ok(());
        }
        let args = TenantArgs { page: page.clone(), router: state.router.clone() };
        // Tenant start-up does no I/O (the integration loads in a task), so this returns at once.
        match Actor::spawn_linked(None, TenantActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                state.running.insert(page.clone(), actor.get_id());
                state.by_actor.insert(actor.get_id(), page.clone());
                if !state.router.activate(&page, actor.clone()) {
                    actor.stop(Some("disconnected while starting".to_owned()));
                }
            }
            Err(err) => {
                tracing::error!(%page, error = %err, "cannot spawn tenant actor");
                state.router.quarantine(&page);
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
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(page) = forget(state, &cell) else { return Ok(()) };
                // Its mailbox died with it: the durable inbox hands what it held over again.
                state.router.deps().events.lost(&page);
                let client = state.router.client_of(&page).map(|c| c.to_string()).unwrap_or_default();
                metrics::counter!(ACTOR_RESTARTS, "client" => client, "page" => page.as_str().to_owned()).increment(1);
                let settings = &state.router.deps().settings;
                let now = Instant::now();
                let recent = state.restarts.entry(page.clone()).or_default();
                while recent.front().is_some_and(|t| now.duration_since(*t) > settings.restart_window) {
                    recent.pop_front();
                }
                recent.push_back(now);
                if recent.len() > settings.restart_max {
                    tracing::error!(%page, error = %err, restarts = recent.len(), "tenant keeps failing; quarantined");
                    state.restarts.remove(&page);
                    state.router.actor_gone(&page, cell.get_id(), false);
                    state.router.quarantine(&page);
                    return Ok(());
                }
                let delay = settings.restart_backoff.saturating_mul(1 << (recent.len() - 1).min(10));
                tracing::warn!(%page, error = %err, ?delay, "tenant failed; restarting");
                state.router.actor_gone(&page, cell.get_id(), true);
                myself.send_after(delay, move || SupervisorMsg::Start(page));
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(page) = forget(state, &cell) {
                    tracing::debug!(%page, ?reason, "tenant stopped");
                    state.router.actor_gone(&page, cell.get_id(), false);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn forget(state: &mut SupervisorState, cell: &ActorCell) -> Option<PageId> {
    let page = state.by_actor.remove(&cell.get_id())?;
    if state.running.get(&page) == Some(&cell.get_id()) {
        state.running.remove(&page);
    }
    Some(page)
}
