//! Sending: replies wait in the tenant's outbox and go out as fast as the pause (Meta's throttling), the GCRA
//! limiter and the in-flight cap allow, never two to the same person at once. A recorded reply is marked in
//! storage as about to be sent before its call, and is not sent at all if the Page stopped being this
//! tenant's meanwhile. Meta's answer decides what happens next, by its class only (`FailureClass`): sent,
//! retried with backoff, paused, the tenant blocked until the client reconnects, or the one reply dropped.
//!
//! [`Sending`] owns the outbox and its bookkeeping (who is busy, what is in flight, which marks are being
//! written, the pause, the limiter); the functions below are the tenant's decisions, made with it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use ractor::ActorRef;
use tokio::time::Instant;

use super::{QueuedSend, Reply, TenantMsg, TenantState};
use crate::domain::event::InboundEvent;
use crate::domain::ids::{InboxId, ReplyId};
use crate::ports::{EventSink, FailureClass, GraphFailure, OutgoingMessage, Progress, SendOk, SinkError};
use crate::timing::backoff::jitter;
use crate::timing::limiter::SendLimiter;

/// Replies marked in storage as about to be sent at a time: after a crash, at most this many (and the calls in
/// flight) per Page are of unknown outcome and settled through the Conversations API (2 calls a second).
pub(super) const ATTEMPT_WINDOW: usize = 4;
/// The resolution of tokio's timers.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// Storage marking a window of replies as about to be sent; every send of the window waits for it.
pub(crate) type MarkWrite = Shared<BoxFuture<'static, Result<(), SinkError>>>;

/// A tenant's outbox and everything that decides when its next reply may go.
pub(super) struct Sending {
    outbox: VecDeque<QueuedSend>,
    /// Send API calls started and not yet answered.
    in_flight: usize,
    /// Recipients with a call in flight or a retry pending: their next reply waits (order per person).
    busy: HashSet<String>,
    limiter: SendLimiter,
    /// Meta's throttling: nothing is sent before this.
    paused_until: Option<Instant>,
    /// When a `Pump` is already scheduled.
    pump_at: Option<Instant>,
    /// Replies marked in storage as about to be sent (`ATTEMPT_WINDOW` at a time), each with the write that
    /// marks it: a reply is sent only once that write is done, whichever send started it.
    marked: HashMap<ReplyId, MarkWrite>,
}

/// What the outbox can do now.
enum Next {
    /// Send this reply.
    Send(QueuedSend),
    /// Nothing may go before then (the pause, or the limiter).
    At(Instant),
    /// Nothing to send now: the queue is empty, every queued recipient is busy, or the in-flight cap is reached
    /// (an answer from Meta pumps again).
    Nothing,
}

impl Sending {
    pub(super) fn new() -> Self {
        Self {
            outbox: VecDeque::new(),
            in_flight: 0,
            busy: HashSet::new(),
            limiter: SendLimiter::new(1),
            paused_until: None,
            pump_at: None,
            marked: HashMap::new(),
        }
    }

    /// The client's send rate (calls per second per Page), from its settings.
    pub(super) fn set_rate(&mut self, rate: u32) {
        if self.limiter.rate() != rate {
            self.limiter = SendLimiter::new(rate);
        }
    }

    /// Replies queued or in flight.
    pub(super) fn depth(&self) -> usize {
        self.outbox.len() + self.in_flight
    }

    /// Replies queued.
    pub(super) fn queued(&self) -> usize {
        self.outbox.len()
    }

    pub(super) fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Nothing queued, in flight or waiting for a retry.
    pub(super) fn is_idle(&self) -> bool {
        self.outbox.is_empty() && self.in_flight == 0 && self.busy.is_empty()
    }

    /// Empties the queue: the queued replies that were recorded (inbox event, outbox row) and never tried. One
    /// back for a retry was tried (Meta may have taken it, unanswered): it stays of unknown outcome, to settle.
    pub(super) fn take_unattempted(&mut self) -> Vec<(InboxId, ReplyId)> {
        self.outbox.drain(..).filter(|q| q.attempts == 0).filter_map(|q| q.inbox_id.zip(q.reply_id)).collect()
    }

