//! The values the engine works with: Meta's webhook events, Page ids, inbox and outbox ids, access tokens.

pub mod event;
pub mod ids;
pub mod page;
pub mod token;
