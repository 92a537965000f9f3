//! Asking the bot: events are counted, deduplicated and queued in conversation order; a batch of waiting
//! events (at most one per conversation) goes to the responder at once, and an inbox event's replies are
//! recorded in the outbox, in one storage call for the batch, before any of them is sent. An event handed over
//! again after a restart reuses the replies recorded for it (never asking the bot twice) and skips those Meta
//! already accepted.

use std::collections::VecDeque;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared, join_all};
use ractor::ActorRef;

use super::settle::Settler;
use super::takeover::Change;
use super::{Reply, TenantMsg, TenantState, Unanswered, marks, send};
use crate::backoff::Backoff;
use crate::event::InboundEvent;
use crate::ports::{EventSink, RecordedReply, Responder, SinkError, ToRecord};
use crate::split::split_for;

/// How often recording replies is tried before the event is left pending.
const STORAGE_ATTEMPTS: u32 = 8;

/// The most events handed to the responder together (their replies are recorded in one storage call).
const RESPOND_BATCH: usize = 64;
/// How far into the pending queue a batch looks for events of conversations not in it yet.
const RESPOND_SCAN: usize = 4 * RESPOND_BATCH;

/// The replies to `event` are known: queue them (an inbox event is finished with its last one), or finish
/// the event as failed, or leave it pending when storage would not record them.
pub(super) fn responded(state: &mut TenantState, event: InboundEvent, result: Result<Vec<Reply>, Unanswered>) {
    match result {
        Ok(replies) => {
            if let (Some(id), false) = (event.inbox_id, replies.is_empty()) {
                state.outstanding.insert(id, (replies.len(), None));
            } else {
                marks::finish(state, event.inbox_id, None);
            }
            // The answer to asking for a person is out with its last reply: then the conversation is passed.
            let (last, passes) = (replies.len().saturating_sub(1), state.takeover.passes_after(&event));
            for (i, reply) in replies.into_iter().enumerate() {
                send::enqueue(state, &event, reply, passes && i == last);
            }
        }
        Err(Unanswered::Bot(problem)) => {
            tracing::warn!(page = %state.ctx.page, %problem, "responder failed; event not answered");
            if let Some(m) = &state.metrics {
                m.ignored("responder_failed");
            }
            marks::finish(state, event.inbox_id, Some(format!("the bot failed: {problem}")));
        }
        Err(unanswered @ (Unanswered::Storage(_) | Unanswered::GaveUp)) => {
            if let Unanswered::Storage(problem) = unanswered {
                tracing::error!(page = %state.ctx.page, %problem, "cannot record replies; the event stays pending");
                if let Some(m) = &state.metrics {
                    m.ignored("storage_unavailable");
                }
            }
            if let Some(key) = event.dedup_key() {
                state.dedup.forget(&key);
            }
            state.progress.released.extend(event.inbox_id);
        }
    }
}

/// An event for a loaded tenant: counted, deduplicated, and queued for the responder if it wants one.
pub(super) fn accept(myself: &ActorRef<TenantMsg>, state: &mut TenantState, event: InboundEvent) {
    if let Some(m) = &state.metrics {
        // "Last event received" is when it reached us, not Meta's timestamp (redeliveries can be hours late).
        let received_ms = crate::stats::now_ms();
        m.event(event.kind_label(), event.timestamp as f64 / 1000.0, received_ms);
    }
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
        noticed(state, &event);
        if let Some(m) = &state.metrics {
            m.ignored(if event.is_own() {
                "own_message"
            } else if event.standby {
                "standby"
            } else {
                "no_reply_needed"
            });
        }
        marks::finish(state, event.inbox_id, None);
        return;
    }
    if state.takeover.is_held(&event.sender, crate::stats::now_ms()) {
        // A person at the business is answering this customer: the bot stays silent.
        if let Some(m) = &state.metrics {
            m.ignored("person_handling");
        }
        marks::finish(state, event.inbox_id, None);
        return;
    }
    if state.pending.len() >= state.ctx.settings.pending_capacity {
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
    // Only an event that is taken holds the conversation (one set aside comes back and is asked about then).
    if state.profile.as_ref().is_some_and(|p| p.ask_for_person.matches(&event)) {
        // Answered as the client chose (`PersonFirst`); the conversation goes to the inbox once that is out.
        let change = state.takeover.asked_for_person(&event, pause_ms(state));
        tracing::info!(page = %state.ctx.page, "a customer asked for a person; the conversation goes to the inbox");
        keep(state, change);
    }
    // Within a conversation, answer in Meta's timestamp order even if deliveries arrived shuffled.
    let at = insertion_point(&state.pending, &event);
    state.pending.insert(at, event);
    respond_next(myself, state);
}

/// How long a person's answer silences the bot for this tenant's client.
fn pause_ms(state: &TenantState) -> i64 {
    let pause = state.profile.as_ref().map_or(state.ctx.settings.human_pause, |p| p.human_pause);
    i64::try_from(pause.as_millis()).unwrap_or(i64::MAX)
}

/// An event the bot does not answer may change who handles a conversation (a person answered in the inbox,
/// the conversation changed hands): see `takeover`.
fn noticed(state: &mut TenantState, event: &InboundEvent) {
    let pause = pause_ms(state);
    if let Some(change) = state.takeover.noticed(event, &state.ctx.settings.own_app_id, pause) {
        keep(state, change);
    }
}

/// A write telling storage who handles a conversation; a reload of the tenant waits for those in flight.
pub(super) type HoldWrite = Shared<BoxFuture<'static, ()>>;

