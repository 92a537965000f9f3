//! The conversation view: a Page's recent conversations, and one conversation's messages, each with its state
//! in plain words. Read from the durable inbox and outbox (so retention applies to it as to them); only the
//! Page's client and operators see it, and nothing of a message reaches a log line or a metric label.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchboard_actors::{EventKind, InboundEvent};

use maud::{Markup, html};
use warp::http::StatusCode;
use warp::reply::Response;

use super::access::{Page, Signed, signed_in};
use super::chrome::{page_name, when};
use super::{Notice, PortalState};
use crate::http::PageError;
use crate::http::html;
use crate::store::{ConversationEntry, InboxStatus, Integration};

/// Conversations per page of the list.
const CONVERSATIONS_PER_PAGE: i64 = 20;
/// Exchanges per page of one conversation.
const ENTRIES_PER_PAGE: i64 = 30;

/// Who said something in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Customer,
    Bot,
    Person,
}

impl Who {
    pub fn label(self) -> &'static str {
        match self {
            Who::Customer => "Customer",
            Who::Bot => "Bot",
            Who::Person => "A person at your business",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            Who::Customer => "customer",
            Who::Bot => "bot",
            Who::Person => "person",
        }
    }
}

/// How a state reads: its banner class (`ok`, `warn`, `err`) or muted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Waiting,
    Failed,
    Quiet,
}

impl Tone {
    pub fn class(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Waiting => "warn",
            Tone::Failed => "err",
            Tone::Quiet => "quiet",
        }
    }

    /// The machine-readable state, for tests and anyone scripting the page.
    pub fn name(self) -> &'static str {
        match self {
            Tone::Ok => "answered",
            Tone::Waiting => "waiting",
            Tone::Failed => "failed",
            Tone::Quiet => "silent",
        }
    }
}

/// One thing said, and its state in plain words.
#[derive(Debug, Clone)]
pub struct Line {
    pub who: Who,
    pub text: String,
    pub at: Option<DateTime<Utc>>,
    pub state: String,
    pub tone: Tone,
}

/// One stored event and the replies to it: what the customer (or a person) said, then the bot's answers.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub id: i64,
    pub lines: Vec<Line>,
    pub channel: &'static str,
}

/// A conversation in the list.
pub struct Summary {
    pub customer: String,
    pub events: i64,
    pub last: Exchange,
    /// A person is handling it: the bot is silent until then.
    pub held_until: Option<DateTime<Utc>>,
}

/// The list page.
pub struct ListView {
    pub integration: Integration,
    pub conversations: Vec<Summary>,
    /// The cursor of the next (older) page, if there is one.
    pub older: Option<i64>,
    pub paged: bool,
    /// `inbox.mode = "memory"`: no message is kept, so there is nothing to list.
    pub kept: bool,
}

/// One conversation's page.
pub struct ConversationView {
    pub integration: Integration,
    pub customer: String,
    pub exchanges: Vec<Exchange>,
    pub older: Option<i64>,
    pub paged: bool,
    pub held_until: Option<DateTime<Utc>>,
    pub notice: Option<&'static str>,
}

/// `GET /portal/pages/{page}/conversations[?before=ID]`.
/// A page of conversations or of one conversation: older than `before` (an inbox id), or the newest.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Paging {
    before: Option<String>,
    notice: Option<String>,
}

pub(super) async fn list(page: &str, q: &Paging, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let i = g.owned_page(page, s).await?;
    let before = cursor(q)?;
    let list = s.store.conversations(i.page_id.as_str(), before, CONVERSATIONS_PER_PAGE + 1).await?;
    let mut rows = list.conversations;
    // A full page continues below its last conversation; a page the read window cut short, below the window.
    let older = more(&mut rows, CONVERSATIONS_PER_PAGE, |c| c.last.id).or(list.read_down_to);
    let holds = holds(s, &i).await?;
    // One entry per conversation: there is no earlier person's answer on it to explain a silence, so no pause.
    let conversations = rows
        .into_iter()
        .map(|c| Summary {
            held_until: holds.get(&c.customer_id).copied(),
            last: read_exchanges(std::slice::from_ref(&c.last), Duration::ZERO)
                .pop()
                .unwrap_or_else(|| unreadable(&c.last)),
            customer: c.customer_id,
            events: c.events,
        })
        .collect();
    Ok(list_page(&ListView { integration: i, conversations, older, paged: before.is_some(), kept: s.keeps_messages }))
}

