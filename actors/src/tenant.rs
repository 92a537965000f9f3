//! The tenant actor: one per connected Page (its Instagram account is routed here too). It holds the
//! decrypted token in memory, runs the client's bot on each event in order, and sends the replies through
//! the Graph API at the tenant's own pace.
//!
//! Nothing slow is awaited inside `handle`: loading the integration, asking the responder and calling the
//! Send API run as tasks that report back with a message, so a tenant keeps taking events while Meta is
//! slow. Expected failures (Graph errors, a failing relay) are handled here and counted; `Err` from a
//! handler means "my state is corrupt, restart me".

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures_util::future::join_all;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::Rng as _;
use tokio::time::Instant;

use crate::PageId;
use crate::dedup::Dedup;
use crate::event::InboundEvent;
use crate::limiter::SendLimiter;
use crate::metrics::TenantMetrics;
use crate::ports::{
    EventSink, FailureClass, GraphFailure, LoadError, OutgoingMessage, Progress, RecordedReply, Responder, SendOk,
    TenantProfile,
};
use crate::router::Router;
use crate::split::split_for;

/// Messages a tenant actor handles.
pub enum TenantMsg {
    /// A webhook event for this page.
    Event(InboundEvent),
    /// The integration was (re)loaded.
    Loaded(Result<TenantProfile, LoadError>),
    /// Reload the integration (OAuth completion, reconnect): the token is swapped in place and queued
    /// replies are kept.
    Reload,
    /// The replies to a batch of events are known (and, for inbox events, recorded in the outbox), in the
    /// order the events were taken.
    Responded(Vec<(InboundEvent, Result<Vec<Reply>, Unanswered>)>),
    /// Try to send what is queued.
    Pump,
    /// A Send API call finished.
    SendDone { item: QueuedSend, result: Result<SendOk, GraphFailure>, elapsed: Duration },
    /// A transiently failed reply is due again.
    Retry(QueuedSend),
    /// The token was found invalid elsewhere (token health check): stop sending until a reload.
    Invalidate { reason: String },
    /// The client disconnected the page: drop everything and stop.
    Disconnect,
    /// From the router, every half idle timeout: stop if idle.
    IdleCheck,
    /// Stop now (the router already forgot this actor).
    Passivate,
    /// For supervision tests: fail as a handler bug would.
    #[cfg(feature = "test-hooks")]
    Crash,
}

/// A reply waiting to be sent.
#[derive(Debug, Clone)]
pub struct QueuedSend {
    pub message: OutgoingMessage,
    pub attempts: u32,
    /// The inbox row of the event this reply answers, if the event came from the durable inbox.
    pub inbox_id: Option<i64>,
    /// The reply's outbox row (inbox events only).
    pub reply_id: Option<i64>,
}

/// A reply still to send, with its outbox row for inbox events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub reply_id: Option<i64>,
}

/// Why an event got no replies to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// The bot failed: the event is finished as failed.
    Bot(String),
    /// Storage would not record the replies (after retries): the inbox row stays pending and is handled
    /// again at the next start.
    Storage(String),
}

/// How often recording replies is tried before the event is left pending.
const STORAGE_ATTEMPTS: u32 = 8;

/// The most events handed to the responder together (their replies are recorded in one storage call).
const RESPOND_BATCH: usize = 64;
/// How far into the pending queue a batch looks for events of conversations not in it yet.
const RESPOND_SCAN: usize = 4 * RESPOND_BATCH;

pub struct TenantActor;

pub struct TenantArgs {
    pub page: PageId,
    pub router: Router,
}

