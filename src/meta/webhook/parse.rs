//! Parsing a webhook body into events, each entry and each event on its own.
//!
//! A body whose signature is valid comes from Meta, and refusing it makes Meta redeliver the whole batch for
//! up to 36 hours (and can get the app's webhooks disabled), so only a body that is not JSON at all is an
//! error. Every entry and every item is read on its own: times and ids in any form Meta sends them
//! (`lenient`), missing or null optional fields as absent. What cannot be understood — an unknown `object`,
//! an unknown event kind, a `changes` item, a malformed entry or event — does not cost the rest of the
//! body: it comes back as [`Unhandled`], with a bounded kind label, the reason, where it was, and its raw
//! JSON, for the caller to count and keep. Reasons name fields and positions, never a value, so no token and
//! no customer's words reach a log line or a metric through them.

use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_actors::{Channel, EventKind, InboundEvent, PageId};

use self::wire::{Change, Entry, Item, Payload, WholePayload};

/// Only a body that is not JSON is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not JSON")]
    NotJson,
}

/// What a body held: the events Switchboard understands, in the order Meta listed them, and what it does not.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<InboundEvent>,
    pub unhandled: Vec<Unhandled>,
}

/// A part of a body Switchboard does not understand, acknowledged and kept for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhandled {
    /// The body's `object` (`page`, `instagram`, one of [`OBJECTS`], or `other`).
    pub object: &'static str,
    /// The event kind, `changes` field or object it is (a label from a fixed vocabulary, or `other`).
    pub kind: &'static str,
    pub reason: Reason,
    /// Where it was and what is wrong with it (positions and field names only, never a value).
    pub detail: String,
    /// The entry's id as sent, if it had a readable one.
    pub account: Option<String>,
    /// The smallest unit that could not be understood (the item, the change, the entry or the body), as sent.
    pub raw: String,
}

/// Why something in a body was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `object` is not page or instagram.
    UnknownObject,
    /// JSON, but no `entry` list to read.
    NoEntries,
    /// An entry that is not an object of the expected shape.
    MalformedEntry,
    /// An entry id that is not a Page or Instagram account id.
    BadEntryId,
    /// A messaging item of a kind Switchboard does not handle.
    UnknownEvent,
    /// A messaging item of a known kind with a field missing or of the wrong type.
    MalformedEvent,
    /// A `changes` item (feed, comments, mentions, …): Switchboard handles only messaging.
    Change,
}

impl Reason {
    /// The metric label and stored reason.
    pub fn label(self) -> &'static str {
        match self {
            Reason::UnknownObject => "unknown_object",
            Reason::NoEntries => "no_entries",
            Reason::MalformedEntry => "malformed_entry",
            Reason::BadEntryId => "bad_entry_id",
            Reason::UnknownEvent => "unknown_event",
            Reason::MalformedEvent => "malformed_event",
            Reason::Change => "change",
        }
    }
}

/// Objects Meta's webhooks name, besides page and instagram (a label each; anything else is `other`).
pub const OBJECTS: &[&str] = &[
    "user",
    "permissions",
    "application",
    "whatsapp_business_account",
    "payments",
    "homepage",
    "certificate_transparency",
];

/// Messaging item kinds Switchboard does not handle (a label each; anything else is `other`).
pub const EVENT_KINDS: &[&str] = &[
    "request_thread_control",
    "app_roles",
    "policy_enforcement",
    "policy-enforcement",
    "account_linking",
    "messaging_feedback",
    "response_feedback",
    "game_play",
    "checkout_update",
    "payment",
    "pre_checkout",
    "messaging_handovers",
    "send_cart",
];

/// `changes` fields (a label each; anything else is `other`).
pub const CHANGE_FIELDS: &[&str] = &[
    "feed",
    "mention",
    "mentions",
    "ratings",
    "conversations",
    "leadgen",
    "messages",
    "comments",
    "live_comments",
    "story_insights",
    "message_reactions",
    "messaging_postbacks",
    "messaging_seen",
    "messaging_referral",
    "standby",
];

/// The label for `name` from `vocabulary`, or `other`: metric labels stay a fixed, small set.
fn label(vocabulary: &'static [&'static str], name: &str) -> &'static str {
    vocabulary.iter().find(|known| **known == name).copied().unwrap_or("other")
}

/// The longest raw text kept for one unhandled part.
pub const RAW_LIMIT: usize = 64 * 1024;

