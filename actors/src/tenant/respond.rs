//! Asking the bot: events are counted, deduplicated and queued in conversation order; a batch of waiting
//! events (at most one per conversation) goes to the responder at once, and an inbox event's replies are
//! recorded in the outbox, in one storage call for the batch, before any of them is sent. A responder that
//! answers events one by one ([`Responder::parallel`] above 1: a language model) gets batches of one event,
//! as many at once as it says, never two of one conversation: a slow answer holds up only its own
//! conversation. An event handed over
//! again after a restart reuses the replies recorded for it (never asking the bot twice) and skips those Meta
//! already accepted.
//!
//! [`Responding`] owns the events waiting for the bot and the batch it holds; the functions below are the
//! tenant's decisions about each event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt as _;
use futures_util::future::join_all;
use ractor::ActorRef;

use super::dedup::Dedup;
use super::settle::Settler;
use super::takeover::Change;
use super::{Reply, TenantMsg, TenantState, ToSend, Unanswered, send};
use crate::bot::Responder;
use crate::bot::split::split_for;
use crate::domain::event::InboundEvent;
use crate::domain::ids::{InboxId, ReplyId};
use crate::ports::{EventSink, Progress, RecordedReply, SinkError, ToRecord};
use crate::timing::backoff::Backoff;

/// How often recording replies is tried before the event is left pending.
const STORAGE_ATTEMPTS: u32 = 8;

/// The most events handed to the responder together (their replies are recorded in one storage call).
const RESPOND_BATCH: usize = 64;
/// How far into the pending queue a batch looks for events of conversations not in it yet.
const RESPOND_SCAN: usize = 4 * RESPOND_BATCH;

/// A batch with the responder: its inbox ids, and the conversations it holds.
struct Batch {
    ids: Vec<InboxId>,
    senders: Vec<String>,
}

/// The replies batches recorded already marked as about to be sent, by batch, from their recording until
/// this tenant has queued them.
type InTransit = Arc<Mutex<HashMap<u64, Vec<(InboxId, ReplyId)>>>>;

/// The events a tenant has taken and not yet answered.
pub(super) struct Responding {
    /// Events waiting for the responder, in arrival order (by timestamp within a conversation).
    pending: VecDeque<InboundEvent>,
    /// The batches with the responder, by number: one at a time for a batching responder; for one that
    /// answers events one by one, up to its `parallel`, of one event each. Never two holding one conversation.
    batches: HashMap<u64, Batch>,
    /// The next batch's number.
    next_batch: u64,
    /// The keys of events seen lately: a redelivery is counted once.
    dedup: Dedup,
    /// The replies the batches with the responder recorded already marked as about to be sent: whoever takes
    /// them from here (the tenant queueing them, the tenant stopping first, or the batch's task finding the
    /// tenant gone) is the one who answers for them, so a reply never sent is never left looking as if it
    /// might have been.
    in_transit: InTransit,
}

impl Responding {
    pub(super) fn new(dedup_capacity: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            batches: HashMap::new(),
            next_batch: 0,
            dedup: Dedup::new(dedup_capacity),
            in_transit: Arc::default(),
        }
    }

    /// Events waiting for the responder.
    pub(super) fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Nothing waiting and nothing with the responder.
    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.batches.is_empty()
    }

    /// The responder answered batch `n` (and its replies are this tenant's to queue).
    fn answered(&mut self, n: u64) {
        self.batches.remove(&n);
        take(&self.in_transit, Some(n));
    }

    /// The replies of the batches with the responder that were recorded marked and are not queued here yet:
    /// this tenant stops, so they were never sent.
    pub(super) fn take_in_transit(&mut self) -> Vec<(InboxId, ReplyId)> {
        take(&self.in_transit, None)
    }

    /// Every inbox event taken and not answered, forgotten here (the Page was disconnected).
    pub(super) fn take_all(&mut self) -> Vec<InboxId> {
        let pending = self.pending.drain(..).filter_map(|e| e.inbox_id);
        pending.chain(self.batches.drain().flat_map(|(_, b)| b.ids)).collect()
    }

    /// `event` goes after the earlier events of its conversation, before its later ones (Meta's deliveries
    /// can arrive shuffled).
    fn queue(&mut self, event: InboundEvent) {
        let at = insertion_point(&self.pending, &event);
        self.pending.insert(at, event);
    }

    /// The next batch for a responder that answers `parallel` events at once, and its number, unless as many
    /// batches are with it already or nothing waits that may go now.
    fn next_batch(&mut self, parallel: usize) -> Option<(u64, Vec<InboundEvent>)> {
        if self.batches.len() >= parallel.max(1) || self.pending.is_empty() {
            return None;
        }
        let (size, busy) = if parallel > 1 {
            (1, self.batches.values().flat_map(|b| b.senders.iter().cloned()).collect())
        } else {
            (RESPOND_BATCH, Vec::new())
        };
        let batch = take_batch(&mut self.pending, size, &busy);
        if batch.is_empty() {
            return None;
        }
        let n = self.next_batch;
        self.next_batch += 1;
        let ids = batch.iter().filter_map(|e| e.inbox_id).collect();
        self.batches.insert(n, Batch { ids, senders: batch.iter().map(|e| e.sender.clone()).collect() });
        Some((n, batch))
    }
}