    /// Queues `item` last; false (and `item` dropped) if `capacity` replies wait already.
    fn push(&mut self, item: QueuedSend, capacity: usize) -> bool {
        if self.outbox.len() >= capacity {
            return false;
        }
        self.outbox.push_back(item);
        true
    }

    fn next(&mut self, max_in_flight: usize, now: Instant) -> Next {
        if self.outbox.is_empty() {
            return Next::Nothing;
        }
        if let Some(until) = self.paused_until {
            if until > now {
                return Next::At(until);
            }
            self.paused_until = None;
        }
        if self.in_flight >= max_in_flight {
            return Next::Nothing;
        }
        let Some(index) = self.outbox.iter().position(|q| !self.busy.contains(&q.message.recipient)) else {
            return Next::Nothing;
        };
        if let Err(wait) = self.limiter.check() {
            return Next::At(now + wait);
        }
        self.outbox.remove(index).map_or(Next::Nothing, Next::Send)
    }

    /// `item` was taken but not sent: first in the queue again.
    fn put_back(&mut self, item: QueuedSend) {
        self.outbox.push_front(item);
    }

    /// A call for `item` starts: its recipient is busy until it is answered.
    fn calling(&mut self, item: &QueuedSend) {
        self.in_flight += 1;
        self.busy.insert(item.message.recipient.clone());
    }

    /// Meta answered a call (or its mark failed, and it was never made).
    fn call_ended(&mut self) {
        self.in_flight -= 1;
    }

    /// `item` reached its final outcome (sent, or never to be sent): its recipient is free, its mark forgotten.
    fn finished(&mut self, item: &QueuedSend) {
        self.busy.remove(&item.message.recipient);
        if let Some(reply) = item.reply_id {
            self.marked.remove(&reply);
        }
    }

    /// `item` goes out again later (throttled, blocked, a retry due): first in the queue, its recipient free.
    fn again(&mut self, item: QueuedSend) {
        self.busy.remove(&item.message.recipient);
        self.outbox.push_front(item);
    }

    /// Storage did not take `item`'s mark: it goes back untried, and every reply of a failed mark write is
    /// marked again by its next send, not only this one.
    fn mark_failed(&mut self, item: QueuedSend) {
        self.marked.retain(|_, write| !matches!(write.peek(), Some(Err(_))));
        if let Some(reply) = item.reply_id {
            self.marked.remove(&reply);
        }
        self.again(item);
    }

    /// The write `item` must wait for before it is sent: none if it is not recorded; the write that marks it if
    /// one was started (by this send or an earlier one: a reply marked ahead must not go out before its mark is
    /// stored, or a crash would leave a delivered reply that looks never tried); else a new write for it and
    /// the next unmarked recorded replies in the queue, up to `ATTEMPT_WINDOW`.
    fn mark_window(&mut self, item: &QueuedSend, sink: std::sync::Arc<dyn EventSink>) -> Option<MarkWrite> {
        // A reply recorded marked needs no write.
        let recorded = |q: &QueuedSend| if q.marked { None } else { q.inbox_id.zip(q.reply_id) };
        let first = recorded(item)?;
        if let Some(write) = self.marked.get(&first.1) {
            return Some(write.clone());
        }
        let window: Vec<(InboxId, ReplyId)> = std::iter::once(first)
            .chain(self.outbox.iter().filter_map(recorded).filter(|(_, reply)| !self.marked.contains_key(reply)))
            .take(ATTEMPT_WINDOW)
            .collect();
        let replies: Vec<ReplyId> = window.iter().map(|(_, reply)| *reply).collect();
        let write = async move { sink.attempting(&window).await }.boxed().shared();
        self.marked.extend(replies.into_iter().map(|reply| (reply, write.clone())));
        Some(write)
    }

    /// Whether a `Pump` must be scheduled for `at`: none is due by then already. One due up to a timer tick
    /// later serves too: timers fire on millisecond ticks, and the instant of one limiter slot, worked out
    /// again by each pump, moves by some nanoseconds between them. (Without that slack every event that
    /// reached a backlogged Page scheduled one more timer for the same slot, and each of them scheduled its
    /// successor: at 80 sends a second per Page the timers took most of the runtime.)
    fn pump_wanted(&mut self, at: Instant) -> bool {
        if self.pump_at.is_some_and(|scheduled| scheduled <= at + TIMER_TICK) {
            return false;
        }
        self.pump_at = Some(at);
        true
    }