/// The events of one webhook body, in the order Meta listed them, and what could not be understood.
///
/// A body whose every part is understood (nearly all of them) is read in one pass; one with anything odd in it
/// is read again part by part, so each part that is not understood is set aside with its raw JSON.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    match whole(body) {
        Some(events) => Ok(Parsed { events, unhandled: Vec::new() }),
        None => part_by_part(body),
    }
}

/// Reads a body one part at a time, setting aside what is not understood.
fn part_by_part(body: &[u8]) -> Result<Parsed, ParseError> {
    let top: &RawValue = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
    let mut parsed = Parsed::default();
    let text = top.get();
    if text.starts_with('[') {
        // Some Instagram docs show the body wrapped in an array.
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(payloads) => {
                for (i, payload) in payloads.into_iter().enumerate() {
                    payload_of(payload, Some(i), &mut parsed);
                }
            }
            Err(_) => parsed.unhandled.push(body_unhandled(text, "the body's list could not be read")),
        }
    } else {
        payload_of(top, None, &mut parsed);
    }
    Ok(parsed)
}

/// The events of a body in one pass, or `None` if anything in it is not understood (or it is not JSON).
fn whole(body: &[u8]) -> Option<Vec<InboundEvent>> {
    let payload = serde_json::from_slice::<WholePayload>(body).ok()?;
    let channel = match payload.object.as_deref() {
        Some("page") => Channel::Messenger,
        Some("instagram") => Channel::Instagram,
        _ => return None,
    };
    let mut events = Vec::new();
    for entry in payload.entry? {
        if entry.changes.is_some_and(|c| !c.is_empty()) {
            return None;
        }
        let account = PageId::parse(&entry.id?.0).ok()?;
        let entry_time = entry.time.map_or(0, |t| t.0);
        let items = entry.messaging.unwrap_or_default().into_iter().map(|i| (i, false));
        for (item, standby) in items.chain(entry.standby.unwrap_or_default().into_iter().map(|i| (i, true))) {
            events.push(event(&account, channel, entry_time, item, standby).ok()?);
        }
    }
    Some(events)
}

fn body_unhandled(raw: &str, detail: &str) -> Unhandled {
    Unhandled {
        object: "other",
        kind: "body",
        reason: Reason::NoEntries,
        detail: detail.to_owned(),
        account: None,
        raw: raw.to_owned(),
    }
}

fn payload_of(raw: &RawValue, index: Option<usize>, parsed: &mut Parsed) {
    let at = index.map(|i| format!("payload {i}: ")).unwrap_or_default();
    let Ok(payload) = serde_json::from_str::<Payload<'_>>(raw.get()) else {
        parsed.unhandled.push(body_unhandled(raw.get(), &format!("{at}not an object with an entry list")));
        return;
    };
    let (channel, object) = match payload.object.as_ref().and_then(serde_json::Value::as_str) {
        Some("page") => (Some(Channel::Messenger), "page"),
        Some("instagram") => (Some(Channel::Instagram), "instagram"),
        Some(other) => (None, label(OBJECTS, other)),
        None => (None, "other"),
    };
    let Some(entries) = payload.entry else {
        let mut unhandled = body_unhandled(raw.get(), &format!("{at}no entry list"));
        unhandled.object = object;
        parsed.unhandled.push(unhandled);
        return;
    };
    for (e, entry) in entries.into_iter().enumerate() {
        let where_ = format!("{at}entry {e}");
        match channel {
            Some(channel) => entry_of(entry, channel, object, &where_, parsed),
            None => parsed.unhandled.push(Unhandled {
                object,
                kind: object,
                reason: Reason::UnknownObject,
                detail: format!("{where_}: object {object:?} is not page or instagram"),
                account: serde_json::from_str::<Entry<'_>>(entry.get())
                    .ok()
                    .and_then(|e| e.id)
                    .map(|id| shortened(id.0)),
                raw: entry.get().to_owned(),
            }),
        }
    }
}

