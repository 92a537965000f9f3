//! The tenant actor: one per connected Page (its Instagram account is routed here too). It holds the
//! decrypted token in memory, runs the client's bot on each event in order (`respond`), and sends the replies
//! through the Graph API at the tenant's own pace (`send`), reporting what it finished to the durable inbox
//! (`marks`).
//!
//! Nothing slow is awaited inside `handle`: loading the integration, asking the responder and calling the
//! Send API run as tasks that report back with a message, so a tenant keeps taking events while Meta is
//! slow. Waits are timers (`send_after`). Expected failures (Graph errors, a failing relay) are handled here
//! and counted; `Err` from a handler means "my state is corrupt, restart me".

mod marks;
mod respond;
mod send;
mod settle;
mod takeover;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::context::TenantContext;
use crate::dedup::Dedup;
use crate::event::InboundEvent;
use crate::ids::InboxId;
use crate::limiter::SendLimiter;
pub(crate) use crate::mailbox::{QueuedSend, Reply, TenantMsg, Unanswered};
use crate::metrics::TenantMetrics;
use crate::ports::{LoadError, Progress, TenantProfile};

/// How often loading the integration is tried before the tenant gives up.
const LOAD_ATTEMPTS: u32 = 5;

pub(crate) struct TenantActor;

pub(crate) struct TenantState {
    ctx: TenantContext,
    profile: Option<TenantProfile>,
    metrics: Option<TenantMetrics>,
    /// Events that arrived while the integration was loading.
    loading: Vec<InboundEvent>,
    load_attempts: u32,
    /// Events waiting for the responder, in arrival order (by timestamp within a conversation); one batch
    /// is with the responder at a time, holding at most one event of each conversation.
    pending: VecDeque<InboundEvent>,
    /// A batch is with the responder: the inbox ids it holds.
    responding: Option<Vec<InboxId>>,
    outbox: VecDeque<QueuedSend>,
    in_flight: usize,
    /// Recipients with a call in flight or a retry pending: their next reply waits (order per person).
    busy: HashSet<String>,
    limiter: SendLimiter,
    paused_until: Option<Instant>,
    pump_at: Option<Instant>,
    dedup: Dedup,
    last_activity: Instant,
    /// Inbox events with replies still to finish: (replies left, the last failure if any).
    outstanding: HashMap<InboxId, (usize, Option<String>)>,
    /// Replies sent and inbox events finished during this message, reported together at its end.
    progress: Progress,
    /// The Conversations API pace (2 calls a second) and the messages attributed to unknown replies.
    conversations: Arc<SendLimiter>,
    /// No Conversations API call before this: see [`settle::FIRST_READ_AFTER`].
    conversations_from: Instant,
    claimed: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Replies marked in storage as about to be sent (`send::ATTEMPT_WINDOW` at a time), each with the write
    /// that marks it: a reply is sent only once that write is done, whichever send made it.
    marked: HashMap<crate::ids::ReplyId, send::MarkWrite>,
    /// Conversations a person at the business is handling: the bot stays silent there.
    takeover: takeover::Takeover,
    /// Writes of who handles a conversation still in flight: a load waits for them before it reads storage.
    hold_writes: Vec<respond::HoldWrite>,
}

impl TenantState {
    fn new(ctx: TenantContext) -> Self {
        Self {
            dedup: Dedup::new(ctx.settings.dedup_capacity),
            limiter: SendLimiter::new(1),
            ctx,
            profile: None,
            metrics: None,
            loading: Vec::new(),
            load_attempts: 0,
            pending: VecDeque::new(),
            responding: None,
            outbox: VecDeque::new(),
            in_flight: 0,
            busy: HashSet::new(),
            paused_until: None,
            pump_at: None,
            last_activity: Instant::now(),
            outstanding: HashMap::new(),
            progress: Progress::default(),
            // Meta allows 2 Conversations API calls a second per Page; 0.6 s apart leaves the network room.
            conversations: Arc::new(SendLimiter::with_period(Duration::from_millis(600))),
            conversations_from: Instant::now() + settle::FIRST_READ_AFTER,
            claimed: Arc::default(),
            marked: HashMap::new(),
            takeover: takeover::Takeover::default(),
            hold_writes: Vec::new(),
        }
    }

    /// How this tenant settles replies whose outcome is unknown.
    fn settler(&self) -> settle::Settler {
        settle::Settler {
            graph: self.ctx.ports.graph.clone(),
            token: self.profile.as_ref().and_then(|p| p.token.clone()),
            page: self.profile.as_ref().map_or_else(|| self.ctx.page.clone(), |p| p.page_id.clone()),
            pace: self.conversations.clone(),
            not_before: self.conversations_from,
            claimed: self.claimed.clone(),
            backoff: self.backoff(),
            may_settle: self.ctx.may_settle(),
        }
    }

    fn blocked(&self) -> bool {
        self.profile.as_ref().is_none_or(|p| p.token.is_none() || p.blocked.is_some())
    }

    fn idle(&self) -> bool {
        self.pending.is_empty()
            && self.responding.is_none()
            && self.outbox.is_empty()
            && self.in_flight == 0
            && self.busy.is_empty()
            && self.loading.is_empty()
    }

