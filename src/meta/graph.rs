//! Speaking to Meta's Graph API: one shared HTTP client (keep-alive, timeouts), the base URL and API
//! version from config, `appsecret_proof` on every call, and the parsing of Meta's error envelope and usage
//! headers. The access token travels in the request only: it is never logged, and no error this module
//! returns carries it (reqwest errors are stripped of their URL, which holds it).

mod client;
pub mod pages;
mod usage;

pub use client::{GraphClient, ProofMode};
pub use usage::parse_usage;
