//! Meta's webhook payloads: checking `X-Hub-Signature-256` over the raw bytes, and parsing the body into
//! the engine's events. No I/O here; the HTTP handler calls these and hands the events to the router.

mod parse;
mod signature;

pub use parse::{ParseError, parse};
pub use signature::{SignatureError, WebhookSecrets};
