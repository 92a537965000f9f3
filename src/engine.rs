//! The adapters that plug storage, the vault, Meta and bots into the actors crate's engine: loading a tenant
//! (its integration, decrypted token and responder), recording what the engine learns, and the relay responder.

pub mod relay;
mod tenants;

pub use tenants::{StoreStatus, StoreTenants};
