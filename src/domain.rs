//! Domain newtypes with parsing constructors: past the edge (CLI, HTTP, database rows), code holds only
//! valid values. Page ids come from the actors crate, which both crates share.

mod actor;
mod audit_action;
mod client_id;
mod client_name;
mod client_slug;
mod email;
mod role;
mod sealed;

pub use actor::{Actor, ActorError};
pub use audit_action::AuditAction;
pub use client_id::ClientId;
pub use client_name::{ClientName, ClientNameError};
pub use client_slug::{ClientSlug, ClientSlugError};
pub use email::{Email, EmailError};
pub use role::{Role, RoleError};
pub use sealed::{KeyId, MalformedSealedToken, NONCE_LEN, SealedToken};
pub use switchboard_actors::{AccessToken, PageId, PageIdError};
