//! Webhook bodies as Meta sends them: compact JSON with non-ASCII escaped as lowercase `\uXXXX` and `/` as
//! `\/`, signed with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`, plus a generator
//! of Messenger and Instagram events for N pages and M users.

use std::io;

use hmac::{Hmac, KeyInit, Mac};
use rand::Rng as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::ser::Formatter;
use sha2::Sha256;

/// serde_json's compact output with Meta's escaping on top.
struct MetaFormatter;

impl Formatter for MetaFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '/' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            if c == '/' {
                writer.write_all(b"\\/")?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Serializes `value` exactly as Meta puts it on the wire.
pub fn to_meta_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, MetaFormatter);
    value.serialize(&mut ser).expect("webhook events always serialize");
    out
}

/// The `X-Hub-Signature-256` header value for `body`.
/// One Messenger text message from `sender` to `page`, as Meta encodes it.
pub fn text_message(page: &str, sender: &str, mid: &str, text: &str, timestamp: i64) -> Vec<u8> {
    to_meta_json(&Envelope {
        object: "page",
        entry: vec![Entry {
            id: page.to_owned(),
            time: timestamp,
            messaging: vec![Messaging {
                sender: Id { id: sender.to_owned() },
                recipient: Id { id: page.to_owned() },
                timestamp,
                event: Event::Message(Message {
                    mid: mid.to_owned(),
                    text: Some(text.to_owned()),
                    ..Message::default()
                }),
            }],
        }],
    })
}

pub fn signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// ---- payload shapes (meta-platform.md §2) --------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    pub object: &'static str,
    pub entry: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: String,
    pub time: i64,
    pub messaging: Vec<Messaging>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Messaging {
    pub sender: Id,
    pub recipient: Id,
    pub timestamp: i64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, Serialize)]
pub struct Id {
    pub id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Message(Message),
    Postback { mid: String, title: String, payload: String },
    Read(Read),
    Delivery { mids: Vec<String>, watermark: i64 },
    Reaction { mid: String, action: &'static str, reaction: &'static str, emoji: &'static str },
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Read {
    /// Messenger reads carry a watermark.
    Watermark { watermark: i64 },
    /// Instagram reads carry the mid that was seen.
    Mid { mid: String },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Message {
    pub mid: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_echo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quick_reply: Option<QuickReply>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuickReply {
    pub payload: String,
}

// ---- generator ----------------------------------------------------------------------------------

/// The kinds of event the generator can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Text,
    QuickReply,
    Postback,
    /// The echo of a reply this app sent (Meta's `app_id` is the app's own): most echoes are these.
    Echo,
    /// The echo of what a person at the business wrote in the Page Inbox (`app_id` is the Page Inbox's).
    PersonEcho,
    Read,
    Delivery,
    Reaction,
    /// An Instagram text message (only for pages with an Instagram account).
    Instagram,
}

/// A page to generate events for, with its Instagram account if it has one.
#[derive(Debug, Clone)]
pub struct GenPage {
    pub id: String,
    pub instagram: Option<String>,
}

/// Settings of the generator.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub pages: Vec<GenPage>,
    /// Users per page.
    pub users: usize,
    /// The kinds to draw from, uniformly.
    pub kinds: Vec<Kind>,
    /// Entries (pages) per body; above 1, one POST carries a batch.
    pub batch: usize,
    /// Fraction of bodies that repeat an earlier body exactly (a redelivery: same mids, same bytes).
    pub duplicate_rate: f64,
    pub seed: u64,
    /// The app whose own replies `Kind::Echo` echoes (its Meta app id).
    pub app_id: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            pages: vec![GenPage { id: "104711112233445".to_owned(), instagram: None }],
            users: 10,
            kinds: vec![Kind::Text],
            batch: 1,
            duplicate_rate: 0.0,
            seed: 1,
            app_id: crate::config::DEFAULT_APP_ID,
        }
    }
}

/// Produces signed-ready webhook bodies.
pub struct Generator {
    config: GenConfig,
    rng: StdRng,
    seq: u64,
    last: Option<Vec<u8>>,
    base_ms: i64,
}

const TEXTS: &[&str] = &[
    "Hi! Are you open on Sunday?",
    "Do you have the sofa in grey?",
    "Café table äöå 😀 50% off? <b>see https://example.com/sofa</b>",
    "What are your store hours?",
    "Can I pick it up today?",
];

impl Generator {
    pub fn new(config: GenConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self { config, rng, seq: 0, last: None, base_ms: crate::ids::unix_now_ms() }
    }

    /// The PSID of user `n` of `page` (stable for a page and index).
    pub fn psid(page: &str, n: usize) -> String {
        format!("7{:015}", fold(page, n))
    }

    /// The IGSID of user `n` of an Instagram account.
    pub fn igsid(account: &str, n: usize) -> String {
        format!("6{:015}", fold(account, n))
    }