/// Tells storage who handles a conversation now, for whoever runs this Page next. A reload started meanwhile
/// reads storage only after this write (`hold_writes`), so it never replaces the change with what was stored
/// before it.
fn keep(state: &mut TenantState, change: Change) {
    let (status, page) = (state.ctx.ports.status.clone(), state.ctx.page.clone());
    let write = match change {
        Change::Hold(person, until) => {
            tracing::info!(%page, "a person at the business handles a conversation; the bot stays silent there");
            async move { status.person_handling(&page, &person, until).await }.boxed()
        }
        Change::Release(person) => {
            tracing::info!(%page, "a conversation was passed back to the bot");
            async move { status.bot_handling(&page, &person).await }.boxed()
        }
    }
    .shared();
    state.hold_writes.retain(|w| w.peek().is_none());
    state.hold_writes.push(write.clone());
    state.ctx.spawn(write);
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
pub(super) fn respond_next(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
    if state.responding.is_some() || state.pending.is_empty() {
        return;
    }
    let Some(profile) = state.profile.as_ref() else { return };
    let batch = take_batch(&mut state.pending);
    state.responding = Some(batch.iter().filter_map(|e| e.inbox_id).collect());
    let responder = profile.responder.clone();
    let (sink, settler) = (state.ctx.ports.events.clone(), state.settler());
    let me = myself.clone();
    state.ctx.spawn(async move {
        let results = answer(batch, responder.as_ref(), sink.as_ref(), &settler).await;
        let _ = me.send_message(TenantMsg::Responded(results));
    });
}

/// Takes up to `RESPOND_BATCH` events from the first `RESPOND_SCAN` of `pending`, the first of each
/// conversation; the others stay in their order. Events handed over again and new events are never in one
/// batch: settling a recovered event's replies (Conversations API, 2 calls a second) must not hold new ones.
fn take_batch(pending: &mut VecDeque<InboundEvent>) -> Vec<InboundEvent> {
    let mut batch: Vec<InboundEvent> = Vec::new();
    let mut kept = VecDeque::new();
    let mut scanned = 0;
    let recovered = pending.front().is_some_and(|e| e.recovered);
    while batch.len() < RESPOND_BATCH && scanned < RESPOND_SCAN {
        let Some(event) = pending.pop_front() else { break };
        scanned += 1;
        if event.recovered != recovered || batch.iter().any(|taken| taken.sender == event.sender) {
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
    /// Replies to record before any is sent.
    Record(ToRecord),
}

/// The replies still to send for each of `events`, in order. An inbox event's replies are recorded in the
/// outbox before any is sent, one storage call for the whole batch; an event handed over again after a
/// restart reuses the replies recorded for it (never asking the bot twice) and skips those Meta already
/// accepted.
async fn answer(
    events: Vec<InboundEvent>,
    responder: &dyn Responder,
    sink: &dyn EventSink,
    settler: &Settler,
) -> Vec<(InboundEvent, Result<Vec<Reply>, Unanswered>)> {
    let backoff = settler.backoff;
    // One conversation per batch: the responder is asked for all of them at once.
    let mut answers = join_all(events.iter().map(|event| answer_one(event, responder, sink, settler))).await;
    let to_record: Vec<ToRecord> = answers
        .iter_mut()
        .filter_map(|a| match a {
            Answer::Record(record) => Some(ToRecord {
                inbox_id: record.inbox_id,
                recipient: std::mem::take(&mut record.recipient),
                texts: std::mem::take(&mut record.texts),
            }),
            Answer::Known(_) => None,
        })
        .collect();
    let mut recorded = if to_record.is_empty() {
        Ok(Vec::new().into_iter())
    } else {
        with_retries(backoff, || sink.record(&to_record)).await.map(Vec::into_iter)
    };
    events
        .into_iter()
        .zip(answers)
        .map(|(event, answer)| {
            let result = match answer {
                Answer::Known(result) => result,
                Answer::Record(_) => match &mut recorded {
                    Ok(recorded) => recorded.next().map(unsent).ok_or_else(|| {
                        Unanswered::Storage(SinkError::Unavailable(
                            "storage recorded fewer events than asked".to_owned(),
                        ))
                    }),
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
    settler: &Settler,
) -> Answer {
    if let (Some(id), true) = (event.inbox_id, event.recovered) {
        match with_retries(settler.backoff, || sink.recorded(id)).await {
            Ok(recorded) if !recorded.is_empty() => {
                return Answer::Known(
                    settler.unsent(event, recorded, sink).await.map(unsent).ok_or(Unanswered::GaveUp),
                );
            }
            Ok(_) => {}
            Err(problem) => return Answer::Known(Err(Unanswered::Storage(problem))),
        }
    }
    let texts = match responder.respond(event).await {
        Ok(texts) => texts,
        Err(problem) => return Answer::Known(Err(Unanswered::Bot(problem.to_string()))),
    };
    let pieces: Vec<String> = texts.iter().flat_map(|text| split_for(event.channel, text)).collect();
    match event.inbox_id {
        Some(inbox_id) if !pieces.is_empty() => {
            Answer::Record(ToRecord { inbox_id, recipient: event.sender.clone(), texts: pieces })
        }
        _ => Answer::Known(Ok(pieces.into_iter().map(|text| Reply { text, reply_id: None }).collect())),
    }
}

/// Tries a storage call up to `STORAGE_ATTEMPTS` times with backoff (an engine without an inbox is not
/// worth a second try).
async fn with_retries<T, F, Fut>(backoff: Backoff, mut call: F) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(problem @ (SinkError::NoInbox | SinkError::Fenced)) => return Err(problem),
            Err(problem) if attempt + 1 >= STORAGE_ATTEMPTS => return Err(problem),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(backoff.delay(attempt)).await;
            }
        }
    }
}