/// `GET /portal/pages/{page}/conversations/{customer}[?before=ID]`.
pub(super) async fn one(page: &str, customer: &str, q: &Paging, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let i = g.owned_page(page, s).await?;
    let customer = super::people::person_id(customer)?;
    let before = cursor(q)?;
    let mut entries = s.store.conversation(i.page_id.as_str(), customer, before, ENTRIES_PER_PAGE + 1).await?;
    let older = more(&mut entries, ENTRIES_PER_PAGE, |e| e.id);
    if entries.is_empty() && before.is_none() {
        return Err(PageError::NotFound("No such conversation."));
    }
    let held_until = holds(s, &i).await?.get(customer).copied();
    let notice = super::people::handed_back_notice(&Notice { notice: q.notice.clone() });
    let exchanges = read_exchanges(&entries, pause(s, &i).await?);
    Ok(conversation_page(
        &g.session.csrf_token,
        &ConversationView {
            integration: i,
            customer: customer.to_owned(),
            exchanges,
            older,
            paged: before.is_some(),
            held_until,
            notice,
        },
    ))
}

/// `?before=` : a positive inbox id, or absent for the newest.
fn cursor(q: &Paging) -> Result<Option<i64>, PageError> {
    match &q.before {
        None => Ok(None),
        Some(raw) => match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Some(id)),
            _ => Err(PageError::BadRequest(format!("\"before\" must be a positive whole number, not {raw:?}."))),
        },
    }
}

/// Drops the look-ahead row fetched past `per_page`; the cursor of the next page if there was one.
fn more<T>(rows: &mut Vec<T>, per_page: i64, id: impl Fn(&T) -> i64) -> Option<i64> {
    let per_page = usize::try_from(per_page).unwrap_or(usize::MAX);
    if rows.len() <= per_page {
        return None;
    }
    rows.truncate(per_page);
    rows.last().map(id)
}

/// The conversations a person is handling on the Page, and until when.
async fn holds(s: &PortalState, i: &Integration) -> Result<HashMap<String, DateTime<Utc>>, PageError> {
    let now = crate::clock::now().timestamp_millis();
    let holds = s.store.conversation_holds(i.page_id.as_str(), now).await?;
    Ok(holds
        .into_iter()
        .filter_map(|(person, until)| Some((person, DateTime::from_timestamp_millis(until)?)))
        .collect())
}

/// How long a person's answer silences the bot for this Page's client.
async fn pause(s: &PortalState, i: &Integration) -> Result<Duration, PageError> {
    let settings = s.store.client_settings(i.client_id).await?;
    Ok(settings.and_then(|c| c.human_pause_secs).map_or(s.human_pause, |secs| Duration::from_secs(secs.into())))
}

/// Reads stored entries (newest first) into exchanges in plain words. A customer's message the bot did not
/// answer is explained by a person's answer before it, within the pause, when one is on the page read.
pub fn read_exchanges(entries: &[ConversationEntry], pause: Duration) -> Vec<Exchange> {
    let events: Vec<Option<InboundEvent>> = entries.iter().map(|e| serde_json::from_str(&e.event).ok()).collect();
    // What the bot sent, by Meta's message id: an echo of one of them is the bot's own, not a person's.
    let sent: HashSet<&str> = entries.iter().flat_map(|e| &e.replies).filter_map(|r| r.message_id.as_deref()).collect();
    let person_times: Vec<i64> = events
        .iter()
        .flatten()
        .filter(|e| e.echo_app().is_some() && e.mid().is_none_or(|mid| !sent.contains(mid)))
        .map(|e| e.timestamp)
        .collect();
    let pause_ms = i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
    let person_before = |t: i64| person_times.iter().any(|&p| p <= t && t - p < pause_ms);
    entries
        .iter()
        .zip(&events)
        .filter_map(|(entry, event)| match event {
            None => Some(unreadable(entry)),
            Some(e) if e.echo_app().is_some() && e.mid().is_some_and(|mid| sent.contains(mid)) => None,
            Some(e) => Some(exchange(entry, e, person_before(e.timestamp))),
        })
        .collect()
}

fn unreadable(entry: &ConversationEntry) -> Exchange {
    Exchange {
        id: entry.id,
        channel: "",
        lines: vec![Line {
            who: Who::Customer,
            text: "(a message this version of Switchboard cannot read)".to_owned(),
            at: Some(entry.received_at),
            state: String::new(),
            tone: Tone::Quiet,
        }],
    }
}

