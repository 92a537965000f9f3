//! The adapters that plug storage, the vault, Meta and bots into the actors crate's engine: loading a tenant
//! (its integration, decrypted token and responder), recording what the engine learns, keeping the directory in
//! step with the store (`reconcile`), and the relay responder. The durable inbox's side is `inbox::sink`.

pub mod ai;
mod directory;
pub mod reconcile;
pub mod relay;
mod storage;

pub use directory::Directory;
pub use reconcile::reconcile;
pub use storage::{StoreStatus, StoreTenants};