/// The responder answered the batch it held: each event's replies are queued (or the event finished or set
/// aside), the next batch goes to the responder, and sending starts.
pub(super) fn answered(
    myself: &ActorRef<TenantMsg>,
    state: &mut TenantState,
    batch: u64,
    results: Vec<(InboundEvent, Result<ToSend, Unanswered>)>,
) {
    state.responding.answered(batch);
    for (event, result) in results {
        replies_known(state, event, result);
    }
    respond_next(myself, state);
    send::pump(myself, state);
}

/// The replies to `event` are known: queue them (an inbox event is finished with its last one), or finish
/// the event as failed, or leave it pending when storage would not record them.
fn replies_known(state: &mut TenantState, event: InboundEvent, result: Result<ToSend, Unanswered>) {
    match result {
        Ok(ToSend { replies, hand_over, note }) => {
            if let (Some(id), false) = (event.inbox_id, replies.is_empty()) {
                state.marks.expect(id, replies.len(), note);
            } else {
                state.marks.finish_noted(event.inbox_id, note);
            }
            if hand_over && !replies.is_empty() {
                // The bot asked for a person: the same hand-over as a customer asking for one.
                let change = state.takeover.asked_for_person(&event, pause_ms(state));
                tracing::info!(page = %state.ctx.page, "the bot asked for a person; the conversation goes to the inbox");
                keep(state, change);
            }
            // The answer to asking for a person is out with its last reply: then the conversation is passed.
            let (last, passes) = (replies.len().saturating_sub(1), state.takeover.passes_after(&event));
            for (i, reply) in replies.into_iter().enumerate() {
                send::enqueue(state, &event, reply, passes && i == last);
            }
        }
        Err(Unanswered::Bot(problem)) => {
            tracing::warn!(page = %state.ctx.page, %problem, "responder failed; event not answered");
            state.metrics.ignored("responder_failed");
            state.marks.finish(event.inbox_id, Some(format!("the bot failed: {problem}")));
        }
        Err(unanswered @ (Unanswered::Storage(_) | Unanswered::GaveUp)) => {
            if let Unanswered::Storage(problem) = unanswered {
                tracing::error!(page = %state.ctx.page, %problem, "cannot record replies; the event stays pending");
                state.metrics.ignored("storage_unavailable");
            }
            set_aside(state, &event);
        }
    }
}

