//! A person at the business takes over a conversation: when someone answers a customer in the Page Inbox or
//! the Instagram Inbox, Meta sends the webhook an echo whose `app_id` is not this app's (the inbox's, or
//! none). From then on the bot stays silent in that conversation until the client's pause has passed since
//! the person's last message. Holds are kept in storage too (`StatusSink::person_handling`), so a restart,
//! an idle stop or a cluster handover does not make the bot talk over the person.

use std::collections::HashMap;

use crate::dedup::Dedup;
use crate::event::InboundEvent;
use crate::stats::now_ms;

/// The Send API message ids this tenant remembers, to tell an echo of its own call that names no app (Meta
/// documents the app id on every echo of an app's own call; this covers an echo that lacks it).
const OWN_SENDS: usize = 1024;
/// Holds kept in memory before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
pub(super) struct Takeover {
    /// Person (PSID or IGSID) → until when (unix ms) the bot stays silent with them.
    held: HashMap<String, i64>,
    own_sends: Option<Dedup>,
}

impl Takeover {
    /// Starts from the holds storage had when the tenant loaded.
    pub(super) fn load(&mut self, held: &[(String, i64)]) {
        for (person, until) in held {
            self.hold(person, *until);
        }
    }

    /// Meta accepted a reply of this tenant's with `message_id`.
    pub(super) fn sent(&mut self, message_id: &str) {
        self.own_sends.get_or_insert_with(|| Dedup::new(OWN_SENDS)).first_time(message_id.to_owned());
    }

    /// If `event` is a person's answer (an echo not sent by `own_app`, nor one of this tenant's own calls):
    /// the person it went to, and until when (unix ms) the bot stays silent with them.
    pub(super) fn person_answered(
        &mut self,
        event: &InboundEvent,
        own_app: &str,
        pause_ms: i64,
    ) -> Option<(String, i64)> {
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
        self.hold(&event.recipient, until).then(|| (event.recipient.clone(), until))
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