    /// The `Pump` scheduled for `at` fired: if it is the one pending, none is now (an earlier one that was
    /// overtaken leaves the pending one in place, so it does not schedule another of its own).
    fn pump_fired(&mut self, at: Instant) {
        if self.pump_at == Some(at) {
            self.pump_at = None;
        }
    }

    /// Pauses sending for `regain` (plus up to a tenth more); false if it is paused longer already.
    fn pause(&mut self, regain: Duration) -> bool {
        let until = Instant::now() + regain + jitter(regain / 10);
        if self.paused_until.is_some_and(|p| p >= until) {
            return false;
        }
        self.paused_until = Some(until);
        true
    }
}

/// Queues a reply to `event` (a full queue drops it, and counts it); `pass_after`: once it is delivered, the
/// conversation goes to the inbox.
pub(super) fn enqueue(state: &mut TenantState, event: &InboundEvent, reply: Reply, pass_after: bool) {
    let item = QueuedSend {
        message: OutgoingMessage {
            page_id: state.page_id(),
            channel: event.channel,
            recipient: event.sender.clone(),
            text: reply.text,
        },
        attempts: 0,
        inbox_id: event.inbox_id,
        reply_id: reply.reply_id,
        marked: reply.marked,
        pass_after,
        received: event.received,
    };
    let recorded_marked = item.marked.then(|| item.inbox_id.zip(item.reply_id)).flatten();
    if !state.sending.push(item, state.ctx.settings.send_queue_capacity) {
        state.metrics.dropped("queue_full", 1);
        state.marks.settle(event.inbox_id, Some("the send queue was full".to_owned()));
        never_sent(state, recorded_marked.into_iter().collect());
    }
}

/// Tells storage that `replies` were never sent, so whoever handles their events next sends them without
/// settling them first.
pub(super) fn never_sent(state: &TenantState, replies: Vec<(InboxId, ReplyId)>) {
    if replies.is_empty() {
        return;
    }
    let sink = state.ctx.ports.events.clone();
    state.ctx.spawn(async move { sink.progress(Progress { unattempted: replies, ..Progress::default() }).await });
}

/// How many replies of the next batch may be recorded already marked as about to be sent: as many as would
/// be sent at once, so that no more replies are of unknown outcome after a crash than the marks written
/// ahead (`ATTEMPT_WINDOW`) and the calls in flight make anyway; none while sending is paused or blocked.
pub(super) fn room_to_premark(state: &TenantState) -> usize {
    if state.blocked() || state.sending.paused_until().is_some_and(|until| until > Instant::now()) {
        return 0;
    }
    (state.ctx.settings.max_in_flight + ATTEMPT_WINDOW).saturating_sub(state.sending.depth())
}

/// Starts as many sends as the pause, the limiter and the in-flight cap allow.
pub(super) fn pump(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
    if state.blocked() {
        return;
    }
    let now = Instant::now();
    loop {
        match state.sending.next(state.ctx.settings.max_in_flight, now) {
            Next::Send(item) => {
                if !start_send(myself, state, item) {
                    break;
                }
            }
            Next::At(at) => {
                schedule_pump(myself, state, at);
                break;
            }
            Next::Nothing => break,
        }
    }
}

/// The `Pump` scheduled for `at` is due.
pub(super) fn pump_due(myself: &ActorRef<TenantMsg>, state: &mut TenantState, at: Instant) {
    state.sending.pump_fired(at);
    pump(myself, state);
}

/// A transiently failed reply is due again.
pub(super) fn retry_due(myself: &ActorRef<TenantMsg>, state: &mut TenantState, item: QueuedSend) {
    state.sending.again(item);
    pump(myself, state);
}

