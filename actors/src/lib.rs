//! Switchboard's per-tenant engine.
//!
//! One supervised ractor actor per connected Page holds that tenant's decrypted token, runs its bot on
//! each event in order, and sends the replies through the Graph API at the tenant's own pace (GCRA),
//! pausing when Meta throttles and stopping when Meta rejects the token. The `Router` routes events by
//! page (or Instagram account) id and starts tenants lazily; the `TenantSupervisor` restarts failed ones.
//!
//! This crate must never depend on an HTTP server or a SQL driver: storage, the Graph API, status
//! updates and relay bots reach it through the traits in `ports`, which the root crate implements.

mod dedup;
pub mod event;
pub mod limiter;
pub mod metrics;
mod page;
pub mod ports;
mod router;
pub mod rules;
mod settings;
pub mod split;
pub mod stats;
mod supervisor;
mod tenant;
mod token;

pub use event::{Channel, EventKind, InboundEvent};
pub use page::{PageId, PageIdError};
pub use ports::{
    EventSink, FailureClass, GraphApi, GraphFailure, LoadError, NoInbox, OutgoingMessage, Progress, RecordedReply,
    Responder, SendOk, StatusSink, TenantProfile, TenantSource, Usage,
};
pub use router::{Dispatched, EngineDeps, Route, Router};
pub use rules::{KeywordRule, Rules, RulesResponder};
pub use settings::EngineSettings;
pub use token::AccessToken;