pub struct TenantState {
    page: PageId,
    router: Router,
    profile: Option<TenantProfile>,
    metrics: Option<TenantMetrics>,
    /// Events that arrived while the integration was loading.
    loading: Vec<InboundEvent>,
    load_attempts: u32,
    /// Events waiting for the responder, in arrival order (by timestamp within a conversation); one batch
    /// is with the responder at a time, holding at most one event of each conversation.
    pending: VecDeque<InboundEvent>,
    /// A batch is with the responder: the inbox ids it holds.
    responding: Option<Vec<i64>>,
    outbox: VecDeque<QueuedSend>,
    in_flight: usize,
    /// Recipients with a call in flight or a retry pending: their next reply waits (order per person).
    busy: HashSet<String>,
    limiter: SendLimiter,
    paused_until: Option<Instant>,
    pump_at: Option<Instant>,
    dedup: Dedup,
    last_activity: Instant,
    stats: std::sync::Arc<crate::stats::TenantStats>,
    /// Inbox events with replies still to finish: (replies left, the last failure if any).
    outstanding: std::collections::HashMap<i64, (usize, Option<String>)>,
    /// Replies sent and inbox events finished during this message, reported together at its end.
    progress: Progress,
}

impl TenantState {
    fn blocked(&self) -> bool {
        self.profile.as_ref().is_none_or(|p| p.token.is_none() || p.blocked.is_some())
    }

    fn idle(&self) -> bool {
        self.pending.is_empty()
            && self.responding.is_none()
            && self.outbox.is_empty()
            && self.in_flight == 0
            && self.busy.is_empty()
    }

    fn report_depth(&self) {
        if let Some(m) = &self.metrics {
            m.queue_depth(self.outbox.len() + self.in_flight);
        }
    }
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TenantMsg>,
        args: TenantArgs,
    ) -> Result<TenantState, ActorProcessingErr> {
        let settings = &args.router.deps().settings;
        let stats = args.router.stats_for(&args.page);
        let state = TenantState {
            page: args.page,
            dedup: Dedup::new(settings.dedup_capacity),
            limiter: SendLimiter::new(1),
            router: args.router,
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
            stats,
            outstanding: std::collections::HashMap::new(),
            progress: Progress::default(),
        };
        load(&myself, &state);
        // The router asks every running tenant whether it is idle (`router::idle_checks`).
        Ok(state)
    }

    async fn post_stop(&self, _myself: ActorRef<TenantMsg>, state: &mut TenantState) -> Result<(), ActorProcessingErr> {
        // Drop the token now (it zeroizes on drop) rather than whenever the state is freed.
        state.profile = None;
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
                    accept(&myself, state, event);
                }
            }
            TenantMsg::Loaded(result) => on_loaded(&myself, state, result),
            TenantMsg::Reload => load(&myself, state),
            TenantMsg::Responded(results) => {
                state.responding = None;
                for (event, result) in results {
                    responded(state, event, result);
                }
                respond_next(&myself, state);
                pump(&myself, state);
            }
            TenantMsg::Pump => {
                state.pump_at = None;
                pump(&myself, state);
            }
            TenantMsg::SendDone { item, result, elapsed } => {
                state.in_flight -= 1;
                on_sent(&myself, state, item, result, elapsed);
                pump(&myself, state);
            }
            TenantMsg::Retry(item) => {
                state.busy.remove(&item.message.recipient);
                state.outbox.push_front(item);
                pump(&myself, state);
            }
            TenantMsg::Invalidate { reason } => {
                if let Some(p) = state.profile.as_mut() {
                    p.token = None;
                    p.blocked = Some(reason);
                }
            }
            TenantMsg::Disconnect => {
                let dropped = state.outbox.len() + state.pending.len();
                if let Some(m) = &state.metrics {
                    m.dropped("disconnected", dropped as u64);
                }
                let ids: Vec<Option<i64>> = state
                    .pending
                    .iter()
                    .chain(state.loading.iter())
                    .map(|e| e.inbox_id)
                    .chain(state.outstanding.keys().map(|id| Some(*id)))
                    // The batch with the responder: its answer will find this actor stopped.
                    .chain(state.responding.take().into_iter().flatten().map(Some))
                    .collect();
                state.outstanding.clear();
                for id in ids {
                    finish(state, id, Some("the page was disconnected".to_owned()));
                }
                myself.stop(Some("disconnected".to_owned()));
            }
            TenantMsg::IdleCheck => {
                let idle_for = state.last_activity.elapsed();
                if idle_for >= state.router.deps().settings.idle_timeout
                    && state.idle()
                    && state.loading.is_empty()
                    && state.router.passivate(&state.page, myself.get_id())
                {
                    // The router no longer routes here; anything it routed before is ahead of this in
                    // the mailbox and is handled first.
                    let _ = myself.send_message(TenantMsg::Passivate);
                }
            }
            TenantMsg::Passivate => {
                if state.idle() && state.loading.is_empty() {
                    myself.stop(Some("idle".to_owned()));
                } else {
                    // Events arrived between the idle check and now: keep working; a new actor may be
                    // starting for later events, so this one finishes what it has and stops.
                    state.last_activity = Instant::now() - state.router.deps().settings.idle_timeout;
                }
            }
            #[cfg(feature = "test-hooks")]
            TenantMsg::Crash => panic!("injected crash for page {}", state.page),
        }
        state.report_depth();
        if !state.progress.is_empty() {
            let batch = std::mem::take(&mut state.progress);
            let sink = state.router.deps().events.clone();
            tokio::spawn(async move { sink.progress(batch).await });
        }
        Ok(())
    }
}

