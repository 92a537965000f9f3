//! Switchboard: one Meta app, many client businesses.
//!
//! The library holds everything the `switchboard` binary does, so it can be tested: configuration,
//! storage (PostgreSQL and SQLite behind one trait), the token vault, portal passwords, the HTTP front
//! door and the command line. The per-tenant actor engine lives in the `switchboard-actors` crate.

pub mod adapters;
pub mod background;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod domain;
pub mod history;
pub mod http;
pub mod inbox;
pub mod meta;
pub mod onboarding;
pub mod ownership;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod telemetry;
