//! The adapters that plug storage, the vault, Meta and bots into the actors crate's engine: loading a tenant
//! (its integration, decrypted token and responder), recording what the engine learns, the durable inbox as
//! the engine sees it (`events`), keeping the directory in step with the store (`reconcile`), and the relay
//! responder.

mod events;
mod reconcile;
pub mod relay;
mod tenants;

pub use events::{PROGRESS_RETRIES, StoreEvents};
pub use reconcile::reconcile;
pub use tenants::{StoreStatus, StoreTenants};