/// The replies to `event` are known: queue them (an inbox event is finished with its last one), or finish
/// the event as failed, or leave it pending when storage would not record them.
fn responded(state: &mut TenantState, event: InboundEvent, result: Result<Vec<Reply>, Unanswered>) {
    match result {
        Ok(replies) => {
            if let (Some(id), false) = (event.inbox_id, replies.is_empty()) {
                state.outstanding.insert(id, (replies.len(), None));
            } else {
                finish(state, event.inbox_id, None);
            }
            for reply in replies {
                enqueue(state, &event, reply);
            }
        }
        Err(Unanswered::Bot(problem)) => {
            tracing::warn!(page = %state.page, %problem, "responder failed; event not answered");
            if let Some(m) = &state.metrics {
                m.ignored("responder_failed");
            }
            finish(state, event.inbox_id, Some(format!("the bot failed: {problem}")));
        }
        Err(Unanswered::Storage(problem)) => {
            tracing::error!(page = %state.page, %problem, "cannot record replies; the event stays pending");
            if let Some(m) = &state.metrics {
                m.ignored("storage_unavailable");
            }
            if let Some(key) = event.dedup_key() {
                state.dedup.forget(&key);
            }
            state.progress.released.extend(event.inbox_id);
        }
    }
}

/// An inbox event is finished (done, or failed with the reason).
fn finish(state: &mut TenantState, inbox_id: Option<i64>, failure: Option<String>) {
    if let Some(id) = inbox_id {
        state.progress.finished.push((id, failure));
    }
}

/// One reply of an inbox event reached its final outcome; the event is finished with its last one.
fn settle(state: &mut TenantState, inbox_id: Option<i64>, failure: Option<String>) {
    let Some(id) = inbox_id else { return };
    let Some(entry) = state.outstanding.get_mut(&id) else { return };
    entry.0 = entry.0.saturating_sub(1);
    if failure.is_some() {
        entry.1 = failure;
    }
    if entry.0 == 0
        && let Some((_, failure)) = state.outstanding.remove(&id)
    {
        state.progress.finished.push((id, failure));
    }
}

/// Starts loading the integration in a task.
fn load(myself: &ActorRef<TenantMsg>, state: &TenantState) {
    let source = state.router.deps().source.clone();
    let page = state.page.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let result = source.load(&page).await;
        let _ = me.send_message(TenantMsg::Loaded(result));
    });
}

