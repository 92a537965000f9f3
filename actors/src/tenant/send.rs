//! Sending: replies wait in the tenant's outbox and go out as fast as the pause (Meta's throttling), the GCRA
//! limiter and the in-flight cap allow, never two to the same person at once. Meta's answer decides what
//! happens next, by its class only (`FailureClass`): sent, retried with backoff, paused, the tenant blocked
//! until the client reconnects, or the one reply dropped.

use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use ractor::ActorRef;
use tokio::time::Instant;

use super::{QueuedSend, Reply, TenantMsg, TenantState, marks};
use crate::backoff::jitter;
use crate::event::InboundEvent;
use crate::ids::{InboxId, ReplyId};
use crate::ports::{FailureClass, GraphFailure, OutgoingMessage, Progress, SendOk, SinkError};

/// Queues a reply to `event` (a full queue drops it, and counts it).
pub(super) fn enqueue(state: &mut TenantState, event: &InboundEvent, reply: Reply, pass_after: bool) {
    if state.outbox.len() >= state.ctx.settings.send_queue_capacity {
        if let Some(m) = &state.metrics {
            m.dropped("queue_full", 1);
        }
        marks::settle(state, event.inbox_id, Some("the send queue was full".to_owned()));
        return;
    }
    let page_id = state.profile.as_ref().map_or_else(|| state.ctx.page.clone(), |p| p.page_id.clone());
    state.outbox.push_back(QueuedSend {
        message: OutgoingMessage { page_id, channel: event.channel, recipient: event.sender.clone(), text: reply.text },
        attempts: 0,
        inbox_id: event.inbox_id,
        reply_id: reply.reply_id,
        pass_after,
        received: event.received,
    });
}

/// Starts as many sends as the pause, the limiter and the in-flight cap allow.
pub(super) fn pump(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
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
    while state.in_flight < state.ctx.settings.max_in_flight {
        let Some(index) = state.outbox.iter().position(|q| !state.busy.contains(&q.message.recipient)) else { break };
        if let Err(wait) = state.limiter.check() {
            schedule_pump(myself, state, now + wait);
            break;
        }
        let Some(item) = state.outbox.remove(index) else { break };
        if !start_send(myself, state, item) {
            break;
        }
    }
}

/// Replies marked in storage as about to be sent at a time: after a crash, at most this many (and the calls in
/// flight) per Page are of unknown outcome and settled through the Conversations API (2 calls a second).
pub(super) const ATTEMPT_WINDOW: usize = 4;