/// Makes the Send API call for `item` as a task; false (and `item` back in the queue) without a token, or
/// when the engine no longer runs this page as this tenant (it is being stopped). A recorded reply not yet
/// marked as about to be sent is marked first, with the next ones in the queue.
fn start_send(myself: &ActorRef<TenantMsg>, state: &mut TenantState, item: QueuedSend) -> bool {
    let Some(token) = state.token().filter(|_| state.ctx.is_current()) else {
        state.sending.put_back(item);
        return false;
    };
    let mark = state.sending.mark_window(&item, state.ctx.ports.events.clone());
    state.sending.calling(&item);
    let (graph, sink, stats) = (state.ctx.ports.graph.clone(), state.ctx.ports.events.clone(), state.ctx.stats.clone());
    let me = myself.clone();
    let current = state.ctx.current();
    stats.send_started();
    state.ctx.spawn(async move {
        let marked = match mark {
            Some(mark) => mark.await,
            None => Ok(()),
        };
        // Looked at again once the mark is stored: the Page may have moved meanwhile (this process may even
        // have been paused past its lease), and a tenant that is no longer the Page's sends nothing, even
        // once this node owns the Page again under a new epoch.
        let marked = marked.and_then(|()| if current() { Ok(()) } else { Err(SinkError::Fenced) });
        if let Err(problem) = marked {
            let _ = me.send_message(TenantMsg::NotMarked { item, problem });
            stats.send_stored();
            return;
        }
        let started = Instant::now();
        let result = graph.send_message(&token, &item.message).await;
        let elapsed = started.elapsed();
        let mark = sent_mark(&item, &result);
        let _ = me.send_message(TenantMsg::SendDone { item, result, elapsed });
        // Meta's answer goes to storage from here, not through the actor, so it is stored even if the actor
        // stops (a shutdown, a crash) before it handles SendDone; shutdown waits for this task.
        if let Some(mark) = mark {
            sink.progress(Progress { sent: vec![mark], ..Progress::default() }).await;
        }
        stats.send_stored();
    });
    true
}

/// Storage did not take the mark: the reply goes back to the queue untried, and sending waits a moment (a
/// tenant whose page moved to another node is being stopped; it sends nothing more).
pub(super) fn not_marked(myself: &ActorRef<TenantMsg>, state: &mut TenantState, item: QueuedSend, problem: &SinkError) {
    state.sending.call_ended();
    state.sending.mark_failed(item);
    tracing::warn!(page = %state.ctx.page, %problem, "cannot mark replies as about to be sent; they wait");
    if *problem != SinkError::Fenced {
        let at = Instant::now() + state.backoff().delay(3);
        schedule_pump(myself, state, at);
    }
}

/// Pumps again at `at`, unless a pump is due earlier already.
fn schedule_pump(myself: &ActorRef<TenantMsg>, state: &mut TenantState, at: Instant) {
    if state.sending.pump_wanted(at) {
        myself.send_after(at.saturating_duration_since(Instant::now()), move || TenantMsg::Pump(at));
    }
}

/// What Meta answered to one call; then the next replies go.
pub(super) fn on_sent(
    myself: &ActorRef<TenantMsg>,
    state: &mut TenantState,
    item: QueuedSend,
    result: Result<SendOk, GraphFailure>,
    elapsed: Duration,
) {
    state.sending.call_ended();
    match result {
        Ok(ok) => delivered(state, &item, Some(ok), elapsed),
        Err(failure) => failed(myself, state, item, &failure, elapsed),
    }
    pump(myself, state);
}

fn failed(
    myself: &ActorRef<TenantMsg>,
    state: &mut TenantState,
    item: QueuedSend,
    failure: &GraphFailure,
    elapsed: Duration,
) {
    state.metrics.send_error(failure.code_label());
    match failure.class() {
        FailureClass::Throttled => {
            let regain = failure.usage.and_then(|u| u.regain).unwrap_or(state.ctx.settings.throttle_fallback);
            tracing::warn!(page = %state.ctx.page, code = %failure.code_label(), ?regain, "Meta throttled this page; pausing");
            state.sending.again(item);
            pause(state, regain);
        }
        FailureClass::Transient => retry_or_drop(myself, state, item, failure),
        FailureClass::AlreadyDelivered => delivered(state, &item, None, elapsed),
        FailureClass::AuthInvalid | FailureClass::PermissionDenied => block(state, item, failure),
        FailureClass::DropMessage => {
            state.sending.finished(&item);
            tracing::info!(page = %state.ctx.page, reason = %failure.reason(), "reply dropped");
            state.metrics.dropped("message_error", 1);
            state.marks.settle(item.inbox_id, Some(failure.reason()));
        }
    }
}