    /// Every IGSID this generator can produce (to register them with the stand-in).
    pub fn instagram_users(&self) -> Vec<String> {
        self.config
            .pages
            .iter()
            .filter_map(|p| p.instagram.as_deref())
            .flat_map(|ig| (0..self.config.users).map(move |n| Self::igsid(ig, n)))
            .collect()
    }

    /// The next body.
    pub fn next_body(&mut self) -> Vec<u8> {
        if let Some(last) = &self.last
            && self.config.duplicate_rate > 0.0
            && self.rng.random_bool(self.config.duplicate_rate.min(1.0))
        {
            return last.clone();
        }
        let envelope = self.next_envelope();
        let body = to_meta_json(&envelope);
        self.last = Some(body.clone());
        body
    }

    /// The next event envelope (one body's worth).
    pub fn next_envelope(&mut self) -> Envelope {
        let kind = self.config.kinds[self.rng.random_range(0..self.config.kinds.len().max(1))];
        let instagram = kind == Kind::Instagram;
        let candidates: Vec<GenPage> =
            self.config.pages.iter().filter(|p| !instagram || p.instagram.is_some()).cloned().collect();
        let mut entries = Vec::new();
        for _ in 0..self.config.batch.max(1) {
            let page = &candidates[self.rng.random_range(0..candidates.len())];
            let user = self.rng.random_range(0..self.config.users.max(1));
            entries.push(self.entry(kind, page, user));
        }
        Envelope { object: if instagram { "instagram" } else { "page" }, entry: entries }
    }

    fn entry(&mut self, kind: Kind, page: &GenPage, user: usize) -> Entry {
        self.seq += 1;
        let ts = self.base_ms + self.seq as i64;
        let mid = format!("m_sim_{}_{}", self.config.seed, self.seq);
        let (account, person) = match (kind, &page.instagram) {
            (Kind::Instagram, Some(ig)) => (ig.clone(), Self::igsid(ig, user)),
            _ => (page.id.clone(), Self::psid(&page.id, user)),
        };
        let text = TEXTS[self.rng.random_range(0..TEXTS.len())].to_owned();
        let inbound = |event| Messaging {
            sender: Id { id: person.clone() },
            recipient: Id { id: account.clone() },
            timestamp: ts,
            event,
        };
        let messaging = match kind {
            Kind::Text | Kind::Instagram => {
                inbound(Event::Message(Message { mid, text: Some(text), ..Message::default() }))
            }
            Kind::QuickReply => inbound(Event::Message(Message {
                mid,
                text: Some("Yes please".to_owned()),
                quick_reply: Some(QuickReply { payload: "CONFIRM_DELIVERY_42".to_owned() }),
                ..Message::default()
            })),
            Kind::Postback => {
                inbound(Event::Postback { mid, title: "Store hours".to_owned(), payload: "STORE_HOURS".to_owned() })
            }
            Kind::Read => inbound(Event::Read(Read::Watermark { watermark: ts - 1 })),
            Kind::Delivery => inbound(Event::Delivery { mids: vec![format!("m_out_{}", self.seq)], watermark: ts - 1 }),
            Kind::Reaction => inbound(Event::Reaction {
                mid: format!("m_out_{}", self.seq),
                action: "react",
                reaction: "love",
                emoji: "\u{2764}",
            }),
            Kind::Echo => echo(&account, &person, ts, mid, self.config.app_id, "Thanks! We're open 9 to 9."),
            Kind::PersonEcho => echo(&account, &person, ts, mid, PAGE_INBOX_APP_ID, "Hi, this is Ana from the store"),
        };
        Entry { id: account, time: ts + 100, messaging: vec![messaging] }
    }
}

/// Meta's Page Inbox (Meta Business Suite) and Instagram Inbox apps: an echo naming one of them is what a
/// person at the business wrote (`meta-platform.md` §5.3).
pub const PAGE_INBOX_APP_ID: u64 = 263_902_037_430_900;
pub const INSTAGRAM_INBOX_APP_ID: u64 = 1_217_981_644_879_628;

/// The echo of a message `account` sent to `person` through the app `app_id`.
pub fn echo(account: &str, person: &str, ts: i64, mid: String, app_id: u64, text: &str) -> Messaging {
    Messaging {
        sender: Id { id: account.to_owned() },
        recipient: Id { id: person.to_owned() },
        timestamp: ts,
        event: Event::Message(Message {
            mid,
            is_echo: true,
            app_id: Some(app_id),
            text: Some(text.to_owned()),
            ..Message::default()
        }),
    }
}

/// A stable 15-digit number from an id and an index.
fn fold(id: &str, n: usize) -> u64 {
    let mut h: u64 = 1_469_598_103_934_665_603;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211);
    }
    (h % 1_000_000_000) * 1_000_000 + n as u64 % 1_000_000
}

#[cfg(test)]
mod tests;
