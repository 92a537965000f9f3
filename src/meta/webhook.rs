//! Meta's webhook payloads: checking `X-Hub-Signature-256` over the raw bytes, and parsing the body into
//! the engine's events (and what Switchboard does not understand). No I/O here; the HTTP handler calls these
//! and hands the events to the router.

mod lenient;
mod parse;
mod signature;

pub use parse::{CHANGE_FIELDS, EVENT_KINDS, OBJECTS, ParseError, Parsed, RAW_LIMIT, Reason, Unhandled, parse};
pub use signature::{SignatureError, WebhookSecrets};