fn entry_of(raw: &RawValue, channel: Channel, object: &'static str, where_: &str, parsed: &mut Parsed) {
    let entry = match serde_json::from_str::<Entry<'_>>(raw.get()) {
        Ok(entry) => entry,
        Err(_) => {
            parsed.unhandled.push(Unhandled {
                object,
                kind: "entry",
                reason: Reason::MalformedEntry,
                detail: format!("{where_}: {}", located::<Entry<'_>>(raw.get())),
                account: None,
                raw: raw.get().to_owned(),
            });
            return;
        }
    };
    let account_raw = entry.id.map(|id| id.0);
    let account = match account_raw.as_deref().map(PageId::parse) {
        Some(Ok(account)) => account,
        _ => {
            parsed.unhandled.push(Unhandled {
                object,
                kind: "entry",
                reason: Reason::BadEntryId,
                detail: format!("{where_}: id is missing or not a Page or Instagram account id"),
                account: account_raw.map(shortened),
                raw: raw.get().to_owned(),
            });
            return;
        }
    };
    let entry_time = entry.time.map_or(0, |t| t.0);
    let items = entry.messaging.unwrap_or_default().into_iter().map(|i| (i, false, "messaging"));
    let items = items.chain(entry.standby.unwrap_or_default().into_iter().map(|i| (i, true, "standby")));
    for (i, (item, standby, list)) in items.enumerate() {
        let where_ = format!("{where_}, {list} item {i}");
        item_of(item, &account, channel, entry_time, standby, object, &where_, parsed);
    }
    for (c, change) in entry.changes.unwrap_or_default().into_iter().enumerate() {
        let where_ = format!("{where_}, change {c}");
        change_of(change, &account, channel, entry_time, object, &where_, parsed);
    }
}

#[allow(clippy::too_many_arguments)]
fn item_of(
    raw: &RawValue,
    account: &PageId,
    channel: Channel,
    entry_time: i64,
    standby: bool,
    object: &'static str,
    where_: &str,
    parsed: &mut Parsed,
) {
    let unhandled = |reason, kind, detail: String| Unhandled {
        object,
        kind,
        reason,
        detail: format!("{where_}: {detail}"),
        account: Some(account.to_string()),
        raw: raw.get().to_owned(),
    };
    let item = match serde_json::from_str::<Item>(raw.get()) {
        Ok(item) => item,
        Err(_) => {
            let kind = item_kind(raw.get());
            parsed.unhandled.push(unhandled(Reason::MalformedEvent, kind, located::<Item>(raw.get())));
            return;
        }
    };
    match event(account, channel, entry_time, item, standby) {
        Ok(event) => parsed.events.push(event),
        Err(Problem::Unknown) => {
            let kind = item_kind(raw.get());
            parsed.unhandled.push(unhandled(Reason::UnknownEvent, kind, format!("event kind {kind:?} is not handled")));
        }
        Err(Problem::Missing(field, kind)) => {
            parsed.unhandled.push(unhandled(Reason::MalformedEvent, kind, format!("{field} is missing")));
        }
    }
}

/// A `changes` item: a Page or Instagram field change. One whose field is `messages` and whose value is a
/// messaging item (how some Instagram set-ups deliver messages) is read as that event; the rest are kept.
fn change_of(
    raw: &RawValue,
    account: &PageId,
    channel: Channel,
    entry_time: i64,
    object: &'static str,
    where_: &str,
    parsed: &mut Parsed,
) {
    let change = serde_json::from_str::<Change<'_>>(raw.get()).ok();
    let field = change.as_ref().and_then(|c| c.field.as_deref()).unwrap_or_default();
    if field == "messages"
        && let Some(value) = change.as_ref().and_then(|c| c.value)
        && let Ok(item) = serde_json::from_str::<Item>(value.get())
        && let Ok(event) = event(account, channel, entry_time, item, false)
    {
        parsed.events.push(event);
        return;
    }
    let kind = label(CHANGE_FIELDS, field);
    parsed.unhandled.push(Unhandled {
        object,
        kind,
        reason: Reason::Change,
        detail: format!("{where_}: changes field {kind:?} is not handled"),
        account: Some(account.to_string()),
        raw: raw.get().to_owned(),
    });
}

