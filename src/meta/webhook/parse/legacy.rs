//! The parser as it was before each entry and event were read on its own (frozen, test-only): the oracle for
//! "every event the old parser accepted is still parsed to the same result".

use serde::Deserialize;
use serde::de::IgnoredAny;
use switchboard_actors::{Channel, EventKind, InboundEvent, PageId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("unknown object {0:?} (expected page or instagram)")]
    UnknownObject(String),
    #[error("entry id {0:?} is not a page or Instagram account id")]
    BadEntryId(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    One(Payload),
    /// Some Instagram docs show the body wrapped in an array; accept a one-element array too.
    Many(Vec<Payload>),
}

#[derive(Deserialize)]
struct Payload {
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    time: i64,
    #[serde(default)]
    messaging: Vec<Item>,
    #[serde(default)]
    standby: Vec<Item>,
}

#[derive(Deserialize)]
struct Party {
    id: String,
}

#[derive(Deserialize)]
struct Item {
    sender: Option<Party>,
    recipient: Option<Party>,
    timestamp: Option<i64>,
    message: Option<Message>,
    postback: Option<Postback>,
    read: Option<IgnoredAny>,
    delivery: Option<IgnoredAny>,
    reaction: Option<Reaction>,
    referral: Option<IgnoredAny>,
    optin: Option<IgnoredAny>,
    message_edit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Message {
    mid: String,
    text: Option<String>,
    quick_reply: Option<QuickReply>,
    #[serde(default)]
    is_echo: bool,
    #[serde(default)]
    app_id: Option<serde_json::Value>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

#[derive(Deserialize)]
struct QuickReply {
    payload: String,
}

#[derive(Deserialize)]
struct Attachment {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Postback {
    mid: Option<String>,
    title: Option<String>,
    payload: Option<String>,
}

#[derive(Deserialize)]
struct Reaction {
    mid: Option<String>,
    action: Option<String>,
}

/// The events of one webhook body, in the order Meta listed them.
pub fn parse(body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    let payloads = match serde_json::from_slice::<Body>(body) {
        Ok(Body::One(p)) => vec![p],
        Ok(Body::Many(list)) => list,
        Err(e) => return Err(ParseError::Json(e.to_string())),
    };
    let mut events = Vec::new();
    for payload in payloads {
        let channel = match payload.object.as_str() {
            "page" => Channel::Messenger,
            "instagram" => Channel::Instagram,
            _ => return Err(ParseError::UnknownObject(payload.object)),
        };
        for entry in payload.entry {
            let account = PageId::parse(&entry.id).map_err(|_| ParseError::BadEntryId(entry.id.clone()))?;
            let items =
                entry.messaging.into_iter().map(|i| (i, false)).chain(entry.standby.into_iter().map(|i| (i, true)));
            for (item, standby) in items {
                events.push(event(&account, channel, entry.time, item, standby));
            }
        }
    }
    Ok(events)
}

fn event(account: &PageId, channel: Channel, entry_time: i64, item: Item, standby: bool) -> InboundEvent {
    let kind = if let Some(m) = item.message {
        EventKind::Message {
            mid: m.mid,
            text: m.text,
            quick_reply: m.quick_reply.map(|q| q.payload),
            is_echo: m.is_echo,
            app_id: m.app_id.map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned)),
            attachments: m.attachments.into_iter().map(|a| a.kind).collect(),
        }
    } else if let Some(p) = item.postback {
        EventKind::Postback { mid: p.mid, title: p.title, payload: p.payload }
    } else if item.read.is_some() {
        EventKind::Read
    } else if item.delivery.is_some() {
        EventKind::Delivery
    } else if let Some(r) = item.reaction {
        EventKind::Reaction { mid: r.mid, action: r.action }
    } else {
        let name = if item.referral.is_some() {
            "referral"
        } else if item.optin.is_some() {
            "optin"
        } else if item.message_edit.is_some() {
            "message_edit"
        } else {
            "unknown"
        };
        EventKind::Other { name: name.to_owned() }
    };
    InboundEvent {
        inbox_id: None,
        recovered: false,
        received: None,
        account_id: account.clone(),
        channel,
        sender: item.sender.map(|p| p.id).unwrap_or_default(),
        recipient: item.recipient.map(|p| p.id).unwrap_or_default(),
        timestamp: item.timestamp.unwrap_or(entry_time),
        standby,
        kind,
    }
}
