//! The tenant actor: one per connected Page (its Instagram account is routed here too). It holds the
//! decrypted token in memory, runs the client's bot on each event in order (`respond`), and sends the replies
//! through the Graph API at the tenant's own pace (`send`), reporting what it finished to the durable inbox
//! (`marks`). Replies whose outcome a crash left unknown are settled first (`settle`); conversations a person
//! at the business handles are left to them (`takeover`).
//!
//! `handle` only dispatches: each message goes to the part it concerns. Where a tenant decides to send is
//! `send::pump`; where it decides what to answer, `respond::accept`.
//!
//! Nothing slow is awaited inside `handle`: loading the integration, asking the responder and calling the
//! Send API run as tasks that report back with a message, so a tenant keeps taking events while Meta is
//! slow. Waits are timers (`send_after`). Expected failures (Graph errors, a failing relay) are handled here
//! and counted; `Err` from a handler means "my state is corrupt, restart me".

pub(crate) mod dedup;
pub(crate) mod mailbox;
mod marks;
mod respond;
mod send;
mod settle;
mod takeover;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

pub(crate) use self::mailbox::{QueuedSend, Reply, TenantMsg, ToSend, Unanswered};
use self::marks::Marks;
use self::respond::Responding;
use self::send::Sending;
use self::settle::Reads;
use self::takeover::{HoldWrites, Takeover};
use crate::domain::event::InboundEvent;
use crate::domain::page::PageId;
use crate::domain::token::AccessToken;
use crate::engine::context::TenantContext;
use crate::ports::{LoadError, TenantProfile};
use crate::telemetry::metrics::TenantMetrics;
use crate::timing::backoff::Backoff;

/// How often loading the integration is tried before the tenant gives up.
const LOAD_ATTEMPTS: u32 = 5;

pub(crate) struct TenantActor;

/// One Page's tenant, by concern: each part owns its fields and is changed only through its operations.
pub(crate) struct TenantState {
    ctx: TenantContext,
    /// The loaded integration (token, responder, settings); `None` until the first load.
    profile: Option<TenantProfile>,
    /// Records nothing until the first load.
    metrics: TenantMetrics,
    /// Events that arrive while the integration loads, and the attempts made.
    loading: Loading,
    /// Events waiting for the bot, and the batch it holds (`respond`).
    responding: Responding,
    /// Replies waiting to be sent, and what decides when (`send`).
    sending: Sending,
    /// What the durable inbox is told about the events (`marks`).
    marks: Marks,
    /// Conversations a person at the business is handling: the bot stays silent there (`takeover`).
    takeover: Takeover,
    /// Writes of who handles a conversation still in flight: a load waits for them before it reads storage.
    hold_writes: HoldWrites,
    /// Reading conversations back to settle replies of unknown outcome (`settle`).
    reads: Reads,
    last_activity: Instant,
}

#[derive(Default)]
struct Loading {
    waiting: Vec<InboundEvent>,
    attempts: u32,
}

impl TenantState {
    fn new(ctx: TenantContext) -> Self {
        Self {
            responding: Responding::new(ctx.settings.dedup_capacity),
            ctx,
            profile: None,
            metrics: TenantMetrics::default(),
            loading: Loading::default(),
            sending: Sending::new(),
            marks: Marks::default(),
            takeover: Takeover::default(),
            hold_writes: HoldWrites::default(),
            reads: Reads::new(),
            last_activity: Instant::now(),
        }
    }

    /// The token, unless the tenant has none (not loaded, or Meta rejected it).
    fn token(&self) -> Option<AccessToken> {
        self.profile.as_ref().and_then(|p| p.token.clone())
    }

    /// The Page replies are sent as.
    fn page_id(&self) -> PageId {
        self.profile.as_ref().map_or_else(|| self.ctx.page.clone(), |p| p.page_id.clone())
    }

    /// How this tenant settles replies whose outcome is unknown.
    fn settler(&self) -> settle::Settler {
        let graph = self.ctx.ports.graph.clone();
        self.reads.settler(graph, self.token(), self.page_id(), self.backoff(), self.ctx.may_settle())
    }