fn exchange(entry: &ConversationEntry, e: &InboundEvent, person_was_answering: bool) -> Exchange {
    let at = DateTime::from_timestamp_millis(e.timestamp).or(Some(entry.received_at));
    let (channel, inbox) = match e.channel {
        switchboard_actors::Channel::Messenger => ("Messenger", "the Page Inbox"),
        switchboard_actors::Channel::Instagram => ("Instagram", "the Instagram Inbox"),
    };
    if e.echo_app().is_some() {
        let line = Line {
            who: Who::Person,
            text: said(&e.kind),
            at,
            state: format!("Sent from {inbox}: the bot stays silent in this conversation for a while"),
            tone: Tone::Quiet,
        };
        return Exchange { id: entry.id, channel, lines: vec![line] };
    }
    let sent = entry.replies.iter().all(|r| r.message_id.is_some() || r.sent_at.is_some());
    let (state, tone) = match entry.status {
        InboxStatus::Pending if entry.replies.is_empty() => ("Waiting for the bot's answer".to_owned(), Tone::Waiting),
        InboxStatus::Pending => ("Being answered".to_owned(), Tone::Waiting),
        InboxStatus::Failed => (
            format!("Not answered: {}", entry.reason.as_deref().unwrap_or("the reason was not recorded")),
            Tone::Failed,
        ),
        _ if e.standby => (format!("Not answered by the bot: {inbox} had this conversation"), Tone::Quiet),
        _ if entry.replies.is_empty() && person_was_answering => {
            ("Not answered by the bot: a person was handling this conversation".to_owned(), Tone::Quiet)
        }
        _ if entry.replies.is_empty() => (
            "Not answered by the bot: a person was handling this conversation, or your bot has no answer for it"
                .to_owned(),
            Tone::Quiet,
        ),
        // How it was answered, when the bot noted it (AI answers: the model, or the rules in its place).
        _ if sent => (entry.reason.as_deref().map_or_else(|| "Answered".to_owned(), capitalized), Tone::Ok),
        _ => ("Some of the answer was not sent".to_owned(), Tone::Failed),
    };
    let mut lines = vec![Line { who: Who::Customer, text: said(&e.kind), at, state, tone }];
    lines.extend(entry.replies.iter().map(|r| {
        let (state, tone) = if r.sent_at.is_some() || r.message_id.is_some() {
            ("Sent".to_owned(), Tone::Ok)
        } else if entry.status == InboxStatus::Pending {
            ("Waiting to be sent".to_owned(), Tone::Waiting)
        } else {
            ("Not sent".to_owned(), Tone::Failed)
        };
        Line { who: Who::Bot, text: r.body.clone(), at: r.sent_at, state, tone }
    }));
    Exchange { id: entry.id, channel, lines }
}

