//! What the engine needs from the outside world, as traits the root crate implements: where a tenant's
//! integration and token come from, how to call the Graph API, where status changes go, and how a
//! tenant's bot answers. The engine never sees SQL or HTTP-server types.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::bot::{AskForPerson, Responder};
use crate::domain::event::Channel;
use crate::domain::ids::{InboxId, ReplyId};
use crate::domain::page::PageId;
use crate::domain::token::AccessToken;

/// Everything a tenant actor needs to run, loaded when it starts (and again on reconnect).
#[derive(Clone)]
pub struct TenantProfile {
    pub client_slug: Arc<str>,
    pub page_id: PageId,
    pub instagram_account_id: Option<PageId>,
    /// The decrypted Page token; `None` when the integration cannot send (revoked, needs reauth).
    pub token: Option<AccessToken>,
    /// Why the tenant may not send right now (needs_reauth, error), if it may not.
    pub blocked: Option<String>,
    pub responder: Arc<dyn Responder>,
    /// Send API calls per second for this page (GCRA, burst 1).
    pub send_rate_per_second: u32,
    /// How long the bot stays silent in a conversation after a person at the business last answered in it.
    pub human_pause: Duration,
    /// The conversations a person is handling now: (PSID or IGSID, until when in unix ms).
    pub held: Vec<(String, i64)>,
    /// What a customer says to ask for a person, and the answer.
    pub ask_for_person: Arc<AskForPerson>,
}

impl std::fmt::Debug for TenantProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantProfile")
            .field("client_slug", &self.client_slug)
            .field("page_id", &self.page_id)
            .field("token", &self.token)
            .field("blocked", &self.blocked)
            .field("send_rate_per_second", &self.send_rate_per_second)
            .finish_non_exhaustive()
    }
}

/// Why a tenant could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// No client owns this page (any more).
    #[error("no integration for this page")]
    NotFound,
    /// The integration exists but cannot be used (its token fails to decrypt, …).
    #[error("integration unusable: {0}")]
    Unusable(String),
    /// Storage is unavailable; worth retrying.
    #[error("cannot load the integration: {0}")]
    Unavailable(String),
}

/// Loads tenants (integration + decrypted token + responder).
#[async_trait]
pub trait TenantSource: Send + Sync + 'static {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError>;
}

/// One reply to send through the Send API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub page_id: PageId,
    pub channel: Channel,
    pub recipient: String,
    pub text: String,
}

/// Meta's usage report (from the usage headers), when it sent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// The highest of call_count, total_cputime, total_time, in percent.
    pub max_pct: u32,
    /// `estimated_time_to_regain_access`, when above zero.
    pub regain: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOk {
    pub message_id: String,
    pub usage: Option<Usage>,
}

/// A failed Graph call, as Meta described it. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphFailure {
    /// The HTTP status, or `None` when no answer came (connection error, timeout).
    pub http_status: Option<u16>,
    pub code: Option<u32>,
    pub subcode: Option<u32>,
    /// Meta's message, for people (it never contains the token).
    pub message: String,
    pub usage: Option<Usage>,
}

/// What to do about a failure. Decided by code and subcode only, never by message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 4, 17, 32, 613, 80001–80006: pause the tenant until Meta's regain time.
    Throttled,
    /// 1, 2, HTTP 5xx, no answer: retry with jittered backoff, bounded.
    Transient,
    /// 1/1357046: Meta sent it but answered with an error. Never resend.
    AlreadyDelivered,
    /// 190 (any subcode): the token is dead; the client must reconnect.
    AuthInvalid,
    /// 10 (not a window subcode), 3, 200–299: a permission is missing; the client must fix it.
    PermissionDenied,
    /// A problem with this one message (window closed, person unavailable, bad parameter): drop it.
    DropMessage,
}

impl GraphFailure {
    /// The one place Meta's error codes are mapped to behaviour (meta-platform.md §6).
    pub fn class(&self) -> FailureClass {
        match (self.code, self.subcode) {
            (Some(1), Some(1_357_046)) => FailureClass::AlreadyDelivered,
            (Some(4 | 17 | 32 | 613 | 80_001..=80_006), _) => FailureClass::Throttled,
            (Some(1 | 2), _) => FailureClass::Transient,
            (Some(190 | 102), _) => FailureClass::AuthInvalid,
            (Some(10), Some(2_018_278 | 2_534_022 | 2_018_065 | 2_018_108)) => FailureClass::DropMessage,
            (Some(3 | 10 | 200..=299), _) => FailureClass::PermissionDenied,
            (Some(_), _) => FailureClass::DropMessage,
            (None, _) if self.http_status.is_none_or(|s| s >= 500 || s == 429) => FailureClass::Transient,
            (None, _) => FailureClass::DropMessage,
        }
    }

