//! Switchboard's per-tenant engine.
//!
//! This crate owns what a tenant *is* at run time: its page identity and the decrypted access token it holds
//! in memory. It must never depend on an HTTP server or a SQL driver; storage and the Graph API reach it
//! through traits that the root `switchboard` crate implements, so everything here can be tested alone.

mod page;
mod token;

pub use page::{PageId, PageIdError};
pub use token::AccessToken;
