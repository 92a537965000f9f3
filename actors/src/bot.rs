//! A tenant's bot: what answers an event. The client's keyword rules (`rules`) or its own bot over the relay
//! (in the root crate) implement [`Responder`]; `split` cuts a reply to what each channel takes.

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

/// A tenant's bot: the replies to an event (possibly none).
#[async_trait]
pub trait Responder: Send + Sync + 'static {
    async fn respond(&self, event: &InboundEvent) -> Result<Vec<String>, BotError>;
}