fn on_loaded(myself: &ActorRef<TenantMsg>, state: &mut TenantState, result: Result<TenantProfile, LoadError>) {
    match result {
        Ok(profile) => {
            if state.metrics.is_none() {
                state.metrics = Some(TenantMetrics::new(&profile.client_slug, state.page.as_str()));
            }
            if state.limiter.rate() != profile.send_rate_per_second {
                state.limiter = SendLimiter::new(profile.send_rate_per_second);
            }
            if let Some(reason) = &profile.blocked {
                tracing::info!(page = %state.page, %reason, "tenant loaded but may not send");
            }
            // A reload (reconnect) lifts throttling pauses taken on the old token only if Meta said so;
            // keep any pause, drop the block.
            state.profile = Some(profile);
            state.load_attempts = 0;
            for event in std::mem::take(&mut state.loading) {
                accept(myself, state, event);
            }
            pump(myself, state);
        }
        Err(LoadError::Unavailable(problem)) if state.load_attempts < 5 => {
            state.load_attempts += 1;
            let delay = backoff(state.router.deps().settings.retry_base, state.load_attempts, Duration::from_secs(10));
            tracing::warn!(page = %state.page, %problem, ?delay, "cannot load the integration; retrying");
            let me = myself.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = me.send_message(TenantMsg::Reload);
            });
        }
        Err(err) => {
            if state.profile.is_some() {
                // A reload failed (the page was disconnected meanwhile): stop sending.
                tracing::warn!(page = %state.page, error = %err, "reload failed; tenant stops sending");
                if let Some(p) = state.profile.as_mut() {
                    p.token = None;
                    p.blocked = Some(err.to_string());
                }
                return;
            }
            tracing::warn!(page = %state.page, error = %err, dropped = state.loading.len(), "tenant cannot start; events dropped");
            for event in std::mem::take(&mut state.loading) {
                finish(state, event.inbox_id, Some(format!("the page cannot be answered: {err}")));
            }
            myself.stop(Some(err.to_string()));
        }
    }
}

/// An event for a loaded tenant: counted, deduplicated, and queued for the responder if it wants one.
fn accept(myself: &ActorRef<TenantMsg>, state: &mut TenantState, event: InboundEvent) {
    if let Some(m) = &state.metrics {
        m.event(event.kind_label(), event.timestamp as f64 / 1000.0);
    }
    // "Last event received" is when it reached us, not Meta's timestamp (redeliveries can be hours late).
    state
        .stats
        .event(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64));
    if let Some(key) = event.dedup_key()
        && !state.dedup.first_time(key)
    {
        if let Some(m) = &state.metrics {
            m.ignored("duplicate");
        }
        // Nothing to finish: an inbox event seen before is the same row handed over again (the inbox
        // stores each key once), and the copy this tenant took first finishes it.
        return;
    }
    if !event.wants_reply() {
        if let Some(m) = &state.metrics {
            m.ignored(if event.is_own() {
                "own_message"
            } else if event.standby {
                "standby"
            } else {
                "no_reply_needed"
            });
        }
        finish(state, event.inbox_id, None);
        return;
    }
    if state.pending.len() >= state.router.deps().settings.pending_capacity {
        // A backlog this deep means the page cannot keep up (throttled, a slow bot): set the event aside
        // rather than hold without bound. An inbox event stays pending, and the sweeper hands it over again.
        if let Some(m) = &state.metrics {
            m.ignored("tenant_backlog");
        }
        if let Some(key) = event.dedup_key() {
            state.dedup.forget(&key);
        }
        state.progress.released.extend(event.inbox_id);
        return;
    }
    // Within a conversation, answer in Meta's timestamp order even if deliveries arrived shuffled.
    let at = insertion_point(&state.pending, &event);
    state.pending.insert(at, event);
    respond_next(myself, state);
}

/// Where `event` goes in `pending`: before the later events of its conversation, after its earlier ones
/// (looking back at most `RESPOND_SCAN` events; Meta's shuffles are short).
fn insertion_point(pending: &VecDeque<InboundEvent>, event: &InboundEvent) -> usize {
    let mut at = pending.len();
    for (i, queued) in pending.iter().enumerate().rev().take(RESPOND_SCAN) {
        if queued.sender == event.sender {
            if queued.timestamp <= event.timestamp {
                break;
            }
            at = i;
        }
    }
    at
}