    /// Reports the queue depth, and what keeps the tenant from sending (for the stuck-Page watchdog).
    fn report_depth(&self) {
        if let Some(m) = &self.metrics {
            m.queue_depth(self.outbox.len() + self.in_flight);
        }
        let blocked = self.profile.as_ref().is_some_and(|p| p.token.is_none() || p.blocked.is_some());
        let paused_until_ms = self.paused_until.and_then(|until| {
            let left = until.checked_duration_since(Instant::now())?;
            Some(crate::stats::now_ms() + i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 2))
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
        // The replies still queued were never sent: say so, so whoever handles their events next sends them
        // without settling first.
        let unattempted: Vec<_> = state.outbox.drain(..).filter_map(|q| q.inbox_id.zip(q.reply_id)).collect();
        if !unattempted.is_empty() {
            let sink = state.ctx.ports.events.clone();
            state.ctx.spawn(async move { sink.progress(Progress { unattempted, ..Progress::default() }).await });
        }
        if let Some(m) = &state.metrics {
            m.queue_depth(0);
        }
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
                    state.loading.push(event);
                } else {
                    respond::accept(&myself, state, event);
                }
            }
            TenantMsg::Loaded(result) => on_loaded(&myself, state, result),
            TenantMsg::Reload => load(&myself, state),
            TenantMsg::Responded(results) => {
                state.responding = None;
                for (event, result) in results {
                    respond::responded(state, event, result);
                }
                respond::respond_next(&myself, state);
                send::pump(&myself, state);
            }
            TenantMsg::Pump => {
                state.pump_at = None;
                send::pump(&myself, state);
            }
            TenantMsg::NotMarked { item, problem } => {
                state.in_flight -= 1;
                send::not_marked(&myself, state, item, &problem);
            }
            TenantMsg::SendDone { item, result, elapsed } => {
                state.in_flight -= 1;
                send::on_sent(&myself, state, item, result, elapsed);
                send::pump(&myself, state);
            }
            TenantMsg::Retry(item) => {
                state.busy.remove(&item.message.recipient);
                state.outbox.push_front(item);
                send::pump(&myself, state);
            }
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
        marks::report(state);
        Ok(())
    }
}

/// The client disconnected the page: every event it holds is finished as such, and the actor stops.
fn on_disconnect(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
    let dropped = state.outbox.len() + state.pending.len();
    if let Some(m) = &state.metrics {
        m.dropped("disconnected", dropped as u64);
    }
    let ids: Vec<InboxId> = state
        .pending
        .iter()
        .chain(state.loading.iter())
        .filter_map(|e| e.inbox_id)
        .chain(state.outstanding.keys().copied())
        // The batch with the responder: its answer will find this actor stopped.
        .chain(state.responding.take().into_iter().flatten())
        .collect();
    state.outstanding.clear();
    for id in ids {
        marks::finish(state, Some(id), Some("the page was disconnected".to_owned()));
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
    let holds_written = futures_util::future::join_all(state.hold_writes.clone());
    state.ctx.spawn(async move {
        holds_written.await;
        let result = source.load(&page).await;
        let _ = me.send_message(TenantMsg::Loaded(result));
    });
}

fn on_loaded(myself: &ActorRef<TenantMsg>, state: &mut TenantState, result: Result<TenantProfile, LoadError>) {
    match result {
        Ok(profile) => {
            if state.metrics.is_none() {
                let (stats, page) = (state.ctx.stats.clone(), state.ctx.page.as_str());
                state.metrics = Some(TenantMetrics::new(&profile.client_slug, page, stats));
            }
            if state.limiter.rate() != profile.send_rate_per_second {
                state.limiter = SendLimiter::new(profile.send_rate_per_second);
            }
            if let Some(reason) = &profile.blocked {
                tracing::info!(page = %state.ctx.page, %reason, "tenant loaded but may not send");
            }
            // A reload (reconnect) keeps any throttling pause taken on the old token, and drops the block.
            state.takeover.load(&profile.held);
            let bot = profile.responder.clone();
            let profile = TenantProfile {
                responder: Arc::new(crate::rules::PersonFirst { ask: profile.ask_for_person.clone(), bot }),
                ..profile
            };
            state.profile = Some(profile);
            state.load_attempts = 0;
            for event in std::mem::take(&mut state.loading) {
                respond::accept(myself, state, event);
            }
            send::pump(myself, state);
        }
        Err(LoadError::Unavailable(problem)) if state.load_attempts < LOAD_ATTEMPTS => {
            state.load_attempts += 1;
            let delay = Backoff::new(state.ctx.settings.retry_base, Duration::from_secs(10)).delay(state.load_attempts);
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
            tracing::warn!(page = %state.ctx.page, error = %err, dropped = state.loading.len(), "tenant cannot start; events dropped");
            for event in std::mem::take(&mut state.loading) {
                marks::finish(state, event.inbox_id, Some(format!("the page cannot be answered: {err}")));
            }
            myself.stop(Some(err.to_string()));
        }
    }
}
