//! Switchboard: one Meta app, many client businesses.
//!
//! The library holds everything the `switchboard` binary does, so it can be tested: configuration,
//! storage (PostgreSQL and SQLite behind one trait), the token vault, portal passwords, the HTTP front
//! door and the command line. The per-tenant actor engine lives in the `switchboard-actors` crate.

pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod graph;
pub mod http;
pub mod inbox;
pub mod onboarding;
pub mod password;
pub mod portal;
pub mod relay;
pub mod rotation;
pub mod server;
pub mod signed_request;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod vault;
pub mod webhook;