/// Makes the Send API call for `item` as a task; false (and `item` back in the queue) without a token, or
/// when the engine no longer routes this page to this actor (it is being stopped). A recorded reply not yet
/// marked as about to be sent is marked first, with the next ones in the queue.
fn start_send(myself: &ActorRef<TenantMsg>, state: &mut TenantState, item: QueuedSend) -> bool {
    let token = state.profile.as_ref().and_then(|p| p.token.clone());
    let Some(token) = token.filter(|_| state.ctx.is_current()) else {
        state.outbox.push_front(item);
        return false;
    };
    let mark = attempt_window(state, &item);
    state.in_flight += 1;
    state.busy.insert(item.message.recipient.clone());
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

/// Storage marking a window of replies as about to be sent; every send of the window waits for it.
pub(crate) type MarkWrite = Shared<BoxFuture<'static, Result<(), SinkError>>>;

/// The write `item` must wait for before it is sent: none if it is not recorded; the write that marks it if
/// one was started (by this send or an earlier one: a reply marked ahead must not go out before its mark is
/// stored, or a crash would leave a delivered reply that looks never tried); else a new write for it and the
/// next unmarked recorded replies in the queue, up to `ATTEMPT_WINDOW`.
fn attempt_window(state: &mut TenantState, item: &QueuedSend) -> Option<MarkWrite> {
    let recorded = |q: &QueuedSend| q.inbox_id.zip(q.reply_id);
    let first = recorded(item)?;
    if let Some(write) = state.marked.get(&first.1) {
        return Some(write.clone());
    }
    let window: Vec<(InboxId, ReplyId)> = std::iter::once(first)
        .chain(state.outbox.iter().filter_map(recorded).filter(|(_, reply)| !state.marked.contains_key(reply)))
        .take(ATTEMPT_WINDOW)
        .collect();
    let sink = state.ctx.ports.events.clone();
    let replies: Vec<ReplyId> = window.iter().map(|(_, reply)| *reply).collect();
    let write = async move { sink.attempting(&window).await }.boxed().shared();
    state.marked.extend(replies.into_iter().map(|reply| (reply, write.clone())));
    Some(write)
}

/// Storage did not take the mark: the reply goes back to the queue untried, and sending waits a moment (a
/// tenant whose page moved to another node is being stopped; it sends nothing more).
pub(super) fn not_marked(myself: &ActorRef<TenantMsg>, state: &mut TenantState, item: QueuedSend, problem: &SinkError) {
    state.busy.remove(&item.message.recipient);
    // Every reply of the failed write's window is marked again by its next send, not only this one.
    state.marked.retain(|_, write| !matches!(write.peek(), Some(Err(_))));
    if let Some(reply) = item.reply_id {
        state.marked.remove(&reply);
    }
    tracing::warn!(page = %state.ctx.page, %problem, "cannot mark replies as about to be sent; they wait");
    state.outbox.push_front(item);
    if *problem != SinkError::Fenced {
        let at = Instant::now() + state.backoff().delay(3);
        schedule_pump(myself, state, at);
    }
}

/// Pumps again at `at`, unless a pump is due earlier already.
fn schedule_pump(myself: &ActorRef<TenantMsg>, state: &mut TenantState, at: Instant) {
    if state.pump_at.is_some_and(|scheduled| scheduled <= at) {
        return;
    }
    state.pump_at = Some(at);
    myself.send_after(at.saturating_duration_since(Instant::now()), || TenantMsg::Pump);
}

/// What Meta answered to one call.
pub(super) fn on_sent(
    myself: &ActorRef<TenantMsg>,
    state: &mut TenantState,
    item: QueuedSend,
    result: Result<SendOk, GraphFailure>,
    elapsed: Duration,
) {
    let failure = match result {
        Ok(ok) => return delivered(state, &item, Some(ok), elapsed),
        Err(failure) => failure,
    };
    if let Some(m) = &state.metrics {
        m.send_error(failure.code_label());
    }
    match failure.class() {
        FailureClass::Throttled => {
            state.busy.remove(&item.message.recipient);
            let regain = failure.usage.and_then(|u| u.regain).unwrap_or(state.ctx.settings.throttle_fallback);
            tracing::warn!(page = %state.ctx.page, code = %failure.code_label(), ?regain, "Meta throttled this page; pausing");
            pause(state, regain);
            state.outbox.push_front(item);
        }
        FailureClass::Transient => retry_or_drop(myself, state, item, &failure),
        FailureClass::AlreadyDelivered => delivered(state, &item, None, elapsed),
        FailureClass::AuthInvalid | FailureClass::PermissionDenied => block(state, item, &failure),
        FailureClass::DropMessage => {
            state.busy.remove(&item.message.recipient);
            item.reply_id.map(|reply| state.marked.remove(&reply));
            tracing::info!(page = %state.ctx.page, reason = %failure.reason(), "reply dropped");
            if let Some(m) = &state.metrics {
                m.dropped("message_error", 1);
            }
            marks::settle(state, item.inbox_id, Some(failure.reason()));
        }
    }
}

/// Meta took the reply (or answered that it already had it); pauses if its usage report says to.
fn delivered(state: &mut TenantState, item: &QueuedSend, ok: Option<SendOk>, elapsed: Duration) {
    state.busy.remove(&item.message.recipient);
    if let Some(reply) = item.reply_id {
        state.marked.remove(&reply);
    }
    if let Some(m) = &state.metrics {
        m.sent(elapsed, item.received.map(|at| at.elapsed()));
    }
    marks::settle(state, item.inbox_id, None);
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
fn pass_to_inbox(state: &TenantState, message: &crate::ports::OutgoingMessage) {
    let Some(token) = state.profile.as_ref().and_then(|p| p.token.clone()) else { return };
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
        state.busy.remove(&item.message.recipient);
        item.reply_id.map(|reply| state.marked.remove(&reply));
        tracing::warn!(page = %state.ctx.page, reason = %failure.reason(), "reply failed for good after retries");
        if let Some(m) = &state.metrics {
            m.dropped("retries_exhausted", 1);
        }
        marks::settle(state, item.inbox_id, Some(failure.reason()));
    } else {
        // The person stays busy until the retry: their next reply waits behind this one.
        let delay = state.backoff().delay(item.attempts);
        myself.send_after(delay, move || TenantMsg::Retry(item));
    }
}

/// The token is dead or a permission is missing: the tenant stops calling Meta until the client reconnects
/// (the reply waits), and the integration's new status is reported once.
fn block(state: &mut TenantState, item: QueuedSend, failure: &GraphFailure) {
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
    let until = Instant::now() + regain + jitter(regain / 10);
    if state.paused_until.is_none_or(|p| p < until) {
        state.paused_until = Some(until);
        if let Some(m) = &state.metrics {
            m.throttled();
        }
    }
}
