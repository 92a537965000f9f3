//! Everything spoken with Meta: the webhook payloads it sends (signature, parsing), the Graph API it answers on
//! (Send API, Facebook Login's token exchange, Pages and subscriptions), and its signed_request callbacks.

pub mod graph;
pub mod signed_request;
pub mod webhook;
