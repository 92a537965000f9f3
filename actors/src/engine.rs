//! The engine around the tenants: the facade the root crate uses (`router`), which account belongs to which
//! tenant and each tenant's actor or waiting events (`registry`), starting and restarting tenants
//! (`supervisor`), what the parts share and the slice a tenant gets (`context`), and which Pages this engine
//! runs (`tenure`, asked of the root crate, never kept here).

pub(crate) mod context;
pub(crate) mod registry;
pub(crate) mod router;
pub(crate) mod supervisor;
pub(crate) mod tenure;