/// Hands the next batch of pending events to the responder: in queue order, at most one event of each
/// conversation (so a late delivery of an earlier message can still go ahead of the rest of its
/// conversation), and one batch at a time (so replies are queued in that order).
fn respond_next(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
    if state.responding.is_some() || state.pending.is_empty() {
        return;
    }
    let Some(profile) = state.profile.as_ref() else { return };
    let batch = take_batch(&mut state.pending);
    state.responding = Some(batch.iter().filter_map(|e| e.inbox_id).collect());
    let responder = profile.responder.clone();
    let deps = state.router.deps();
    let (sink, retry_base, retry_max) = (deps.events.clone(), deps.settings.retry_base, deps.settings.retry_max);
    let me = myself.clone();
    tokio::spawn(async move {
        let results = answer(batch, responder.as_ref(), sink.as_ref(), retry_base, retry_max).await;
        let _ = me.send_message(TenantMsg::Responded(results));
    });
}

/// Takes up to `RESPOND_BATCH` events from the first `RESPOND_SCAN` of `pending`, the first of each
/// conversation; the others stay in their order.
fn take_batch(pending: &mut VecDeque<InboundEvent>) -> Vec<InboundEvent> {
    let mut batch: Vec<InboundEvent> = Vec::new();
    let mut kept = VecDeque::new();
    let mut scanned = 0;
    while batch.len() < RESPOND_BATCH && scanned < RESPOND_SCAN {
        let Some(event) = pending.pop_front() else { break };
        scanned += 1;
        if batch.iter().any(|taken| taken.sender == event.sender) {
            kept.push_back(event);
        } else {
            batch.push(event);
        }
    }
    while let Some(event) = kept.pop_back() {
        pending.push_front(event);
    }
    batch
}

/// What the responder's answer to one event still needs.
enum Answer {
    Known(Result<Vec<Reply>, Unanswered>),
    /// Replies to record (inbox id, pieces) before any is sent.
    ToRecord(i64, Vec<String>),
}

/// The replies still to send for each of `events`, in order. An inbox event's replies are recorded in the
/// outbox before any is sent, one storage call for the whole batch; an event handed over again after a
/// restart reuses the replies recorded for it (never asking the bot twice) and skips those Meta already
/// accepted.
async fn answer(
    events: Vec<InboundEvent>,
    responder: &dyn Responder,
    sink: &dyn EventSink,
    retry_base: Duration,
    retry_max: Duration,
) -> Vec<(InboundEvent, Result<Vec<Reply>, Unanswered>)> {
    // One conversation per batch: the responder is asked for all of them at once.
    let mut answers =
        join_all(events.iter().map(|event| answer_one(event, responder, sink, retry_base, retry_max))).await;
    let to_record: Vec<(i64, Vec<String>)> = answers
        .iter_mut()
        .filter_map(|a| match a {
            Answer::ToRecord(id, pieces) => Some((*id, std::mem::take(pieces))),
            Answer::Known(_) => None,
        })
        .collect();
    let mut recorded = if to_record.is_empty() {
        Ok(Vec::new().into_iter())
    } else {
        with_retries(retry_base, retry_max, || sink.record(&to_record)).await.map(Vec::into_iter)
    };
    events
        .into_iter()
        .zip(answers)
        .map(|(event, answer)| {
            let result = match answer {
                Answer::Known(result) => result,
                Answer::ToRecord(..) => match &mut recorded {
                    Ok(recorded) => recorded
                        .next()
                        .map(unsent)
                        .ok_or_else(|| Unanswered::Storage("storage recorded fewer events than asked".to_owned())),
                    Err(problem) => Err(Unanswered::Storage(problem.clone())),
                },
            };
            (event, result)
        })
        .collect()
}

/// The replies of `recorded` Meta has not accepted yet.
fn unsent(recorded: Vec<RecordedReply>) -> Vec<Reply> {
    recorded.into_iter().filter(|r| !r.sent).map(|r| Reply { text: r.text, reply_id: Some(r.id) }).collect()
}

