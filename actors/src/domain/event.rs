//! A webhook event after parsing: what a tenant actor consumes. The HTTP layer builds these from Meta's
//! payloads; the relay responder posts them, serialized, to a client's own bot.

use serde::{Deserialize, Serialize};

use super::page::PageId;
use crate::domain::ids::InboxId;

/// Where an event came from and where the reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Messenger,
    Instagram,
}

/// One item of `entry[].messaging[]` (or `standby[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundEvent {
    /// The event's row in the durable inbox, when there is one (never serialized: it is the row's key).
    #[serde(skip)]
    pub inbox_id: Option<InboxId>,
    /// Handed over again from the inbox after a restart: its replies may be recorded (and sent) already.
    #[serde(skip)]
    pub recovered: bool,
    /// When its webhook arrived at this process (for the webhook → reply latency); unknown for an event handed
    /// over again from the inbox.
    #[serde(skip)]
    pub received: Option<tokio::time::Instant>,
    /// `entry[].id`: the Page id (Messenger) or Instagram account id. The routing key.
    pub account_id: PageId,
    pub channel: Channel,
    /// PSID or IGSID of the person (or the account itself, for echoes).
    pub sender: String,
    pub recipient: String,
    /// `timestamp`, milliseconds.
    pub timestamp: i64,
    /// Delivered under `standby`: another app owns the thread, so this app must not answer.
    pub standby: bool,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Message {
        mid: String,
        text: Option<String>,
        quick_reply: Option<String>,
        is_echo: bool,
        /// The app that sent an echo (Meta's `app_id`): this app for its own Send API calls, the Page Inbox's
        /// (or none) for what a person at the business wrote.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app_id: Option<String>,
        /// Attachment types (image, audio, …).
        attachments: Vec<String>,
    },
    Postback {
        mid: Option<String>,
        title: Option<String>,
        payload: Option<String>,
    },
    Read,
    Delivery,
    Reaction {
        mid: Option<String>,
        action: Option<String>,
    },
    /// The conversation changed hands (Handover Protocol, `messaging_handovers`): passed to the app `to_app`,
    /// or taken from this app (`None`) by another, the Page Inbox typically.
    ThreadControl {
        to_app: Option<String>,
    },
    /// Any other messaging event (referral, optin, edit, …): counted, not answered.
    Other {
        name: String,
    },
}

impl InboundEvent {
    /// The metric label for this kind of event.
    pub fn kind_label(&self) -> &'static str {
        match &self.kind {
            EventKind::Message { is_echo: true, .. } => "echo",
            EventKind::Message { .. } => "message",
            EventKind::Postback { .. } => "postback",
            EventKind::Read => "read",
            EventKind::Delivery => "delivery",
            EventKind::Reaction { .. } => "reaction",
            EventKind::ThreadControl { .. } | EventKind::Other { .. } => "other",
        }
    }

    /// The key a redelivery of this event shares with the original: the message mid; for a postback
    /// without one (before v11), sender + timestamp + payload. Reads and deliveries are idempotent and
    /// need no key.
    pub fn dedup_key(&self) -> Option<String> {
        match &self.kind {
            EventKind::Message { mid, .. } => Some(format!("m:{mid}")),
            EventKind::Postback { mid: Some(mid), .. } => Some(format!("p:{mid}")),
            EventKind::Postback { mid: None, payload, .. } => {
                Some(format!("p:{}:{}:{}", self.sender, self.timestamp, payload.as_deref().unwrap_or_default()))
            }
            EventKind::Reaction { mid, action } => Some(format!(
                "r:{}:{}:{}:{}",
                mid.as_deref().unwrap_or_default(),
                self.sender,
                action.as_deref().unwrap_or_default(),
                self.timestamp
            )),
            EventKind::Read | EventKind::Delivery | EventKind::ThreadControl { .. } | EventKind::Other { .. } => None,
        }
    }

    /// True for what the page itself sent (echoes, or anything whose sender is the account): never
    /// answered, or a bot would talk to itself forever.
    /// A read or delivery receipt (no reply, idempotent by watermark).
    pub fn is_receipt(&self) -> bool {
        matches!(self.kind, EventKind::Read | EventKind::Delivery)
    }

    pub fn is_own(&self) -> bool {
        matches!(self.kind, EventKind::Message { is_echo: true, .. }) || self.sender == self.account_id.as_str()
    }

    /// The message's mid, for a message.
    pub fn mid(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Message { mid, .. } => Some(mid),
            _ => None,
        }
    }

    /// For an echo: the app that sent it (`Some(None)` when Meta did not say). `None` for anything else.
    pub fn echo_app(&self) -> Option<Option<&str>> {
        match &self.kind {
            EventKind::Message { is_echo: true, app_id, .. } => Some(app_id.as_deref()),
            _ => None,
        }
    }

    /// Whether a tenant has something to do with this event: answer it, or stop or resume the bot in a
    /// conversation (an echo another app sent: a person at the business answered; the conversation changed
    /// hands). `own_app` is this app's Meta app id.
    pub fn needs_tenant(&self, own_app: &str) -> bool {
        self.wants_reply()
            || self.echo_app().is_some_and(|app| app != Some(own_app))
            || matches!(self.kind, EventKind::ThreadControl { .. })
    }

    /// The customer whose conversation this event belongs to: the sender of a message or postback, the
    /// recipient of an echo. `None` for receipts, reactions, handovers and what the account sent itself.
    pub fn customer(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Message { is_echo: true, .. } => Some(&self.recipient),
            EventKind::Message { .. } | EventKind::Postback { .. } if self.sender != self.account_id.as_str() => {
                Some(&self.sender)
            }
            _ => None,
        }
    }

    /// Whether the bot logic should see this event at all.
    pub fn wants_reply(&self) -> bool {
        !self.standby && !self.is_own() && matches!(self.kind, EventKind::Message { .. } | EventKind::Postback { .. })
    }
}