/// An event for a loaded tenant: counted, deduplicated, and queued for the responder if it wants one.
pub(super) fn accept(myself: &ActorRef<TenantMsg>, state: &mut TenantState, event: InboundEvent) {
    // "Last event received" is when it reached us, not Meta's timestamp (redeliveries can be hours late).
    state.metrics.event(event.kind_label(), event.timestamp as f64 / 1000.0, crate::telemetry::stats::now_ms());
    if let Some(key) = event.dedup_key()
        && !state.responding.dedup.first_time(key)
    {
        state.metrics.ignored("duplicate");
        // Nothing to finish: an inbox event seen before is the same row handed over again (the inbox
        // stores each key once), and the copy this tenant took first finishes it.
        return;
    }
    if !event.wants_reply() {
        noticed(state, &event);
        state.metrics.ignored(if event.is_own() {
            "own_message"
        } else if event.standby {
            "standby"
        } else {
            "no_reply_needed"
        });
        state.marks.finish(event.inbox_id, None);
        return;
    }
    if state.takeover.is_held(&event.sender, crate::telemetry::stats::now_ms()) {
        // A person at the business is answering this customer: the bot stays silent.
        state.metrics.ignored("person_handling");
        state.marks.finish(event.inbox_id, None);
        return;
    }
    if state.responding.waiting() >= state.ctx.settings.pending_capacity {
        // A backlog this deep means the page cannot keep up (throttled, a slow bot): set the event aside
        // rather than hold without bound. An inbox event stays pending, and the sweeper hands it over again.
        state.metrics.ignored("tenant_backlog");
        set_aside(state, &event);
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
    state.responding.queue(event);
    respond_next(myself, state);
}

/// `event` is not handled now: it stays pending in the inbox (handed over again later), and a copy that comes
/// back is not taken for a duplicate.
fn set_aside(state: &mut TenantState, event: &InboundEvent) {
    if let Some(key) = event.dedup_key() {
        state.responding.dedup.forget(&key);
    }
    state.marks.set_aside(event.inbox_id);
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

/// Hands the next batches of pending events to the responder: in queue order, at most one event of each
/// conversation (so a late delivery of an earlier message can still go ahead of the rest of its
/// conversation); one batch at a time for a batching responder (so replies are queued in that order), and
/// for one that answers events one by one, as many single events at once as it says, of conversations not
/// with it already (so each conversation's replies are still queued in order).
pub(super) fn respond_next(myself: &ActorRef<TenantMsg>, state: &mut TenantState) {
    let Some(responder) = state.profile.as_ref().map(|p| p.responder.clone()) else { return };
    let parallel = responder.parallel();
    while let Some((n, mut batch)) = state.responding.next_batch(parallel) {
        if parallel > 1 {
            // An answer takes a while here: a conversation a person took over since its message was taken
            // (the bot asked for one, or someone answered in the inbox) is not answered by the bot any more.
            let now = crate::telemetry::stats::now_ms();
            let (held, kept): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|e| state.takeover.is_held(&e.sender, now) && !state.takeover.passes_after(e));
            for event in held {
                state.metrics.ignored("person_handling");
                state.marks.finish(event.inbox_id, None);
            }
            if kept.is_empty() {
                state.responding.answered(n);
                continue;
            }
            batch = kept;
        }
        let (sink, settler) = (state.ctx.ports.events.clone(), state.settler());
        // Replies are recorded marked only for a batching responder: the bound on replies of unknown outcome
        // counts what this tenant sends at once, not what several batches out at once could mark.
        let room = if parallel > 1 { 0 } else { send::room_to_premark(state) };
        let (in_transit, responder, me) = (state.responding.in_transit.clone(), responder.clone(), myself.clone());
        state.ctx.spawn(async move {
            let results = answer(batch, responder.as_ref(), sink.as_ref(), &settler, room).await;
            let marked = premarked(&results);
            if !marked.is_empty() {
                in_transit.lock().unwrap_or_else(PoisonError::into_inner).insert(n, marked);
            }
            if me.send_message(TenantMsg::Responded(n, results)).is_err() {
                // The tenant is gone: unless it took them as it stopped, its replies recorded marked are ours
                // to mark never sent.
                let unattempted = take(&in_transit, Some(n));
                if !unattempted.is_empty() {
                    sink.progress(Progress { unattempted, ..Progress::default() }).await;
                }
            }
        });
    }
}

/// The replies of `results` recorded already marked as about to be sent.
fn premarked(results: &[(InboundEvent, Result<ToSend, Unanswered>)]) -> Vec<(InboxId, ReplyId)> {
    results
        .iter()
        .flat_map(|(event, answer)| {
            answer.iter().flat_map(|a| &a.replies).filter(|r| r.marked).filter_map(|r| event.inbox_id.zip(r.reply_id))
        })
        .collect()
}

/// Takes batch `n`'s replies in transit (`None`: every batch's).
fn take(slot: &InTransit, n: Option<u64>) -> Vec<(InboxId, ReplyId)> {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    match n {
        Some(n) => slot.remove(&n).unwrap_or_default(),
        None => slot.drain().flat_map(|(_, replies)| replies).collect(),
    }
}

/// Takes up to `size` events from the first `RESPOND_SCAN` of `pending`, the first of each conversation not
/// in `busy` (with the responder already); the others stay in their order. Events handed over again and new
/// events are never in one batch: settling a recovered event's replies (Conversations API, 2 calls a second)
/// must not hold new ones.
fn take_batch(pending: &mut VecDeque<InboundEvent>, size: usize, busy: &[String]) -> Vec<InboundEvent> {
    let mut batch: Vec<InboundEvent> = Vec::new();
    let mut kept = VecDeque::new();
    let mut scanned = 0;
    let recovered = pending.iter().find(|e| !busy.contains(&e.sender)).is_some_and(|e| e.recovered);
    while batch.len() < size && scanned < RESPOND_SCAN {
        let Some(event) = pending.pop_front() else { break };
        scanned += 1;
        if event.recovered != recovered
            || busy.contains(&event.sender)
            || batch.iter().any(|taken| taken.sender == event.sender)
        {
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
    Known(Result<ToSend, Unanswered>),
    /// Replies to record before any is sent (and what the bot asked besides).
    Record(ToRecord, ToSend),
}

/// The replies still to send for each of `events`, in order. An inbox event's replies are recorded in the
/// outbox before any is sent, one storage call for the whole batch; an event handed over again after a
/// restart reuses the replies recorded for it (never asking the bot twice) and skips those Meta already
/// accepted. The first replies, up to `room`, are recorded already marked as about to be sent.
async fn answer(
    events: Vec<InboundEvent>,
    responder: &dyn Responder,
    sink: &dyn EventSink,
    settler: &Settler,
    mut room: usize,
) -> Vec<(InboundEvent, Result<ToSend, Unanswered>)> {
    let backoff = settler.backoff;
    // One conversation per batch: the responder is asked for all of them at once.
    let mut answers = join_all(events.iter().map(|event| answer_one(event, responder, sink, settler))).await;
    let to_record: Vec<ToRecord> = answers
        .iter_mut()
        .filter_map(|a| match a {
            Answer::Record(record, _) => {
                let attempting = record.texts.len() <= room;
                if attempting {
                    room -= record.texts.len();
                }
                Some(ToRecord {
                    inbox_id: record.inbox_id,
                    recipient: std::mem::take(&mut record.recipient),
                    texts: std::mem::take(&mut record.texts),
                    attempting,
                })
            }
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
                // What storage says of a reply just recorded holds: one of unknown outcome was recorded
                // marked as about to be sent (by this call, or by the one that recorded it first).
                Answer::Record(_, rest) => match &mut recorded {
                    Ok(recorded) => recorded
                        .next()
                        .map(|replies| ToSend { replies: unsent(replies, true), ..rest })
                        .ok_or_else(|| {
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

/// The replies of `recorded` Meta has not accepted yet; `fresh`: just recorded, so those of unknown outcome
/// are stored as about to be sent (a settled reply is marked again before it is sent).
fn unsent(recorded: Vec<RecordedReply>, fresh: bool) -> Vec<Reply> {
    recorded
        .into_iter()
        .filter(|r| !r.sent)
        .map(|r| Reply { text: r.text, reply_id: Some(r.id), marked: fresh && r.unknown })
        .collect()
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
                    settler
                        .unsent(event, recorded, sink)
                        .await
                        .map(|r| ToSend::replies(unsent(r, false)))
                        .ok_or(Unanswered::GaveUp),
                );
            }
            Ok(_) => {}
            Err(problem) => return Answer::Known(Err(Unanswered::Storage(problem))),
        }
    }
    let answer = match responder.respond(event).await {
        Ok(answer) => answer,
        Err(problem) => return Answer::Known(Err(Unanswered::Bot(problem.to_string()))),
    };
    let pieces: Vec<String> = answer.replies.iter().flat_map(|text| split_for(event.channel, text)).collect();
    let rest = ToSend { replies: Vec::new(), hand_over: answer.hand_over, note: answer.note };
    match event.inbox_id {
        Some(inbox_id) if !pieces.is_empty() => Answer::Record(
            ToRecord { inbox_id, recipient: event.sender.clone(), texts: pieces, attempting: false },
            rest,
        ),
        _ => Answer::Known(Ok(ToSend {
            replies: pieces.into_iter().map(|text| Reply { text, reply_id: None, marked: false }).collect(),
            ..rest
        })),
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