async fn answer_one(
    event: &InboundEvent,
    responder: &dyn Responder,
    sink: &dyn EventSink,
    retry_base: Duration,
    retry_max: Duration,
) -> Answer {
    if let (Some(id), true) = (event.inbox_id, event.recovered) {
        match with_retries(retry_base, retry_max, || sink.recorded(id)).await {
            Ok(recorded) if !recorded.is_empty() => return Answer::Known(Ok(unsent(recorded))),
            Ok(_) => {}
            Err(problem) => return Answer::Known(Err(Unanswered::Storage(problem))),
        }
    }
    let texts = match responder.respond(event).await {
        Ok(texts) => texts,
        Err(problem) => return Answer::Known(Err(Unanswered::Bot(problem))),
    };
    let pieces: Vec<String> = texts.iter().flat_map(|text| split_for(event.channel, text)).collect();
    match event.inbox_id {
        Some(id) if !pieces.is_empty() => Answer::ToRecord(id, pieces),
        _ => Answer::Known(Ok(pieces.into_iter().map(|text| Reply { text, reply_id: None }).collect())),
    }
}

/// Tries a storage call up to `STORAGE_ATTEMPTS` times with backoff.
async fn with_retries<T, F, Fut>(base: Duration, max: Duration, mut call: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(problem) if attempt + 1 >= STORAGE_ATTEMPTS => return Err(problem),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(backoff(base, attempt, max)).await;
            }
        }
    }
}

fn enqueue(state: &mut TenantState, event: &InboundEvent, reply: Reply) {
    if state.outbox.len() >= state.router.deps().settings.send_queue_capacity {
        if let Some(m) = &state.metrics {
            m.dropped("queue_full", 1);
        }
        settle(state, event.inbox_id, Some("the send queue was full".to_owned()));
        return;
    }
    let page_id = state.profile.as_ref().map_or_else(|| state.page.clone(), |p| p.page_id.clone());
    let channel = event.channel;
    state.outbox.push_back(QueuedSend {
        message: OutgoingMessage { page_id, channel, recipient: event.sender.clone(), text: reply.text },
        attempts: 0,
        inbox_id: event.inbox_id,
        reply_id: reply.reply_id,
    });
}

/// Starts as many sends as the pause, the limiter and the in-flight cap allow.
fn pump(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
    if state.blocked() || state.outbox.is_empty() {
        return;
    }
    let now = Instant::now();
    if let Some(until) = state.paused_until {
        if until > now {
            schedule_pump(myself, state, until);
            return;
        }
        state.paused_until = None;
    }
    let max_in_flight = state.router.deps().settings.max_in_flight;
    while state.in_flight < max_in_flight {
        let Some(index) = state.outbox.iter().position(|q| !state.busy.contains(&q.message.recipient)) else { break };
        if let Err(wait) = state.limiter.check() {
            schedule_pump(myself, state, now + wait);
            break;
        }
        let Some(item) = state.outbox.remove(index) else { break };
        let Some(token) = state.profile.as_ref().and_then(|p| p.token.clone()) else {
            state.outbox.push_front(item);
            break;
        };
        state.in_flight += 1;
        state.busy.insert(item.message.recipient.clone());
        let graph = state.router.deps().graph.clone();
        let sink = state.router.deps().events.clone();
        let me = myself.clone();
        state.router.spawn_send(async move {
            let started = Instant::now();
            let result = graph.send_message(&token, &item.message).await;
            let elapsed = started.elapsed();
            let mark = sent_mark(&item, &result);
            let _ = me.send_message(TenantMsg::SendDone { item, result, elapsed });
            // Meta's answer goes to storage from here, not through the actor, so it is stored even if the
            // actor stops (a shutdown, a crash) before it handles SendDone; shutdown waits for this task.
            if let Some(mark) = mark {
                sink.progress(Progress { sent: vec![mark], ..Progress::default() }).await;
            }
        });
    }
}

fn schedule_pump(myself: &ActorRef<TenantMsg>, state: &mut TenantState, at: Instant) {
    if state.pump_at.is_some_and(|scheduled| scheduled <= at) {
        return;
    }
    state.pump_at = Some(at);
    let me = myself.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let _ = me.send_message(TenantMsg::Pump);
    });
}

