//! A tenant's bot: what answers an event. The client's keyword rules (`rules`) or its own bot over the relay
//! or a language model (both in the root crate) implement [`Responder`]; `split` cuts a reply to what each channel takes.

pub mod rules;
pub mod split;

use async_trait::async_trait;

use crate::domain::event::InboundEvent;

pub(crate) use rules::PersonFirst;
pub use rules::{Answered, AskForPerson, KeywordRule, Rules, RulesResponder};

/// Why a bot gave no answer. The event is finished as failed with this reason, which names the problem
/// whole (for people: no token, no customer's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotError {
    /// The bot could not be reached, or its address may not be used.
    #[error("{0}")]
    Unreachable(String),
    /// The bot answered, but not with replies Switchboard may send.
    #[error("{0}")]
    BadAnswer(String),
}

/// A bot's answer to one event: the replies (possibly none), and what the tenant does besides sending them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotAnswer {
    pub replies: Vec<String>,
    /// The bot asks for the conversation to go to a person, as when the customer asks for one: once the last
    /// reply is out, the conversation is passed to the Page Inbox and the bot stays silent there.
    pub hand_over: bool,
    /// How the event was answered, kept as its outcome when it is done (e.g. why the rules answered for the
    /// model). For people: never a customer's words, a token or a secret.
    pub note: Option<String>,
}

impl BotAnswer {
    /// Replies and nothing else.
    pub fn replies(replies: Vec<String>) -> Self {
        Self { replies, ..Self::default() }
    }
}

/// A tenant's bot: its answer to an event.
#[async_trait]
pub trait Responder: Send + Sync + 'static {
    async fn respond(&self, event: &InboundEvent) -> Result<BotAnswer, BotError>;

    /// How many events this bot answers at once, each on its own (a slow call for one conversation never
    /// holds up the others'). 1, the default, hands it batches of events instead, one batch at a time: for
    /// bots that answer at once (rules) or take many events in one call's time.
    fn parallel(&self) -> usize {
        1
    }
}