/// Meta took the reply (or answered that it already had it); pauses if its usage report says to.
fn delivered(state: &mut TenantState, item: &QueuedSend, ok: Option<SendOk>, elapsed: Duration) {
    state.sending.finished(item);
    state.metrics.sent(elapsed, item.received.map(|at| at.elapsed()));
    state.marks.settle(item.inbox_id, None);
    if let Some(ok) = &ok {
        state.takeover.sent(&ok.message_id);
    }
    if item.pass_after && state.takeover.pass_now(&item.message.recipient) {
        pass_to_inbox(state, &item.message);
    }
    if let Some(usage) = ok.and_then(|ok| ok.usage)
        && usage.max_pct >= state.ctx.settings.usage_pause_pct
        && let Some(regain) = usage.regain
    {
        pause(state, regain);
    }
}

/// The customer who asked for a person got the bot's answer: the conversation goes to the Page Inbox (or the
/// Instagram Inbox). If Meta refuses, the bot stays silent with them all the same for the client's pause.
fn pass_to_inbox(state: &TenantState, message: &OutgoingMessage) {
    let Some(token) = state.token() else { return };
    let graph = state.ctx.ports.graph.clone();
    let (page, recipient) = (message.page_id.clone(), message.recipient.clone());
    let inbox = super::takeover::inbox_app(message.channel);
    state.ctx.spawn(async move {
        match graph.pass_thread_control(&token, &page, &recipient, inbox).await {
            Ok(()) => tracing::info!(%page, "conversation passed to the inbox"),
            Err(failure) => {
                tracing::warn!(%page, reason = %failure.reason(), "cannot pass the conversation to the inbox");
            }
        }
    });
}

/// A transient failure: tried again after a backoff, up to `max_send_attempts` attempts in all.
fn retry_or_drop(myself: &ActorRef<TenantMsg>, state: &mut TenantState, mut item: QueuedSend, failure: &GraphFailure) {
    item.attempts += 1;
    if item.attempts >= state.ctx.settings.max_send_attempts {
        state.sending.finished(&item);
        tracing::warn!(page = %state.ctx.page, reason = %failure.reason(), "reply failed for good after retries");
        state.metrics.dropped("retries_exhausted", 1);
        state.marks.settle(item.inbox_id, Some(failure.reason()));
    } else {
        // The person stays busy until the retry: their next reply waits behind this one.
        let delay = state.backoff().delay(item.attempts);
        myself.send_after(delay, move || TenantMsg::Retry(item));
    }
}

/// The token is dead or a permission is missing: the tenant stops calling Meta until the client reconnects
/// (the reply waits), and the integration's new status is reported once.
fn block(state: &mut TenantState, item: QueuedSend, failure: &GraphFailure) {
    state.sending.again(item);
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
    tracing::warn!(page = %state.ctx.page, %reason, "tenant stops sending until the client reconnects");
    let status = state.ctx.ports.status.clone();
    let page = state.ctx.page.clone();
    state.ctx.spawn(async move {
        if auth {
            status.needs_reauth(&page, &reason).await;
        } else {
            status.permission_error(&page, &reason).await;
        }
    });
}

/// The outbox mark for a reply Meta sent: its row and Meta's message_id (none when Meta answered "already
/// delivered" without one).
fn sent_mark(item: &QueuedSend, result: &Result<SendOk, GraphFailure>) -> Option<(ReplyId, Option<String>)> {
    let id = item.reply_id?;
    match result {
        Ok(ok) => Some((id, Some(ok.message_id.clone()).filter(|m| !m.is_empty()))),
        Err(failure) if failure.class() == FailureClass::AlreadyDelivered => Some((id, None)),
        Err(_) => None,
    }
}

/// Pauses the page for `regain` (plus up to a tenth more), unless it is paused longer already.
fn pause(state: &mut TenantState, regain: Duration) {
    if state.sending.pause(regain) {
        state.metrics.throttled();
    }
}