    /// The metric label for this failure: Meta's code, or the HTTP status, or `transport`.
    pub fn code_label(&self) -> String {
        match (self.code, self.http_status) {
            (Some(code), _) => code.to_string(),
            (None, Some(status)) => format!("http_{status}"),
            (None, None) => "transport".to_owned(),
        }
    }

    /// A short reason for the integration's status, e.g. `Meta error 190/460: …`.
    pub fn reason(&self) -> String {
        let code = match (self.code, self.subcode) {
            (Some(c), Some(s)) => format!("{c}/{s}"),
            (Some(c), None) => c.to_string(),
            _ => self.code_label(),
        };
        format!("Meta error {code}: {}", self.message)
    }
}

/// A message a Page sent to a person, as the Conversations API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredMessage {
    pub message_id: String,
    pub text: String,
    /// Meta's `created_time`, in unix seconds.
    pub created_unix: i64,
}

/// The Graph API calls the engine makes.
#[async_trait]
pub trait GraphApi: Send + Sync + 'static {
    async fn send_message(&self, token: &AccessToken, message: &OutgoingMessage) -> Result<SendOk, GraphFailure>;
    /// The id of `page`'s conversation with `recipient` on `channel`, if there is one (Conversations API;
    /// Meta allows 2 calls a second per Page, and the caller paces them). A Graph API that cannot read
    /// conversations (the default) finds none, so a reply of unknown outcome is sent again.
    async fn conversation(
        &self,
        _token: &AccessToken,
        _page: &PageId,
        _channel: Channel,
        _recipient: &str,
    ) -> Result<Option<String>, GraphFailure> {
        Ok(None)
    }
    /// What `page` sent in `conversation`, newest first (Conversations API, paced by the caller).
    async fn sent_in(
        &self,
        _token: &AccessToken,
        _page: &PageId,
        _conversation: &str,
        _recipient: &str,
    ) -> Result<Vec<DeliveredMessage>, GraphFailure> {
        Ok(Vec::new())
    }
    /// Passes the conversation with `recipient` to the app `target_app_id` (the Page Inbox, the Instagram
    /// Inbox) through the Handover Protocol. A Graph API without it (the default) refuses.
    async fn pass_thread_control(
        &self,
        _token: &AccessToken,
        _page: &PageId,
        _recipient: &str,
        _target_app_id: &str,
    ) -> Result<(), GraphFailure> {
        Err(GraphFailure {
            message: "the Handover Protocol is not available here".to_owned(),
            ..GraphFailure::default()
        })
    }
}

/// Where the engine reports what it learned about an integration.
#[async_trait]
pub trait StatusSink: Send + Sync + 'static {
    /// Meta rejected the token (190): the integration becomes needs_reauth, with an audit row.
    async fn needs_reauth(&self, page: &PageId, reason: &str);
    /// A permission is missing (10, 200–299): the integration becomes error, with an audit row.
    async fn permission_error(&self, page: &PageId, reason: &str);
    /// A person at the business answered `person`: the bot stays silent with them until `until_unix_ms`
    /// (kept, so whoever runs the Page next knows).
    async fn person_handling(&self, page: &PageId, person: &str, until_unix_ms: i64);
    /// The conversation with `person` was passed back to this app: the bot answers them again.
    async fn bot_handling(&self, page: &PageId, person: &str);
}

/// Why the durable inbox or its outbox did not take what the engine asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Storage is unavailable (or did not answer in time); worth trying again.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// This engine has no durable inbox.
    #[error("this engine has no durable inbox")]
    NoInbox,
    /// This node no longer owns the page (a cluster moved it): nothing more is written or sent for it here.
    #[error("this node no longer owns the page")]
    Fenced,
}

/// A reply to an inbox event, recorded in the outbox before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedReply {
    /// The outbox row.
    pub id: ReplyId,
    pub text: String,
    /// Meta accepted it already (its message_id is stored): never send it again.
    pub sent: bool,
    /// Not known to be sent, and not known not to be: the process that recorded it may have made the call
    /// before it stopped. Settled (Conversations API) before it is sent again.
    pub unknown: bool,
    /// When it was recorded, in unix seconds (Meta's times are compared with it).
    pub recorded_unix: i64,
}