    /// May not send: not loaded, no token, or blocked until the client reconnects.
    fn blocked(&self) -> bool {
        self.profile.as_ref().is_none_or(|p| p.token.is_none() || p.blocked.is_some())
    }

    fn idle(&self) -> bool {
        self.responding.is_idle() && self.sending.is_idle() && self.loading.waiting.is_empty()
    }

    /// Reports the queue depth, and what keeps the tenant from sending (for the stuck-Page watchdog).
    fn report_depth(&self) {
        self.metrics.queue_depth(self.sending.depth());
        let blocked = self.profile.as_ref().is_some_and(|p| p.token.is_none() || p.blocked.is_some());
        let paused_until_ms = self.sending.paused_until().and_then(|until| {
            let left = until.checked_duration_since(Instant::now())?;
            Some(crate::telemetry::stats::now_ms() + i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 2))
        });
        self.ctx.stats.condition(blocked, paused_until_ms);
    }

    /// The one backoff this tenant retries with.
    fn backoff(&self) -> Backoff {
        Backoff::new(self.ctx.settings.retry_base, self.ctx.settings.retry_max)
    }
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantContext;

    async fn pre_start(
        &self,
        myself: ActorRef<TenantMsg>,
        ctx: TenantContext,
    ) -> Result<TenantState, ActorProcessingErr> {
        let state = TenantState::new(ctx);
        // The router asks every running tenant whether it is idle (`router::idle_checks`).
        load(&myself, &state);
        Ok(state)
    }

    async fn post_stop(&self, _myself: ActorRef<TenantMsg>, state: &mut TenantState) -> Result<(), ActorProcessingErr> {
        // Drop the token now (it zeroizes on drop) rather than whenever the state is freed.
        state.profile = None;
        // The replies still queued, and those recorded marked by a batch not queued yet, were never sent.
        let mut unattempted = state.sending.take_unattempted();
        unattempted.extend(state.responding.take_in_transit());
        send::never_sent(state, unattempted);
        state.metrics.queue_depth(0);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TenantMsg>,
        msg: TenantMsg,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantMsg::Event(event) => {
                state.last_activity = Instant::now();
                if state.profile.is_none() {
                    state.loading.waiting.push(event);
                } else {
                    respond::accept(&myself, state, event);
                }
            }
            TenantMsg::Loaded(result) => on_loaded(&myself, state, result),
            TenantMsg::Reload => load(&myself, state),
            TenantMsg::Responded(batch, results) => respond::answered(&myself, state, batch, results),
            TenantMsg::Pump(at) => send::pump_due(&myself, state, at),
            TenantMsg::NotMarked { item, problem } => send::not_marked(&myself, state, item, &problem),
            TenantMsg::SendDone { item, result, elapsed } => send::on_sent(&myself, state, item, result, elapsed),
            TenantMsg::Retry(item) => send::retry_due(&myself, state, item),
            TenantMsg::Invalidate { reason } => {
                if let Some(p) = state.profile.as_mut() {
                    p.token = None;
                    p.blocked = Some(reason);
                }
            }
            TenantMsg::Disconnect => on_disconnect(&myself, state),
            TenantMsg::IdleCheck => on_idle_check(&myself, state),
            TenantMsg::Release => myself.stop(Some("released".to_owned())),
            TenantMsg::Passivate => {
                if state.idle() {
                    myself.stop(Some("idle".to_owned()));
                } else {
                    // Events arrived between the idle check and now: keep working; a new actor may be
                    // starting for later events, so this one finishes what it has and stops.
                    state.last_activity = Instant::now() - state.ctx.settings.idle_timeout;
                }
            }
            #[cfg(feature = "test-hooks")]
            TenantMsg::Crash => panic!("injected crash for page {}", state.ctx.page),
        }
        state.report_depth();
        state.marks.report(&state.ctx);
        Ok(())
    }
}

