//! Meta's webhook payload as it arrives: every field optional, times and ids read leniently. `Whole*` is the
//! one-pass reading of a body whose every part is understood; `Payload`, `Entry` and `Change` keep their parts
//! raw, to read them one at a time.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::super::lenient::{Flag, Id, Time};

/// The common case, read in one pass: a page or instagram payload whose every entry and item is understood.
#[derive(Deserialize)]
pub(super) struct WholePayload {
    #[serde(default)]
    pub(super) object: Option<String>,
    #[serde(default)]
    pub(super) entry: Option<Vec<WholeEntry>>,
}

#[derive(Deserialize)]
pub(super) struct WholeEntry {
    #[serde(default)]
    pub(super) id: Option<Id>,
    #[serde(default)]
    pub(super) time: Option<Time>,
    #[serde(default)]
    pub(super) messaging: Option<Vec<Item>>,
    #[serde(default)]
    pub(super) standby: Option<Vec<Item>>,
    #[serde(default)]
    pub(super) changes: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
pub(super) struct Payload<'a> {
    #[serde(default)]
    pub(super) object: Option<serde_json::Value>,
    #[serde(borrow, default)]
    pub(super) entry: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
pub(super) struct Entry<'a> {
    #[serde(default)]
    pub(super) id: Option<Id>,
    #[serde(default)]
    pub(super) time: Option<Time>,
    #[serde(borrow, default)]
    pub(super) messaging: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    pub(super) standby: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    pub(super) changes: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
pub(super) struct Party {
    #[serde(default)]
    pub(super) id: Option<Id>,
}

#[derive(Deserialize)]
pub(super) struct Item {
    #[serde(default)]
    pub(super) sender: Option<Party>,
    #[serde(default)]
    pub(super) recipient: Option<Party>,
    #[serde(default)]
    pub(super) timestamp: Option<Time>,
    #[serde(default)]
    pub(super) message: Option<Message>,
    #[serde(default)]
    pub(super) postback: Option<Postback>,
    #[serde(default)]
    pub(super) read: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) delivery: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) reaction: Option<Reaction>,
    #[serde(default)]
    pub(super) referral: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) optin: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) message_edit: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) pass_thread_control: Option<PassThreadControl>,
    #[serde(default)]
    pub(super) take_thread_control: Option<PassThreadControl>,
}

#[derive(Deserialize)]
pub(super) struct PassThreadControl {
    #[serde(default)]
    pub(super) new_owner_app_id: Option<Id>,
}

#[derive(Deserialize)]
pub(super) struct Message {
    #[serde(default)]
    pub(super) mid: Option<String>,
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) quick_reply: Option<QuickReply>,
    #[serde(default)]
    pub(super) is_echo: Option<Flag>,
    #[serde(default)]
    pub(super) app_id: Option<Id>,
    #[serde(default)]
    pub(super) is_deleted: Option<Flag>,
    #[serde(default)]
    pub(super) attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize)]
pub(super) struct QuickReply {
    #[serde(default)]
    pub(super) payload: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Attachment {
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Postback {
    #[serde(default)]
    pub(super) mid: Option<String>,
    #[serde(default)]
    pub(super) title: Option<String>,
    #[serde(default)]
    pub(super) payload: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Reaction {
    #[serde(default)]
    pub(super) mid: Option<String>,
    #[serde(default)]
    pub(super) action: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Change<'a> {
    #[serde(default)]
    pub(super) field: Option<String>,
    #[serde(borrow, default)]
    pub(super) value: Option<&'a RawValue>,
}
