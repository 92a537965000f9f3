//! End-to-end and storage tests: one test binary (one link) for the whole suite.
//!
//! Storage tests run twice, on a fresh PostgreSQL database (server from `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and on a fresh SQLite file. CLI tests run the real
//! `switchboard` binary.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ai;
mod app;
mod browser;
mod rig;
mod support;

mod cli;
mod cluster;
mod engine;
mod faults;
mod front_door;
mod fuzz;
mod hostile;
mod inbox;
mod onboarding;
mod operators;
mod portal;
mod store_contract;
mod takeover;
mod vault_storage;
mod watchdog;
