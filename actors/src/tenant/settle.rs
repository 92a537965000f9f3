//! Replies whose outcome is unknown: a process recorded them and may have made the Send API call before it
//! stopped (a crash, a node that lost its lease), so whether Meta delivered them is not known. Before one is
//! sent again, the conversation is read back (Conversations API, at most 2 calls a second per Page) and only
//! what Meta did not deliver is sent.
//!
//! A Page's replies to one person go out one at a time, in the order they were recorded. So the messages in
//! the conversation created since the first unknown reply was recorded, less those storage knows were sent
//! (and those this tenant already attributed), belong in order to the unknown replies with the same text.
//! What cannot be read (no token, Meta refuses) is sent again: at least once rather than never. A tenant whose
//! page is no longer its own (a cluster moved it) or whose engine is stopping gives up settling at once: its
//! events stay pending for whoever handles them next, who settles them then.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::domain::event::InboundEvent;
use crate::domain::ids::ReplyId;
use crate::domain::page::PageId;
use crate::domain::token::AccessToken;
use crate::ports::{DeliveredMessage, EventSink, GraphApi, GraphFailure, Progress, RecordedReply};
use crate::telemetry::metrics::UNKNOWN_REPLIES;
use crate::timing::backoff::Backoff;
use crate::timing::limiter::SendLimiter;

/// Meta's clock and storage's are compared: a message may carry a `created_time` this much before the reply
/// was recorded (Meta rounds to the second).
const SKEW_SECS: i64 = 5;
/// How often reading the conversation is tried.
const READ_ATTEMPTS: u32 = 3;
/// How long after it starts a tenant makes its first Conversations API call. Meta counts 2 calls a second per
/// Page, and whoever ran the Page's tenant just before (another node that handed the Page over, this process
/// before a restart, the actor before a crash) may have used this second's calls: one window, and a margin
/// for a call still on its way when that tenant stopped.
const FIRST_READ_AFTER: std::time::Duration = std::time::Duration::from_millis(1_300);
/// How often a waiting settler looks whether it may still settle.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// Message ids this tenant attributed, kept so two events of one person never claim the same message.
const CLAIMED_CAP: usize = 10_000;

/// A tenant's reading of conversations: its pace, when it may start, and the messages it attributed.
pub(super) struct Reads {
    /// The Conversations API pace (2 calls a second).
    pace: Arc<SendLimiter>,
    /// No Conversations API call before this: see [`FIRST_READ_AFTER`].
    not_before: tokio::time::Instant,
    claimed: Arc<Mutex<HashSet<String>>>,
}

impl Reads {
    /// For a tenant starting now.
    pub(super) fn new() -> Self {
        Self {
            // Meta allows 2 Conversations API calls a second per Page; 0.6 s apart leaves the network room.
            pace: Arc::new(SendLimiter::with_period(std::time::Duration::from_millis(600))),
            not_before: tokio::time::Instant::now() + FIRST_READ_AFTER,
            claimed: Arc::default(),
        }
    }

    /// What a batch of events settles with: `token` reads `page`'s conversations, while `may_settle`.
    pub(super) fn settler(
        &self,
        graph: Arc<dyn GraphApi>,
        token: Option<AccessToken>,
        page: PageId,
        backoff: Backoff,
        may_settle: crate::engine::context::Current,
    ) -> Settler {
        Settler {
            graph,
            token,
            page,
            pace: self.pace.clone(),
            not_before: self.not_before,
            claimed: self.claimed.clone(),
            backoff,
            may_settle,
        }
    }
}

/// What a tenant settles with.
#[derive(Clone)]
pub(crate) struct Settler {
    pub graph: Arc<dyn GraphApi>,
    pub token: Option<AccessToken>,
    pub page: PageId,
    /// The Page's Conversations API pace (2 calls a second).
    pub pace: Arc<SendLimiter>,
    /// No call before this ([`FIRST_READ_AFTER`] after the tenant started).
    pub not_before: tokio::time::Instant,
    pub claimed: Arc<Mutex<HashSet<String>>>,
    pub backoff: Backoff,
    /// Whether the tenant may still settle (see [`crate::engine::context::TenantContext::may_settle`]).
    pub may_settle: crate::engine::context::Current,
}

/// Why the conversation was not read.
enum NotRead {
    /// Meta refused, or there is no token: the unknown replies are sent again.
    Unreadable,
    /// The tenant may no longer settle: nothing is sent, the event stays pending.
    GaveUp,
}

impl Settler {
    /// The replies of `recorded` still to send; those Meta already delivered are reported sent (with Meta's
    /// message id) through `sink`. `None`: the tenant gave up settling (its page moved, or the engine stops).
    pub async fn unsent(
        &self,
        event: &InboundEvent,
        recorded: Vec<RecordedReply>,
        sink: &dyn EventSink,
    ) -> Option<Vec<RecordedReply>> {
        let Some(since) = recorded.iter().filter(|r| r.unknown).map(|r| r.recorded_unix - SKEW_SECS).min() else {
            return Some(recorded.into_iter().filter(|r| !r.sent).collect());
        };
        let candidates = match self.candidates(event, since, sink).await {
            Ok(candidates) => candidates,
            Err(NotRead::GaveUp) => {
                tracing::info!(page = %self.page, "settling given up: the page moved or the engine stops");
                return None;
            }
            Err(NotRead::Unreadable) => {
                let unknown = recorded.iter().filter(|r| r.unknown).count();
                metrics::counter!(UNKNOWN_REPLIES, "outcome" => "unreadable").increment(unknown as u64);
                tracing::warn!(page = %self.page, unknown, "cannot read the conversation; unknown replies are sent again");
                return Some(recorded.into_iter().filter(|r| !r.sent).collect());
            }
        };
        let (to_send, delivered) = attribute(recorded, candidates);
        metrics::counter!(UNKNOWN_REPLIES, "outcome" => "delivered").increment(delivered.len() as u64);
        if !delivered.is_empty() {
            let mut claimed = self.claimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if claimed.len() > CLAIMED_CAP {
                claimed.clear();
            }
            claimed.extend(delivered.iter().filter_map(|(_, id)| id.clone()));
        }
        let resent = to_send.iter().filter(|r| r.unknown).count();
        metrics::counter!(UNKNOWN_REPLIES, "outcome" => "resent").increment(resent as u64);
        if !delivered.is_empty() {
            sink.progress(Progress { sent: delivered, ..Progress::default() }).await;
        }
        Some(to_send)
    }