/// An id as sent, cut to 64 characters and without control characters (a NUL cannot be stored in a text
/// column, a newline would forge log lines): what is kept and logged of an id that may not be one.
fn shortened(id: String) -> String {
    id.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Why an item that parsed is still not an event.
enum Problem {
    /// No key of a kind Switchboard handles.
    Unknown,
    /// A field an event of that kind needs: (field, kind).
    Missing(&'static str, &'static str),
}

fn event(
    account: &PageId,
    channel: Channel,
    entry_time: i64,
    item: Item,
    standby: bool,
) -> Result<InboundEvent, Problem> {
    let kind = if let Some(m) = item.message {
        if m.is_deleted.is_some_and(|d| d.0) {
            // The customer unsent it: nothing to answer.
            EventKind::Other { name: "message_deleted".to_owned() }
        } else {
            EventKind::Message {
                mid: m.mid.ok_or(Problem::Missing("message.mid", "message"))?,
                text: m.text,
                quick_reply: m.quick_reply.and_then(|q| q.payload),
                is_echo: m.is_echo.is_some_and(|e| e.0),
                app_id: m.app_id.map(|a| a.0),
                attachments: m
                    .attachments
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| a.kind.unwrap_or_else(|| "unknown".to_owned()))
                    .collect(),
            }
        }
    } else if let Some(p) = item.postback {
        EventKind::Postback { mid: p.mid, title: p.title, payload: p.payload }
    } else if item.read.is_some() {
        EventKind::Read
    } else if item.delivery.is_some() {
        EventKind::Delivery
    } else if let Some(r) = item.reaction {
        EventKind::Reaction { mid: r.mid, action: r.action }
    } else if item.referral.is_some() {
        EventKind::Other { name: "referral".to_owned() }
    } else if item.optin.is_some() {
        EventKind::Other { name: "optin".to_owned() }
    } else if item.message_edit.is_some() {
        EventKind::Other { name: "message_edit".to_owned() }
    } else if let Some(pass) = item.pass_thread_control {
        EventKind::ThreadControl {
            to_app: Some(
                pass.new_owner_app_id
                    .ok_or(Problem::Missing("pass_thread_control.new_owner_app_id", "pass_thread_control"))?
                    .0,
            ),
        }
    } else if let Some(take) = item.take_thread_control {
        // The app that took it: this app taking a conversation back (the portal's "Hand back to the bot") is
        // the bot's again; another app (the inbox), or one Meta does not name, holds it.
        EventKind::ThreadControl { to_app: take.new_owner_app_id.map(|id| id.0) }
    } else {
        return Err(Problem::Unknown);
    };
    Ok(InboundEvent {
        inbox_id: None,
        recovered: false,
        received: None,
        account_id: account.clone(),
        channel,
        sender: item.sender.and_then(|p| p.id).map(|id| id.0).unwrap_or_default(),
        recipient: item.recipient.and_then(|p| p.id).map(|id| id.0).unwrap_or_default(),
        timestamp: item.timestamp.map_or(entry_time, |t| t.0),
        standby,
        kind,
    })
}

/// The kind label of an item: its first key that names an event kind (cold path: parses the item again).
fn item_kind(raw: &str) -> &'static str {
    const HANDLED: &[&str] = &[
        "message",
        "postback",
        "read",
        "delivery",
        "reaction",
        "referral",
        "optin",
        "message_edit",
        "pass_thread_control",
        "take_thread_control",
    ];
    let Ok(map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw) else { return "other" };
    let keys = || map.keys().filter(|k| !matches!(k.as_str(), "sender" | "recipient" | "timestamp"));
    if let Some(known) = keys().find_map(|k| HANDLED.iter().find(|h| **h == k.as_str()).copied()) {
        return known;
    }
    keys().map(|k| label(EVENT_KINDS, k)).find(|l| *l != "other").unwrap_or("other")
}

/// Where parsing `raw` as `T` fails and how, in words that name the field but never its value (serde's own
/// messages quote the offending value, which may be a customer's text).
fn located<'a, T: Deserialize<'a>>(raw: &'a str) -> String {
    let mut de = serde_json::Deserializer::from_str(raw);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => "could not be read".to_owned(),
        Err(err) => {
            let path = err.path().to_string();
            let message = err.inner().to_string();
            let what = if let Some(rest) = message.strip_prefix("missing field ") {
                format!("missing field {}", rest.split_whitespace().next().unwrap_or_default())
            } else if message.starts_with("invalid type") {
                "has the wrong type".to_owned()
            } else if message.starts_with("invalid value") || message.starts_with("unknown variant") {
                "has an invalid value".to_owned()
            } else if message.starts_with("invalid length") {
                "has the wrong length".to_owned()
            } else {
                "is malformed".to_owned()
            };
            if path == "." { format!("it {what}") } else { format!("field {path} {what}") }
        }
    }
}

mod wire;

#[cfg(test)]
mod legacy;
#[cfg(test)]
mod tests;
