//! A tenant's mailbox: the messages its actor handles, and what they carry. Its own module so the registry
//! (which delivers events) and the tenant (which handles them) share it without depending on each other.

use std::time::Duration;

use crate::domain::event::InboundEvent;
use crate::domain::ids::{InboxId, ReplyId};
use crate::ports::{GraphFailure, LoadError, OutgoingMessage, SendOk, SinkError, TenantProfile};

/// Messages a tenant actor handles.
pub(crate) enum TenantMsg {
    /// A webhook event for this page.
    Event(InboundEvent),
    /// The integration was (re)loaded.
    Loaded(Result<TenantProfile, LoadError>),
    /// Reload the integration (OAuth completion, reconnect): the token is swapped in place and queued
    /// replies are kept.
    Reload,
    /// The replies to batch N's events are known (and, for inbox events, recorded in the outbox), in the
    /// order the events were taken.
    Responded(u64, Vec<(InboundEvent, Result<ToSend, Unanswered>)>),
    /// Try to send what is queued (a timer set for this instant).
    Pump(tokio::time::Instant),
    /// A Send API call finished.
    SendDone { item: QueuedSend, result: Result<SendOk, GraphFailure>, elapsed: Duration },
    /// A transiently failed reply is due again.
    Retry(QueuedSend),
    /// Storage did not take the mark that a reply is about to be sent: it goes back to the queue, untried.
    NotMarked { item: QueuedSend, problem: SinkError },
    /// The token was found invalid elsewhere (token health check): stop sending until a reload.
    Invalidate { reason: String },
    /// The client disconnected the page: drop everything and stop.
    Disconnect,
    /// From the router, every half idle timeout: stop if idle.
    IdleCheck,
    /// Stop now (the registry already forgot this actor).
    Passivate,
    /// The engine no longer runs this page (a cluster moved it): stop at once. Queued replies are reported
    /// never sent; Send API calls in flight finish and are stored; pending events are the next owner's.
    Release,
    /// For supervision tests: fail as a handler bug would.
    #[cfg(feature = "test-hooks")]
    Crash,
}

/// A reply waiting to be sent.
#[derive(Debug, Clone)]
pub(crate) struct QueuedSend {
    pub message: OutgoingMessage,
    pub attempts: u32,
    /// The inbox row of the event this reply answers, if the event came from the durable inbox.
    pub inbox_id: Option<InboxId>,
    /// The reply's outbox row (inbox events only).
    pub reply_id: Option<ReplyId>,
    /// The last reply to a customer who asked for a person: once it is delivered, the conversation goes to
    /// the inbox (not before, or the answer would reach a conversation this app no longer has).
    pub pass_after: bool,
    /// Storage holds it as about to be sent already: no mark is written before its send.
    pub marked: bool,
    /// When the event's webhook arrived (see [`InboundEvent::received`]).
    pub received: Option<tokio::time::Instant>,
}

/// A reply still to send, with its outbox row for inbox events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub text: String,
    pub reply_id: Option<ReplyId>,
    /// Storage holds it as about to be sent already (recorded so): it needs no mark before its send.
    pub marked: bool,
}

/// An event's answer as the tenant takes it: the replies still to send, and what the bot asked besides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ToSend {
    pub replies: Vec<Reply>,
    /// The bot asked for the conversation to go to a person (see [`crate::bot::BotAnswer::hand_over`]).
    pub hand_over: bool,
    /// How the event was answered, kept as its outcome.
    pub note: Option<String>,
}

impl ToSend {
    /// Replies and nothing else (an event handed over again reuses its recorded replies only).
    pub fn replies(replies: Vec<Reply>) -> Self {
        Self { replies, ..Self::default() }
    }
}

/// Why an event got no replies to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// The bot failed: the event is finished as failed, with this reason.
    Bot(String),
    /// Storage would not record the replies (after retries): the inbox row stays pending and is handled
    /// again later.
    Storage(SinkError),
    /// Settling its replies of unknown outcome was given up (the page moved, or the engine stops): the inbox
    /// row stays pending for whoever handles it next.
    GaveUp,
}