    /// The conversation's messages since `since` that no stored or attributed reply accounts for, oldest
    /// first.
    async fn candidates(
        &self,
        event: &InboundEvent,
        since: i64,
        sink: &dyn EventSink,
    ) -> Result<Vec<DeliveredMessage>, NotRead> {
        let token = self.token.as_ref().ok_or(NotRead::Unreadable)?;
        let mut messages = None;
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                self.wait(self.backoff.delay(attempt)).await.ok_or(NotRead::GaveUp)?;
            }
            match self.read(token, event).await {
                Ok(found) => {
                    messages = Some(found);
                    break;
                }
                Err(Some(failure)) => {
                    tracing::info!(page = %self.page, reason = %failure.reason(), "conversation not read");
                }
                Err(None) => return Err(NotRead::GaveUp),
            }
        }
        let messages = messages.ok_or(NotRead::Unreadable)?;
        let stored = sink.sent_ids(&self.page, &event.sender, since).await.map_err(|_| NotRead::Unreadable)?;
        let stored: HashSet<String> = stored.into_iter().collect();
        let claimed = self.claimed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut candidates: Vec<DeliveredMessage> = messages
            .into_iter()
            .filter(|m| m.created_unix >= since && !stored.contains(&m.message_id) && !claimed.contains(&m.message_id))
            .collect();
        candidates.reverse();
        Ok(candidates)
    }
}

impl Settler {
    /// Finds the conversation with the event's sender and reads it: two calls, each within the Page's pace.
    /// `Err(None)`: the tenant may no longer settle.
    async fn read(
        &self,
        token: &AccessToken,
        event: &InboundEvent,
    ) -> Result<Vec<DeliveredMessage>, Option<GraphFailure>> {
        self.paced().await.ok_or(None)?;
        let Some(conversation) = self.graph.conversation(token, &self.page, event.channel, &event.sender).await? else {
            return Ok(Vec::new());
        };
        self.paced().await.ok_or(None)?;
        Ok(self.graph.sent_in(token, &self.page, &conversation, &event.sender).await?)
    }

    /// Waits for the Page's next Conversations API slot; `None` if the tenant may no longer settle.
    async fn paced(&self) -> Option<()> {
        loop {
            let wait = match self.not_before.checked_duration_since(tokio::time::Instant::now()) {
                Some(wait) if !wait.is_zero() => wait,
                _ => match self.pace.check() {
                    Ok(()) => return (self.may_settle)().then_some(()),
                    Err(wait) => wait,
                },
            };
            self.wait(wait).await?;
        }
    }

    /// Sleeps for `duration`, looking every [`LOOK_EVERY`] whether the tenant may still settle; `None` as soon
    /// as it may not.
    async fn wait(&self, duration: std::time::Duration) -> Option<()> {
        let until = tokio::time::Instant::now() + duration;
        loop {
            if !(self.may_settle)() {
                return None;
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Some(());
            }
            tokio::time::sleep((until - now).min(LOOK_EVERY)).await;
        }
    }
}

/// Matches the unknown replies, in order, to the candidates (oldest first) with the same text: the replies
/// still to send, and the delivered ones with Meta's message id.
fn attribute(
    recorded: Vec<RecordedReply>,
    mut candidates: Vec<DeliveredMessage>,
) -> (Vec<RecordedReply>, Vec<(ReplyId, Option<String>)>) {
    let mut to_send = Vec::new();
    let mut delivered = Vec::new();
    for reply in recorded.into_iter().filter(|r| !r.sent) {
        match candidates.iter().position(|m| reply.unknown && m.text == reply.text) {
            Some(at) => {
                let message = candidates.remove(at);
                delivered.push((reply.id, Some(message.message_id)));
            }
            None => to_send.push(reply),
        }
    }
    (to_send, delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: i64, text: &str, unknown: bool) -> RecordedReply {
        RecordedReply { id: ReplyId(id), text: text.into(), sent: false, unknown, recorded_unix: 100 }
    }

    fn message(id: &str, text: &str) -> DeliveredMessage {
        DeliveredMessage { message_id: id.into(), text: text.into(), created_unix: 100 }
    }

    #[test]
    fn unknown_replies_take_the_messages_with_their_text_in_order() {
        let recorded = vec![reply(1, "ok", true), reply(2, "ok", true), reply(3, "bye", true), reply(4, "x", false)];
        let (to_send, delivered) = attribute(recorded, vec![message("m1", "ok")]);
        assert_eq!(delivered, vec![(ReplyId(1), Some("m1".to_owned()))]);
        assert_eq!(to_send.iter().map(|r| r.id.0).collect::<Vec<_>>(), vec![2, 3, 4]);
    }

    #[test]
    fn a_reply_known_not_to_be_sent_is_never_attributed() {
        let (to_send, delivered) = attribute(vec![reply(1, "ok", false)], vec![message("m1", "ok")]);
        assert!(delivered.is_empty());
        assert_eq!(to_send.len(), 1);
    }
}
