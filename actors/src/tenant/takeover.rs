//! A person at the business takes over a conversation, and gives it back:
//! - someone answers a customer in the Page Inbox or the Instagram Inbox: Meta sends the webhook an echo whose
//!   `app_id` is not this app's (the inbox's, or none);
//! - a customer asks for a person: the bot answers so, and once that answer is delivered passes the
//!   conversation to the inbox through the Handover Protocol;
//! - the inbox takes the conversation (`take_thread_control`), or passes it to another app.
//!
//! From then on the bot stays silent in that conversation until the client's pause has passed since, or
//! until the conversation is passed back to this app (the person marked it done). Holds are kept in storage
//! too (`StatusSink`), so a restart, an idle stop or a cluster handover does not make the bot talk over the
//! person.

use std::collections::HashMap;

use futures_util::future::{BoxFuture, Shared, join_all};

use super::dedup::Dedup;
use crate::domain::event::{Channel, EventKind, InboundEvent};
use crate::telemetry::stats::now_ms;

/// The Send API message ids this tenant remembers, to tell an echo of its own call that names no app (Meta
/// documents the app id on every echo of an app's own call; this covers an echo that lacks it).
const OWN_SENDS: usize = 1024;
/// Holds kept in memory before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// Meta's Page Inbox and Instagram Inbox apps (`meta-platform.md` §5.3): where a conversation goes when a
/// customer asks for a person.
pub(super) fn inbox_app(channel: Channel) -> &'static str {
    match channel {
        Channel::Messenger => "263902037430900",
        Channel::Instagram => "1217981644879628",
    }
}

/// What an event changes about who handles a conversation.
pub(super) enum Change {
    /// The bot stays silent with this person until then (unix ms).
    Hold(String, i64),
    /// The conversation is the bot's again.
    Release(String),
}

#[derive(Default)]
pub(super) struct Takeover {
    /// Person (PSID or IGSID) → until when (unix ms) the bot stays silent with them.
    held: HashMap<String, i64>,
    own_sends: Option<Dedup>,
    /// People who asked for a person, with the key of the event they asked in: the conversation is passed to
    /// the inbox once the bot's answer to that event is out.
    to_pass: HashMap<String, Option<String>>,
}

impl Takeover {
    /// Takes the holds storage has (at start, and at a reload: a conversation handed back in the portal is
    /// gone from storage).
    pub(super) fn load(&mut self, held: &[(String, i64)]) {
        self.held = held.iter().cloned().collect();
        self.to_pass.retain(|person, _| self.held.contains_key(person));
    }

    /// Meta accepted a reply of this tenant's with `message_id`.
    pub(super) fn sent(&mut self, message_id: &str) {
        self.own_sends.get_or_insert_with(|| Dedup::new(OWN_SENDS)).first_time(message_id.to_owned());
    }

    /// What `event` (one the bot does not answer) changes: a person's answer (an echo not sent by `own_app`,
    /// nor one of this tenant's own calls) holds the customer it went to; the conversation passed back to
    /// `own_app` releases the customer; passed to another app or taken by one holds them.
    pub(super) fn noticed(&mut self, event: &InboundEvent, own_app: &str, pause_ms: i64) -> Option<Change> {
        if let EventKind::ThreadControl { to_app } = &event.kind {
            if to_app.as_deref() == Some(own_app) {
                self.to_pass.remove(&event.sender);
                return self.held.remove(&event.sender).map(|_| Change::Release(event.sender.clone()));
            }
            let until = now_ms().max(event.timestamp).saturating_add(pause_ms);
            return self.hold(&event.sender, until).then(|| Change::Hold(event.sender.clone(), until));
        }
        let app = event.echo_app()?;
        if app == Some(own_app) {
            return None;
        }
        if app.is_none()
            && let (Some(mid), Some(own)) = (event.mid(), &self.own_sends)
            && own.contains(mid)
        {
            return None;
        }
        let until = event.timestamp.saturating_add(pause_ms);
        self.hold(&event.recipient, until).then(|| Change::Hold(event.recipient.clone(), until))
    }

    /// `person` asked for a person: the bot answers so, stays silent with them from then on, and passes the
    /// conversation to the inbox once that answer is delivered.
    pub(super) fn asked_for_person(&mut self, event: &InboundEvent, pause_ms: i64) -> Change {
        let (person, until) = (&event.sender, now_ms().saturating_add(pause_ms));
        self.hold(person, until);
        self.to_pass.insert(person.clone(), event.dedup_key());
        Change::Hold(person.clone(), until)
    }

    /// Whether the replies to `event` are the answer to asking for a person (the last one passes the
    /// conversation once delivered).
    pub(super) fn passes_after(&self, event: &InboundEvent) -> bool {
        self.to_pass.get(&event.sender).is_some_and(|key| *key == event.dedup_key())
    }

    /// The answer to asking for a person reached `person`: whether the conversation is to be passed to the
    /// inbox now (not if it was passed back meanwhile).
    pub(super) fn pass_now(&mut self, person: &str) -> bool {
        self.to_pass.remove(person).is_some()
    }

    /// Whether the bot must stay silent with `person` at `now_ms`.
    pub(super) fn is_held(&self, person: &str, now_ms: i64) -> bool {
        self.held.get(person).is_some_and(|until| *until > now_ms)
    }

    /// Extends the hold on `person` to `until`; false if it already ran at least that long.
    fn hold(&mut self, person: &str, until: i64) -> bool {
        if self.held.len() >= SWEEP_ABOVE {
            let now = now_ms();
            self.held.retain(|_, u| *u > now);
        }
        let at = self.held.entry(person.to_owned()).or_insert(i64::MIN);
        if *at >= until {
            return false;
        }
        *at = until;
        true
    }
}

/// A write telling storage who handles a conversation.
pub(super) type HoldWrite = Shared<BoxFuture<'static, ()>>;

/// The tenant's writes of who handles a conversation still in flight: a load of the tenant waits for them
/// before it reads storage (else the holds it loads would lack one just made, and replace it).
#[derive(Default)]
pub(super) struct HoldWrites(Vec<HoldWrite>);

impl HoldWrites {
    pub(super) fn push(&mut self, write: HoldWrite) {
        self.0.retain(|w| w.peek().is_none());
        self.0.push(write);
    }

    /// Done once every write in flight now is.
    pub(super) fn all_done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let writes = join_all(self.0.clone());
        async move {
            writes.await;
        }
    }
}