/// An event's replies to record before any is sent: its row, whom they go to, and their texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToRecord {
    pub inbox_id: InboxId,
    pub recipient: String,
    pub texts: Vec<String>,
    /// The tenant will send these replies at once: record them already marked as about to be sent (as
    /// [`EventSink::attempting`] would), so their send waits on this one write, not two. A sink that does not
    /// returns them not [`RecordedReply::unknown`], and they are marked before they are sent.
    pub attempting: bool,
}

/// How an inbox event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every reply was sent (or there was none); with a note on how it was answered, if there is one.
    Done(Option<String>),
    /// Never (fully) answered, and why.
    Failed(String),
}

impl Outcome {
    /// Done, with nothing to note.
    pub const DONE: Outcome = Outcome::Done(None);

    /// `None`: done; `Some(reason)`: failed with it.
    pub fn from_failure(failure: Option<String>) -> Self {
        failure.map_or(Self::DONE, Self::Failed)
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed(_))
    }

    /// What is stored beside the status: the failure, or the note.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Done(note) => note.as_deref(),
            Self::Failed(reason) => Some(reason),
        }
    }
}

/// What a tenant learned about its inbox events while handling one message, reported together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Replies Meta accepted: (outbox row, Meta's message_id when it gave one). Reported by the send task
    /// itself, as soon as Meta answers.
    pub sent: Vec<(ReplyId, Option<String>)>,
    /// Events finished: done once every reply was sent (or there was none), or failed with the reason.
    pub finished: Vec<(InboxId, Outcome)>,
    /// Events given up without finishing (storage refused their replies, the page's backlog was full): still
    /// pending, to be handed over again later.
    pub released: Vec<InboxId>,
    /// Recorded replies a stopping tenant never sent (they were queued), with their events: sent without
    /// settling first when their event is handed over again.
    pub unattempted: Vec<(InboxId, ReplyId)>,
}

impl Progress {
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty() && self.finished.is_empty() && self.released.is_empty() && self.unattempted.is_empty()
    }

    /// Appends `other`'s marks.
    pub fn extend(&mut self, other: Progress) {
        self.sent.extend(other.sent);
        self.finished.extend(other.finished);
        self.released.extend(other.released);
        self.unattempted.extend(other.unattempted);
    }
}

/// The durable inbox and its outbox, as the engine sees them. Only events with an `inbox_id` use it.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// The replies already recorded for an event handed over again after a restart, in order (empty if
    /// none were).
    async fn recorded(&self, inbox_id: InboxId) -> Result<Vec<RecordedReply>, SinkError>;
    /// Records the replies to events before any of them is sent; returns each event's recorded replies, in
    /// order. Idempotent: recording an event's replies again returns the rows stored first (their text, and
    /// whether they were sent).
    async fn record(&self, events: &[ToRecord]) -> Result<Vec<Vec<RecordedReply>>, SinkError>;
    /// Marks replies (with their events) as about to be sent, before any of their calls is made: a reply
    /// marked and not known sent is of unknown outcome if the process stops. Until marked, a recorded reply
    /// is known never to have been sent.
    async fn attempting(&self, _replies: &[(InboxId, ReplyId)]) -> Result<(), SinkError> {
        Ok(())
    }
    /// Meta's message ids of the replies `page` is stored to have sent to `recipient` since `since_unix`.
    async fn sent_ids(&self, page: &PageId, recipient: &str, since_unix: i64) -> Result<Vec<String>, SinkError>;
    /// Stores sent replies and finished events. Must not lose them: an implementation retries until
    /// storage takes them (a reply not marked sent would be sent again after a restart).
    async fn progress(&self, progress: Progress);
    /// The tenant of `page` failed: the inbox events it held died with its mailbox. The sink may hand them
    /// over again once the Send API calls the tenant had in flight are over (they still report their marks).
    fn lost(&self, _page: &PageId) {}
}

/// The sink of an engine without a durable inbox (events never carry an inbox id): every call is refused.
pub struct NoInbox;

#[async_trait]
impl EventSink for NoInbox {
    async fn recorded(&self, _: InboxId) -> Result<Vec<RecordedReply>, SinkError> {
        Err(SinkError::NoInbox)
    }

    async fn record(&self, _: &[ToRecord]) -> Result<Vec<Vec<RecordedReply>>, SinkError> {
        Err(SinkError::NoInbox)
    }

    async fn sent_ids(&self, _: &PageId, _: &str, _: i64) -> Result<Vec<String>, SinkError> {
        Err(SinkError::NoInbox)
    }

    async fn progress(&self, _: Progress) {}
}