fn on_sent(
    myself: &ActorRef<TenantMsg>,
    state: &mut TenantState,
    mut item: QueuedSend,
    result: Result<SendOk, GraphFailure>,
    elapsed: Duration,
) {
    let settings = state.router.deps().settings.clone();
    let metrics = state.metrics.as_ref();
    let failure = match result {
        Ok(ok) => {
            state.busy.remove(&item.message.recipient);
            if let Some(m) = metrics {
                m.sent(elapsed);
            }
            state.stats.replied();
            settle(state, item.inbox_id, None);
            if let Some(usage) = ok.usage
                && usage.max_pct >= settings.usage_pause_pct
                && let Some(regain) = usage.regain
            {
                pause(state, regain);
            }
            return;
        }
        Err(failure) => failure,
    };
    if let Some(m) = metrics {
        m.send_error(failure.code_label());
    }
    match failure.class() {
        FailureClass::Throttled => {
            state.busy.remove(&item.message.recipient);
            let regain = failure.usage.and_then(|u| u.regain).unwrap_or(settings.throttle_fallback);
            tracing::warn!(page = %state.page, code = %failure.code_label(), ?regain, "Meta throttled this page; pausing");
            pause(state, regain);
            state.outbox.push_front(item);
        }
        FailureClass::Transient => {
            item.attempts += 1;
            if item.attempts >= settings.max_send_attempts {
                state.busy.remove(&item.message.recipient);
                tracing::warn!(page = %state.page, reason = %failure.reason(), "reply failed for good after retries");
                if let Some(m) = metrics {
                    m.dropped("retries_exhausted", 1);
                }
                settle(state, item.inbox_id, Some(failure.reason()));
            } else {
                let delay = backoff(settings.retry_base, item.attempts, settings.retry_max);
                let me = myself.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = me.send_message(TenantMsg::Retry(item));
                });
            }
        }
        FailureClass::AlreadyDelivered => {
            state.busy.remove(&item.message.recipient);
            if let Some(m) = metrics {
                m.sent(elapsed);
            }
            settle(state, item.inbox_id, None);
        }
        FailureClass::AuthInvalid | FailureClass::PermissionDenied => {
            state.busy.remove(&item.message.recipient);
            state.outbox.push_front(item);
            let reason = failure.reason();
            let auth = failure.class() == FailureClass::AuthInvalid;
            if let Some(p) = state.profile.as_mut() {
                if auth {
                    p.token = None;
                }
                if p.blocked.is_some() {
                    return; // already reported
                }
                p.blocked = Some(reason.clone());
            }
            tracing::warn!(page = %state.page, %reason, "tenant stops sending until the client reconnects");
            let status = state.router.deps().status.clone();
            let page = state.page.clone();
            tokio::spawn(async move {
                if auth {
                    status.needs_reauth(&page, &reason).await;
                } else {
                    status.permission_error(&page, &reason).await;
                }
            });
        }
        FailureClass::DropMessage => {
            state.busy.remove(&item.message.recipient);
            tracing::info!(page = %state.page, reason = %failure.reason(), "reply dropped");
            if let Some(m) = metrics {
                m.dropped("message_error", 1);
            }
            settle(state, item.inbox_id, Some(failure.reason()));
        }
    }
}

/// The outbox mark for a reply Meta sent: its row and Meta's message_id (none when Meta answered "already
/// delivered" without one).
fn sent_mark(item: &QueuedSend, result: &Result<SendOk, GraphFailure>) -> Option<(i64, Option<String>)> {
    let id = item.reply_id?;
    match result {
        Ok(ok) => Some((id, Some(ok.message_id.clone()).filter(|m| !m.is_empty()))),
        Err(failure) if failure.class() == FailureClass::AlreadyDelivered => Some((id, None)),
        Err(_) => None,
    }
}

fn pause(state: &mut TenantState, regain: Duration) {
    let until = Instant::now() + regain + jitter(regain / 10);
    if state.paused_until.is_none_or(|p| p < until) {
        state.paused_until = Some(until);
        if let Some(m) = &state.metrics {
            m.throttled();
        }
    }
}

/// `base · 2^(attempt-1)`, capped, plus up to 25 % jitter.
fn backoff(base: Duration, attempt: u32, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max);
    exp + jitter(exp / 4)
}

fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..=max.as_nanos().min(u128::from(u64::MAX)) as u64))
}