/// `answered by AI (12 tokens)` → `Answered by AI (12 tokens)`.
fn capitalized(note: &str) -> String {
    let mut chars = note.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// What a message or postback said, in words.
fn said(kind: &EventKind) -> String {
    match kind {
        EventKind::Message { text: Some(text), .. } if !text.is_empty() => text.clone(),
        EventKind::Message { attachments, .. } if !attachments.is_empty() => {
            format!("(sent {})", attachments.join(", "))
        }
        EventKind::Message { .. } => "(an empty message)".to_owned(),
        EventKind::Postback { title, payload, .. } => match (title, payload) {
            (Some(title), _) => format!("(pressed \u{201c}{title}\u{201d})"),
            (None, Some(payload)) => format!("(pressed a button: {payload})"),
            (None, None) => "(pressed a button)".to_owned(),
        },
        _ => String::new(),
    }
}

/// A Page's recent conversations, newest activity first.
fn list_page(v: &ListView) -> Response {
    let i = &v.integration;
    html::page(
        StatusCode::OK,
        "Conversations",
        html! {
            h1 { "Conversations on " (page_name(i)) }
            p { "What your customers wrote most recently and what was answered, for as long as Switchboard keeps messages. Open one to read it all." }
            @if !v.kept {
                p class="banner warn" id="not-kept" { "This Switchboard keeps no messages (its inbox runs in memory), so there are no conversations to show. An operator can change that (inbox.mode = \"durable\")." }
            } @else if v.conversations.is_empty() {
                p id="no-conversations" { @if v.paged { "No older conversations." } @else { "No conversations yet." } }
            }
            @for c in &v.conversations {
                section class="card conversation" data-customer=(c.customer) {
                    h3 class="tight" {
                        a href={"/portal/pages/" (i.page_id) "/conversations/" (c.customer)} class="open" { "Customer " (c.customer) }
                        " " small { "(" (c.events) " message" @if c.events != 1 { "s" } ")" }
                    }
                    @if let Some(until) = c.held_until { p class="banner warn handled" { (held_words(until)) } }
                    (draw_exchange(&c.last))
                }
            }
            p {
                @if let Some(older) = v.older { a href={"?before=" (older)} id="older" { "Older conversations" } " · " }
                @if v.paged { a href={"/portal/pages/" (i.page_id) "/conversations"} { "Newest" } " · " }
                a href="/portal" { "Back to your Pages" }
            }
        },
    )
}

/// One conversation, newest first, with "Hand back to the bot" while a person is handling it.
fn conversation_page(csrf: &str, v: &ConversationView) -> Response {
    let i = &v.integration;
    html::page(
        StatusCode::OK,
        "Conversation",
        html! {
            h1 { "Customer " (v.customer) }
            p { "On " (page_name(i)) ". Newest first." }
            @if let Some(notice) = v.notice { p class="banner ok" id="notice" { (notice) } }
            @if let Some(until) = v.held_until {
                div class="banner warn handled" {
                    (held_words(until))
                    form method="post" action={"/portal/pages/" (i.page_id) "/people/" (v.customer) "/release"} {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="back" value="conversation";
                        button type="submit" class="hand-back" { "Hand back to the bot" }
                    }
                }
            } @else {
                p class="banner ok" id="bot-handles" { "The bot answers this conversation." }
            }
            @if v.exchanges.is_empty() { p { "No older messages." } }
            @for x in &v.exchanges {
                section class="card exchange" data-id=(x.id) { (draw_exchange(x)) }
            }
            p {
                @if let Some(older) = v.older { a href={"?before=" (older)} id="older" { "Older messages" } " · " }
                @if v.paged { a href={"/portal/pages/" (i.page_id) "/conversations/" (v.customer)} { "Newest" } " · " }
                a href={"/portal/pages/" (i.page_id) "/conversations"} { "All conversations" }
            }
        },
    )
}

fn held_words(until: DateTime<Utc>) -> String {
    format!("A person is handling this conversation: the bot is silent until {}.", when(until))
}

/// One exchange: what was said, by whom, when, and its state in plain words.
fn draw_exchange(x: &Exchange) -> Markup {
    html! {
        @for line in &x.lines {
            div class={"line " (line.who.class())} data-state=(line.tone.name()) {
                p class="tight" {
                    strong { (line.who.label()) }
                    @if let Some(at) = line.at { " · " small { (when(at)) } }
                    @if !x.channel.is_empty() && line.who == Who::Customer { " · " small { (x.channel) } }
                }
                p class="said tight" { (line.text) }
                @if !line.state.is_empty() { p class={"state tight " (line.tone.class())} { (line.state) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ConversationReply;

    const PAGE: &str = "104711112233445";
    const INBOX_APP: &str = "263902037430900";

    fn event(json: serde_json::Value) -> String {
        let mut base = serde_json::json!({
            "account_id": PAGE, "channel": "messenger", "sender": "7001", "recipient": PAGE,
            "timestamp": 1_000_000, "standby": false,
        });
        base.as_object_mut().unwrap().extend(json.as_object().unwrap().clone());
        base.to_string()
    }

    fn text(mid: &str, said: &str, ts: i64) -> String {
        event(serde_json::json!({"timestamp": ts, "kind": {"type": "message", "mid": mid, "text": said,
            "quick_reply": null, "is_echo": false, "attachments": []}}))
    }

    fn echo(mid: &str, said: &str, ts: i64, app: &str) -> String {
        event(serde_json::json!({"sender": PAGE, "recipient": "7001", "timestamp": ts, "kind": {"type": "message",
            "mid": mid, "text": said, "quick_reply": null, "is_echo": true, "app_id": app, "attachments": []}}))
    }

    fn entry(id: i64, event: String, status: &str, replies: Vec<ConversationReply>) -> ConversationEntry {
        ConversationEntry {
            id,
            event,
            status: InboxStatus::parse(status).unwrap(),
            reason: (status == "failed").then(|| "the bot failed: timed out".to_owned()),
            received_at: DateTime::from_timestamp(1_000, 0).unwrap(),
            replies,
        }
    }

    fn reply(body: &str, message_id: Option<&str>) -> ConversationReply {
        ConversationReply {
            body: body.to_owned(),
            message_id: message_id.map(str::to_owned),
            sent_at: message_id.map(|_| DateTime::from_timestamp(1_001, 0).unwrap()),
        }
    }

    fn states(x: &Exchange) -> Vec<(Who, &str, Tone)> {
        x.lines.iter().map(|l| (l.who, l.text.as_str(), l.tone)).collect()
    }

    #[test]
    fn each_state_reads_in_plain_words() {
        let pause = Duration::from_secs(1800);
        let read = read_exchanges(
            &[
                entry(5, text("m5", "anyone?", 9_000_000), "pending", vec![]),
                entry(4, text("m4", "price?", 8_000_000), "failed", vec![]),
                entry(
                    3,
                    text("m3", "hours?", 7_000_000),
                    "done",
                    vec![reply("9 to 9", Some("m_r3")), reply("bye", None)],
                ),
                entry(2, text("m2", "hi", 6_000_000), "done", vec![reply("hello", Some("m_r2"))]),
                entry(1, "not json".to_owned(), "done", vec![]),
            ],
            pause,
        );
        assert_eq!(states(&read[0]), [(Who::Customer, "anyone?", Tone::Waiting)]);
        assert_eq!(read[0].lines[0].state, "Waiting for the bot's answer");
        assert_eq!(read[1].lines[0].state, "Not answered: the bot failed: timed out");
        assert_eq!(
            states(&read[2]),
            [(Who::Customer, "hours?", Tone::Failed), (Who::Bot, "9 to 9", Tone::Ok), (Who::Bot, "bye", Tone::Failed)]
        );
        assert_eq!(read[2].lines[0].state, "Some of the answer was not sent");
        assert_eq!(states(&read[3]), [(Who::Customer, "hi", Tone::Ok), (Who::Bot, "hello", Tone::Ok)]);
        assert!(read[4].lines[0].text.contains("cannot read"));
    }

    #[test]
    fn an_answer_says_how_it_was_answered_when_the_bot_noted_it() {
        let mut noted = entry(1, text("m1", "hours?", 1_000), "done", vec![reply("9 to 9", Some("m_r1"))]);
        noted.reason = Some("answered by the rules: the model did not answer within 10 s".to_owned());
        let read = read_exchanges(&[noted], Duration::from_secs(60));
        assert_eq!(read[0].lines[0].state, "Answered by the rules: the model did not answer within 10 s");
        assert_eq!(read[0].lines[0].tone, Tone::Ok);
    }

    #[test]
    fn a_message_the_instagram_inbox_had_says_so() {
        let standby = event(serde_json::json!({"channel": "instagram", "standby": true, "kind": {"type": "message",
            "mid": "m1", "text": "still there?", "quick_reply": null, "is_echo": false, "attachments": ["image"]}}));
        let read = read_exchanges(&[entry(1, standby, "done", vec![])], Duration::from_secs(60));
        assert_eq!(read[0].channel, "Instagram");
        assert_eq!(read[0].lines[0].state, "Not answered by the bot: the Instagram Inbox had this conversation");
    }

    #[test]
    fn a_person_explains_silence_within_the_pause_and_the_bots_own_echo_is_not_a_person() {
        let pause = Duration::from_secs(60);
        let read = read_exchanges(
            &[
                entry(6, text("m6", "later", 200_000), "done", vec![]),
                entry(5, text("m5", "soon after", 100_000), "done", vec![]),
                entry(4, echo("m_person", "Ana here", 90_000, INBOX_APP), "done", vec![]),
                entry(3, echo("m_r1", "hello", 50_000, "1234"), "done", vec![]),
                entry(1, text("m1", "hi", 40_000), "done", vec![reply("hello", Some("m_r1"))]),
            ],
            pause,
        );
        let texts: Vec<&str> = read.iter().map(|x| x.lines[0].text.as_str()).collect();
        assert_eq!(texts, ["later", "soon after", "Ana here", "hi"], "the echo of the bot's reply is not shown twice");
        assert!(read[0].lines[0].state.contains("or your bot has no answer"), "past the pause: not explained");
        assert_eq!(read[1].lines[0].state, "Not answered by the bot: a person was handling this conversation");
        assert_eq!(read[2].lines[0].who, Who::Person);
    }
}