/// The client disconnected the page: every event it holds is finished as such, and the actor stops.
fn on_disconnect(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
    let dropped = state.sending.queued() + state.responding.waiting();
    state.metrics.dropped("disconnected", dropped as u64);
    // Taken and not answered (the batch with the responder too: its answer will find this actor stopped),
    // waiting for the load, and waiting for their replies.
    let mut ids = state.responding.take_all();
    ids.extend(state.loading.waiting.iter().filter_map(|e| e.inbox_id));
    ids.extend(state.marks.take_outstanding());
    for id in ids {
        state.marks.finish(Some(id), Some("the page was disconnected".to_owned()));
    }
    myself.stop(Some("disconnected".to_owned()));
}

/// Stops (retiring from the registry first) when idle for the idle timeout.
fn on_idle_check(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
    if state.last_activity.elapsed() >= state.ctx.settings.idle_timeout
        && state.idle()
        && state.ctx.retire(myself.get_id())
    {
        // The registry no longer routes here; anything it routed before is ahead of this in the mailbox and
        // is handled first.
        let _ = myself.send_message(TenantMsg::Passivate);
    }
}

/// Starts loading the integration in a task: once this tenant's writes of who handles a conversation are in
/// storage (else the holds loaded would lack one just made, and replace it).
fn load(myself: &ActorRef<TenantMsg>, state: &TenantState) {
    let source = state.ctx.ports.source.clone();
    let page = state.ctx.page.clone();
    let me = myself.clone();
    let holds_written = state.hold_writes.all_done();
    state.ctx.spawn(async move {
        holds_written.await;
        let result = source.load(&page).await;
        let _ = me.send_message(TenantMsg::Loaded(result));
    });
}

fn on_loaded(myself: &ActorRef<TenantMsg>, state: &mut TenantState, result: Result<TenantProfile, LoadError>) {
    match result {
        Ok(profile) => {
            state.metrics.load(&profile.client_slug, state.ctx.page.as_str(), state.ctx.stats.clone());
            state.sending.set_rate(profile.send_rate_per_second);
            if let Some(reason) = &profile.blocked {
                tracing::info!(page = %state.ctx.page, %reason, "tenant loaded but may not send");
            }
            // A reload (reconnect) keeps any throttling pause taken on the old token, and drops the block.
            state.takeover.load(&profile.held);
            let bot = profile.responder.clone();
            let profile = TenantProfile {
                responder: Arc::new(crate::bot::PersonFirst { ask: profile.ask_for_person.clone(), bot }),
                ..profile
            };
            state.profile = Some(profile);
            state.loading.attempts = 0;
            for event in std::mem::take(&mut state.loading.waiting) {
                respond::accept(myself, state, event);
            }
            send::pump(myself, state);
        }
        Err(LoadError::Unavailable(problem)) if state.loading.attempts < LOAD_ATTEMPTS => {
            state.loading.attempts += 1;
            let delay =
                Backoff::new(state.ctx.settings.retry_base, Duration::from_secs(10)).delay(state.loading.attempts);
            tracing::warn!(page = %state.ctx.page, %problem, ?delay, "cannot load the integration; retrying");
            myself.send_after(delay, || TenantMsg::Reload);
        }
        Err(err) if state.profile.is_some() => {
            // A reload failed (the page was disconnected meanwhile): stop sending.
            tracing::warn!(page = %state.ctx.page, error = %err, "reload failed; tenant stops sending");
            if let Some(p) = state.profile.as_mut() {
                p.token = None;
                p.blocked = Some(err.to_string());
            }
        }
        Err(err) => {
            let waiting = std::mem::take(&mut state.loading.waiting);
            tracing::warn!(page = %state.ctx.page, error = %err, dropped = waiting.len(), "tenant cannot start; events dropped");
            for event in waiting {
                state.marks.finish(event.inbox_id, Some(format!("the page cannot be answered: {err}")));
            }
            myself.stop(Some(err.to_string()));
        }
    }
}
